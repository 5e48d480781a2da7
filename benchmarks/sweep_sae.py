"""Sweep SAE hyper-parameters on a trained run; prints one line per setting.

Usage: python benchmarks/sweep_sae.py runs/tiny "l1_coeff=2,sae_lr=3e-3" "l1_coeff=1" ...
Each setting overrides fields of the run's preset (see sae.pipeline.Preset), trains an SAE into
runs/NAME/sweep/<setting>.pt and evaluates it on the held-out tokens.
"""

import sys
import time
from dataclasses import fields, replace
from pathlib import Path

from sae.pipeline import Preset, evaluate_run, preset_of_run, train_sae_on_run
from sae.utils import atomic_write_json


def parse(setting: str, base: Preset) -> Preset:
    types = {f.name: f.type for f in fields(Preset)}
    kw = {}
    for item in filter(None, setting.split(",")):
        k, v = item.split("=")
        if k not in types:
            raise SystemExit(f"unknown field {k!r}; fields: {', '.join(types)}")
        cur = getattr(base, k)
        kw[k] = (v.lower() == "true") if isinstance(cur, bool) else type(cur)(v) if not isinstance(cur, tuple) else tuple(float(x) for x in v.split("/") if x)
    return replace(base, **kw)


def main() -> None:
    run = Path(sys.argv[1])
    base = preset_of_run(run)
    (run / "sweep").mkdir(exist_ok=True)
    for setting in sys.argv[2:]:
        p = parse(setting, base)
        name = setting.replace("=", "").replace(",", "_").replace("/", "-") or "default"
        sae_path = run / "sweep" / f"{name}.pt"
        t0 = time.time()
        if not sae_path.exists():
            train_sae_on_run(p, run, sae_path, run / "sweep" / f"{name}_history.json")
        m = evaluate_run(p, run, sae_path)
        atomic_write_json(run / "sweep" / f"{name}_metrics.json", m)
        s = m["sae"]
        aucs = sorted((c["auroc"] for c in m.get("concepts", {}).values()), reverse=True)
        print(f"{setting:<40} L0 {s['l0']:6.1f} FVU {s['fvu']:.3f} dead {s['dead_fraction']:.3f} "
              f"CErec0 {s['ce_recovered_zero']:.3f} CErecM {s['ce_recovered_mean']:.3f} "
              f"AUROC>=.9: {sum(a >= 0.9 for a in aucs)} median {aucs[len(aucs) // 2] if aucs else 0:.3f} "
              f"({time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
