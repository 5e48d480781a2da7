"""Chapter 4's exercise: a buffer on the residual stream."""

from __future__ import annotations

import torch

from exercises import open_exercise, verdict
from sae.buffer import ActivationBuffer

SITE = "blocks.0.hook_resid_post"


def check_resid_buffer(buf, model) -> bool | None:
    """`buf`: an `ActivationBuffer` of `model` at the residual stream (`blocks.0.hook_resid_post`).
    Recomputes the width of its rows and the mean norm that `estimate_scale()` gives fresh batches."""
    if open_exercise(buf, "04_activations"):
        return None
    if not isinstance(buf, ActivationBuffer):
        return verdict(False, f"build an ActivationBuffer, not a {type(buf).__name__}")
    if buf.model is not model:
        return verdict(False, "the buffer reads another model than the chapter's")
    if buf.site != SITE:
        return verdict(False, f"the buffer reads {buf.site!r}; the residual stream after the block is {SITE!r}")
    d = model.cfg.d_model
    s = buf.estimate_scale()
    x = torch.cat([buf.next_batch() for _ in range(8)])  # fresh rows too: the buffer refills as it serves
    if x.shape[1] != d:
        return verdict(False, f"rows of width {x.shape[1]}, not d_model = {d}")
    raw, scaled = x.norm(dim=1).mean().item(), (s * x).norm(dim=1).mean().item()
    print(f"rows of width {x.shape[1]} (d_model {d}); scale {s:.3f}: mean norm of {len(x)} rows {raw:.2f} -> "
          f"{scaled:.2f} (sqrt(d_model) = {d ** 0.5:.2f})")
    ok = abs(scaled / d ** 0.5 - 1) < 0.05
    return verdict(ok, "width d_model, and the scale brings the mean norm to sqrt(d_model) (within 5%)" if ok else
                   f"the scaled mean norm {scaled:.2f} is more than 5% from sqrt(d_model) = {d ** 0.5:.2f}")
