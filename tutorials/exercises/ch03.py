"""Chapter 3's exercises: write one head's causal attention pattern; the same language model with
ReLU neurons instead of GELU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from exercises import MathsExercise, open_exercise, verdict
from sae.run import preset_fields, preset_of_run


# ----------------------------------------------------------------------------- write the maths
def _pattern(q, k, scale=math.sqrt, mask="future", dim=-1):
    """softmax over the keys of q kᵀ / sqrt(d_head), each query's later keys masked to -inf; and its
    wrong variants: another scale, the past masked instead (or nothing), the softmax over the queries."""
    T, d_head = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) / scale(d_head)  # (..., T queries, T keys)
    later = torch.ones(T, T, dtype=torch.bool).triu(1)  # key j after query i
    if mask == "future":
        scores = scores.masked_fill(later, float("-inf"))
    elif mask == "past":
        scores = scores.masked_fill(later.T, float("-inf"))
    return scores.softmax(dim=dim)


def _cases():
    g = torch.Generator().manual_seed(3)
    # (n_head, T, d_head): scores of a few units, so that the 1/sqrt(d_head) visibly matters
    return [dict(q=torch.randn(shape, generator=g) * 1.5, k=torch.randn(shape, generator=g) * 1.5)
            for shape in ((2, 5, 4), (1, 7, 9))]


ATTENTION_PATTERN = MathsExercise(
    "03_tiny_gpt", "attention_pattern", _pattern, _cases, mistakes={
        "a token attends to later tokens: there is no causal mask; set the scores of keys j > i to -inf "
        "before the softmax":
            lambda q, k: _pattern(q, k, mask=None),
        "the scores are not divided by sqrt(d_head): without it, the larger the head, the more the "
        "softmax saturates on one key":
            lambda q, k: _pattern(q, k, scale=lambda d: 1.0),
        "the scores are divided by d_head: divide by sqrt(d_head), the standard deviation of q·k when q "
        "and k have unit-variance entries":
            lambda q, k: _pattern(q, k, scale=lambda d: d),
        "the mask is on the wrong side, you masked the past: query i may read the keys j <= i (the lower "
        "triangle, torch.tril) and not the keys j > i":
            lambda q, k: _pattern(q, k, mask="past"),
        "the softmax normalises over the queries (dim=-2): each query's row must sum to 1 over the "
        "keys, softmax(dim=-1)":
            lambda q, k: _pattern(q, k, dim=-2),
        "the future is zeroed after the softmax: the rows then no longer sum to 1; mask the scores "
        "with -inf before it":
            lambda q, k: _pattern(q, k, mask=None) * torch.ones(q.shape[-2], q.shape[-2]).tril(),
    })


# ------------------------------------------------------------------------- vary the experiment


def _lm_stage(run: Path) -> dict | None:
    path = run / "stages.json"
    return json.loads(path.read_text()).get("lm") if path.exists() else None


def check_relu(relu_run, run) -> bool | None:
    """`relu_run`: the directory of a run made like `run` but with `gpt.activation=relu`, its
    language model trained (`stages.json` has the `lm` stage). Compares the two validation losses."""
    if open_exercise(relu_run, "03_tiny_gpt"):
        return None
    if not isinstance(relu_run, (str, Path)):
        return verdict(False, f"relu_run is the run's directory (a Path or a str), not a {type(relu_run).__name__}: "
                              "the check reads the run's config.json and stages.json")
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
