"""Answers to chapter 3's exercises (run from anywhere; `SAE_FAST=1` uses the smoke preset's size).

The ReLU model is trained into `runs/PRESET_relu/`: `runs/tiny_relu` takes as long as the GELU
model did (5-7 minutes on a 2-core CPU), `runs/smoke_relu` in fast mode seconds.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

import torch  # noqa: E402

from common import FAST, PRESET, RUN, RUNS  # noqa: E402
import exercises.ch03  # noqa: E402
from sae.run import reproduce, with_overrides  # noqa: E402


def attention_pattern(q, k):
    """One context's causal attention pattern (n_head, T, T): row i is softmax_j(q_i·k_j / sqrt(d_head)), j <= i."""
    T, d_head = q.shape[-2:]
    scores = q @ k.transpose(-2, -1) / d_head ** 0.5  # (n_head, T queries, T keys)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


assert exercises.ch03.ATTENTION_PATTERN.check(attention_pattern)

reproduce(PRESET, RUN, until="lm")
relu_run = RUNS / f"{PRESET.name}_relu"
reproduce(with_overrides(PRESET, ["gpt.activation=relu"]), relu_run, until="lm")
assert exercises.ch03.check_relu(relu_run, RUN)

if not FAST:  # what the chapter's "what to look for" says about the default run
    gelu, relu = (json.loads((r / "stages.json").read_text())["lm"]["val_loss"] for r in (RUN, relu_run))
    assert abs(relu - gelu) <= 0.1, f"ReLU {relu:.3f} vs GELU {gelu:.3f}: no longer within 0.1 nats"
