"""Answers to chapter 4's exercises (run from anywhere; `SAE_FAST=1` uses the smoke run)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

import torch  # noqa: E402

from common import FAST, PRESET, RUN  # noqa: E402
import exercises.ch04  # noqa: E402
from sae.buffer import ActivationBuffer  # noqa: E402
from sae.run import corpus_tokens, load_run, reproduce  # noqa: E402


def geometric_median(x, n_iter=200, tol=1e-7):
    """argmin_y Σ_i ‖x_i - y‖ over the rows of x (n, d), by Weiszfeld's re-weighted means from the mean."""
    y = x.mean(dim=0)
    for _ in range(n_iter):
        w = 1 / torch.linalg.vector_norm(x - y, dim=1).clamp_min(1e-12)  # far rows count less
        y_old, y = y, (w @ x) / w.sum()
        if torch.linalg.vector_norm(y - y_old) <= tol * (1 + torch.linalg.vector_norm(y_old)):
            break
    return y


assert exercises.ch04.GEOMETRIC_MEDIAN.check(geometric_median)

reproduce(PRESET, RUN, until="lm")
tok, model = load_run(RUN)
tokens, _ = corpus_tokens(PRESET, tok, "val", 20_000 if FAST else 200_000)
batch = 256 if FAST else 1024

resid_buf = ActivationBuffer(model, tokens, "blocks.0.hook_resid_post", buffer_tokens=16 * batch, batch_size=batch,
                             seed=0)
assert exercises.ch04.check_resid_buffer(resid_buf, model)
