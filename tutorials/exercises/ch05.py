"""Chapter 5's exercise: a TopK SAE at the default SAE's L0; which reconstructs better?"""

from __future__ import annotations

import json
from pathlib import Path

from exercises import open_exercise, verdict
from sae.run import load_sae, sae_path


def default_k(run) -> int:
    """k for a TopK SAE at the default SAE's L0: its L0 on held-out text (`metrics.json`), rounded."""
    return round(json.loads((Path(run) / "metrics.json").read_text())["sae"]["l0"])


def check_topk(lower_fvu, run, name: str | None = None) -> bool | None:
    """`lower_fvu`: "topk" or "relu", your answer to "which has the lower FVU at equal L0?". Reads
    the default SAE's `metrics.json` and the TopK SAE's `NAME_metrics.json` (NAME: `topk{k}`)."""
    if open_exercise(lower_fvu, "05_training_saes"):
        return None
    if lower_fvu not in ("topk", "relu"):
        return verdict(False, f'answer "topk" or "relu", not {lower_fvu!r}')
    run = Path(run)
    k = default_k(run)
    name = name or f"topk{k}"
    path = run / f"{name}_metrics.json"
    if not sae_path(run, name).exists() or not path.exists():
        return verdict(False, f"{path} does not exist: train the TopK SAE `{name}` (sae.arch=topk, sae.k={k}) "
                              "and evaluate it first")
    cfg = load_sae(run, name).cfg
    if cfg.arch != "topk" or cfg.k != k:
        return verdict(False, f"{name} is arch={cfg.arch!r} with k={cfg.k}: want arch='topk' with k={k}, the "
                              "default SAE's L0")
    relu = json.loads((run / "metrics.json").read_text())["sae"]
    topk = json.loads(path.read_text())["sae"]
    want = "topk" if topk["fvu"] < relu["fvu"] else "relu"
    for label, m in (("ReLU (default)", relu), (f"TopK k={k}", topk)):
        print(f"{label:>15}: L0 {m['l0']:5.1f}  FVU {m['fvu']:.3f}  CE recovered {m['ce_recovered_zero']:.3f}  "
              f"dead {m['dead_fraction']:.1%}")
    return verdict(lower_fvu == want, f"{lower_fvu} has the lower FVU" if lower_fvu == want else
                   f"{lower_fvu} does not have the lower FVU: compare the two rows above")
