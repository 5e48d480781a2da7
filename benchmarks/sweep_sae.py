"""Sweep SAE hyper-parameters on a trained run; prints one line per setting.

Usage: python benchmarks/sweep_sae.py runs/tiny "train_sae.l1_coeff=2,train_sae.lr=3e-3" "sae.arch=topk,sae.k=16" ...
Each setting overrides fields of the run's preset by dotted name (the CLI's `--set`; see
`sae.run.with_overrides`), trains an SAE into runs/NAME/sweep_<setting>.pt and evaluates it on
the held-out tokens (sweep_<setting>_metrics.json).
"""

import sys
import time
from pathlib import Path

from sae.pipeline import train_sae_on_run, write_evaluation
from sae.run import preset_of_run, sae_path, with_overrides


def main() -> None:
    run = Path(sys.argv[1])
    base = preset_of_run(run)
    for setting in sys.argv[2:]:
        p = with_overrides(base, [s for s in setting.split(",") if s])
        name = "sweep_" + (setting.replace("=", "").replace(",", "_").replace("/", "-").replace(".", "-") or "default")
        t0 = time.time()
        if not sae_path(run, name).exists():
            train_sae_on_run(p, run, name)
        m = write_evaluation(p, run, name)
        s = m["sae"]
        aucs = sorted((c["auroc"] for c in m.get("concepts", {}).values()), reverse=True)
        print(f"{setting:<40} L0 {s['l0']:6.1f} FVU {s['fvu']:.3f} dead {s['dead_fraction']:.3f} "
              f"CErec0 {s['ce_recovered_zero']:.3f} CErecM {s['ce_recovered_mean']:.3f} "
              f"AUROC>=.9: {sum(a >= 0.9 for a in aucs)} median {aucs[len(aucs) // 2] if aucs else 0:.3f} "
              f"({time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
