"""Speed kernels for sparse codes: the same numbers as the dense maths (tested), fewer FLOPs
(benchmarks/bench_sae.py). Nothing here changes what an SAE computes, only how: TopK's encoder
gradient through the k chosen columns, and decoding that adds up only the active decoder rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class GatherSelected(torch.autograd.Function):
    """vals = (x_s @ W_enc + b)[row, idx[row, j]], with a backward that touches only the selected columns.

    The forward reuses the values already computed densely (TopK has to look at every latent to
    choose), but the gradient of W_enc needs only the k chosen columns per token:
    grad_W_enc[:, i] = Σ_{(t, j): idx[t, j] = i} grad[t, j] · x_s[t]. Dense autograd would build a
    (batch, d_sae) gradient full of zeros and multiply it out; this costs batch·k·d_in instead."""

    @staticmethod
    def forward(ctx, vals: Tensor, idx: Tensor, x_s: Tensor, W_enc: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(idx, x_s)
        ctx.d_sae = W_enc.shape[1]
        return vals.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad: (batch, k)
        idx, x_s = ctx.saved_tensors
        grad_W_enc_T = x_s.new_zeros(ctx.d_sae, x_s.shape[1])  # (d_sae, d_in): rows are W_enc's columns
        for j in range(idx.shape[1]):  # k slices of (batch, d_in): stays in cache, unlike one (batch·k, d_in)
            grad_W_enc_T.index_add_(0, idx[:, j], x_s * grad[:, j : j + 1])
        grad_b = x_s.new_zeros(ctx.d_sae).index_add_(0, idx.reshape(-1), grad.reshape(-1).to(x_s.dtype))
        return None, None, None, grad_W_enc_T.t(), grad_b


def decode_topk(idx: Tensor, vals: Tensor, W_dec: Tensor, b_dec: Tensor) -> Tensor:
    """b_dec + Σ_j vals[t, j] · W_dec[idx[t, j]] for each row t: (batch, k) pairs -> (batch, d_in).

    A gather and a sum, in W_dec's dtype (float32 also under bfloat16 autocast); differentiable in
    vals and W_dec, and W_dec's gradient touches only the selected rows."""
    return b_dec + F.embedding_bag(idx, W_dec, per_sample_weights=vals.to(W_dec.dtype), mode="sum")


def decode_active(f: Tensor, W_dec: Tensor, b_dec: Tensor, active: tuple[Tensor, Tensor, Tensor] | None = None
                  ) -> Tensor:
    """f @ W_dec + b_dec for a mostly-zero f (batch, d_sae), adding up only the active rows of W_dec
    (an L0 of 17 of 1,024 features is 60x fewer products than the dense matmul). No gradient.
    `active`: f's non-zero entries (rows, cols, values) in row-major order, where the caller has
    found them already."""
    # row-major, so each row's features are contiguous
    rows, cols, vals = active if active is not None else (*f.nonzero(as_tuple=True), None)
    vals = f[rows, cols] if vals is None else vals
    starts = torch.searchsorted(rows, torch.arange(len(f), device=f.device))
    return b_dec + F.embedding_bag(cols, W_dec, starts, mode="sum", per_sample_weights=vals.to(W_dec.dtype))
