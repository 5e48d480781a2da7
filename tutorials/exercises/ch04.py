"""Chapter 4's exercises: write the geometric median (Weiszfeld's algorithm) that b_dec starts at;
a buffer on the residual stream."""

from __future__ import annotations

import torch

from exercises import MathsExercise, open_exercise, verdict
from sae.autoencoder import geometric_median
from sae.buffer import ActivationBuffer

SITE = "blocks.0.hook_resid_post"


# ----------------------------------------------------------------------------- write the maths
def _weiszfeld(x, weight, n_iter=200, tol=1e-7):
    """Re-weighted means from the mean, y <- Σ w_i x_i / Σ w_i with w_i = weight(‖x_i - y‖): the
    right rule (weight 1/d, as `geometric_median`) and its wrong variants."""
    y = x.mean(0)
    for _ in range(n_iter):
        w = weight((x - y).norm(dim=1).clamp_min(1e-12))  # (n,)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        done = (y_new - y).norm() <= tol * (1 + y.norm())
        y = y_new
        if done:
            break
    return y


def _cases():
    g = torch.Generator().manual_seed(4)
    cluster = torch.randn(8, 2, generator=g, dtype=torch.float64) + torch.tensor([1.0, 2.0], dtype=torch.float64)
    heavy = torch.randn(15, 3, generator=g, dtype=torch.float64)
    heavy[:3] *= 10  # a few rows of large norm, like position 0's activations
    # an odd number of rows each, so that "the median of each coordinate" has one meaning
    return [dict(x=torch.cat([cluster, torch.tensor([[40.0, -30.0]], dtype=torch.float64)])),  # one far outlier
            dict(x=heavy), dict(x=torch.randn(21, 5, generator=g, dtype=torch.float64).exp())]


GEOMETRIC_MEDIAN = MathsExercise(
    "04_activations", "geometric_median", geometric_median, _cases, mistakes={
        "you return the mean: it minimises Σ‖x_i − y‖², not Σ‖x_i − y‖; start from it, then iterate "
        "Weiszfeld's weighted means with w_i = 1/‖x_i − y‖":
            lambda x: x.mean(0),
        "the weights are ‖x_i − y‖: Weiszfeld's are 1/‖x_i − y‖, so that far rows (outliers) count less, "
        "not more":
            lambda x: _weiszfeld(x, lambda d: d),
        "the weights are 1/‖x_i − y‖²: Weiszfeld's are 1/‖x_i − y‖ (the gradient of Σ‖x_i − y‖ is "
        "Σ (y − x_i)/‖x_i − y‖)":
            lambda x: _weiszfeld(x, lambda d: d ** -2),
        "you return the median of each coordinate (torch.median(x, dim=0)): the geometric median minimises "
        "the sum of whole-row distances Σ‖x_i − y‖, which Weiszfeld's iterations find":
            lambda x: x.median(dim=0).values,
        "one Weiszfeld step is not enough: repeat y ← Σ w_i x_i / Σ w_i until y moves by less than "
        "1e-7·(1 + ‖y‖), at most 200 times":
            lambda x: _weiszfeld(x, lambda d: 1 / d, n_iter=1),
    })


# ------------------------------------------------------------------------- vary the experiment


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
