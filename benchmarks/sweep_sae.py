"""Sweep SAE hyper-parameters on a trained run; prints one line per setting.

    python -m benchmarks.sweep_sae runs/tiny "train_sae.l1_coeff=2,train_sae.lr=3e-3" "sae.arch=topk,sae.k=16" ...
    python -m benchmarks.sweep_sae --quick [--out DIR]   # a seconds-sized run made in DIR (default: a temporary
                                                         # folder) and one setting: a test that it runs

Each setting overrides fields of the run's preset by dotted name (the CLI's `--set`; see
`sae.run.with_overrides`), trains an SAE into RUN/sweep_<setting>.pt and evaluates it on the
held-out tokens (RUN/sweep_<setting>_metrics.json). A setting whose SAE exists is only evaluated.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.gpu_check import quick_preset
from sae.run.command import Parser, run_command
from sae.run.pipeline import reproduce, train_sae_on_run, write_evaluation
from sae.run.config import preset_of_run, with_overrides
from sae.run.files import sae_path


PROG = "python -m benchmarks.sweep_sae"

QUICK_SETTINGS = ["sae.arch=topk,sae.k=8"]


def main(argv: list[str] | None = None) -> None:
    ap = Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="a run directory with a trained LM (not with --quick)")
    ap.add_argument("settings", nargs="*", help='comma-separated field=value overrides, e.g. "sae.arch=topk,sae.k=16"')
    ap.add_argument("--quick", action="store_true", help="make a seconds-sized run in --out and sweep "
                    f"{', '.join(QUICK_SETTINGS)} on it")
    ap.add_argument("--out", help="with --quick: the folder of the run (default: a new temporary folder)")
    args = ap.parse_args(argv)
    if args.quick:
        if args.run:
            ap.error("--quick makes its own run: give --out DIR, not RUN")
        run = Path(args.out or tempfile.mkdtemp(prefix="sweep_sae_"))
        reproduce(quick_preset(), run, until="lm", log=lambda *_: None)
        settings = QUICK_SETTINGS
        print(f"quick: a seconds-sized run in {run} (its numbers mean nothing)")
    elif args.run:
        run, settings = Path(args.run), args.settings
    else:
        ap.error("give a run directory (and settings), or --quick")
    base = preset_of_run(run)
    for setting in settings:
        p = with_overrides(base, [s for s in setting.split(",") if s])
        name = "sweep_" + (setting.replace("=", "").replace(",", "_").replace("/", "-").replace(".", "-") or "default")
        t0 = time.time()
        if not sae_path(run, name).exists():
            train_sae_on_run(p, run, name)
        m = write_evaluation(p, run, name)
        s = m["sae"]
        aucs = sorted((c["auroc"] for c in m.get("concepts", {}).get("rows", {}).values()), reverse=True)
        print(f"{setting:<40} L0 {s['l0']:6.1f} FVU {s['fvu']:.3f} dead {s['dead_fraction']:.3f} "
              f"CErec0 {s['ce_recovered_zero']:.3f} CErecM {s['ce_recovered_mean']:.3f} "
              f"AUROC>=.9: {sum(a >= 0.9 for a in aucs)} median {aucs[len(aucs) // 2] if aucs else 0:.3f} "
              f"({time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
