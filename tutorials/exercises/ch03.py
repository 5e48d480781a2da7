"""Chapter 3's exercise: the same language model with ReLU neurons instead of GELU."""

from __future__ import annotations

import json
from pathlib import Path

from exercises import open_exercise, verdict
from sae.run import preset_fields, preset_of_run


def _lm_stage(run: Path) -> dict | None:
    path = run / "stages.json"
    return json.loads(path.read_text()).get("lm") if path.exists() else None


def check_relu(relu_run, run) -> bool | None:
    """`relu_run`: the directory of a run made like `run` but with `gpt.activation=relu`, its
    language model trained (`stages.json` has the `lm` stage). Compares the two validation losses."""
    if open_exercise(relu_run, "03_tiny_gpt"):
        return None
    relu_run, run = Path(relu_run), Path(run)
    if relu_run.resolve() == run.resolve():
        return verdict(False, f"{relu_run} is the GELU run itself: train the ReLU model into a directory of its own")
    for r in (relu_run, run):
        if _lm_stage(r) is None:
            return verdict(False, f"{r} has no trained language model (no `lm` stage in {r / 'stages.json'}): "
                                  "run `reproduce(..., until=\"lm\")` into it first")
    gelu_cfg, relu_cfg = preset_fields(preset_of_run(run)), preset_fields(preset_of_run(relu_run))
    if relu_cfg["gpt.activation"] != "relu":
        return verdict(False, f"{relu_run} was trained with gpt.activation={relu_cfg['gpt.activation']!r}, not 'relu'")
    other = {k: (v, relu_cfg.get(k)) for k, v in gelu_cfg.items() if k != "gpt.activation" and relu_cfg.get(k) != v}
    if other:
        return verdict(False, f"{relu_run} differs from {run} in more than the activation (field: (GELU run, yours) "
                              f"{other}): start from the same preset, with_overrides(PRESET, ['gpt.activation=relu'])")
    gelu, relu = _lm_stage(run), _lm_stage(relu_run)
    gap = relu["val_loss"] - gelu["val_loss"]
    print(f"validation loss: GELU {gelu['val_loss']:.4f}, ReLU {relu['val_loss']:.4f} nats/token "
          f"(ReLU {gap:+.4f}); on-concept rate: GELU {gelu.get('on_concept_rate')}, ReLU {relu.get('on_concept_rate')}")
    return verdict(True, f"a ReLU twin of {run.name} in {relu_run.name}: its validation loss is "
                         f"{'within' if abs(gap) <= 0.1 else 'NOT within'} 0.1 nats of the GELU model's ({gap:+.3f})")
