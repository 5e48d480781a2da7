"""How good is a reconstruction: every metric a small function with its formula.

Reconstruction (x: activations (n, d), x̂: reconstructions):
    mse  = mean_n ‖x − x̂‖²
    fvu  = Σ_n ‖x − x̂‖² / Σ_n ‖x − mean_n(x)‖²        fraction of variance unexplained
           (Gao et al. 2024, section 2.1's normalised MSE; their released code's
           `normalized_mean_squared_error` divides each row by its own ‖x‖², closer to `nmse`)
    explained variance = 1 − fvu
    nmse = Σ_n ‖x − x̂‖² / Σ_n ‖x‖²                     relative to predicting zero (April update's NMSE)
Sparsity (f: feature activations (n, d_sae)):
    l0 = mean_n #{i : f_i > 0}, l1 = mean_n Σ_i |f_i|
    density_i = fraction of tokens on which feature i fires; dead: never fired on the evaluation
    tokens; ultralow: density < 1e-5; dense: density > 10%.
Downstream (the site replaced in the model's forward pass):
    ce_recovered = (CE_ablated − CE_sae) / (CE_ablated − CE_clean)
    with the ablation zero (what most libraries report) or the mean activation: the number depends
    on the baseline as much as on the SAE, so both are reported (on a one-layer model the mean can
    be the *harsher* ablation, a constant MLP output drowning the residual stream after the final
    LayerNorm); ce_added = CE_sae − CE_clean (nats/token); kl = mean KL(p_clean ‖ p_sae) per token.
AUROC (`auroc`): P(score(t⁺) > score(t⁻)) + ½ P(score(t⁺) = score(t⁻)) over positives t⁺ and negatives t⁻.
The streaming evaluator (`sae.evaluation.evaluator`) computes the same formulas over held-out text.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor


def mse(x: Tensor, x_hat: Tensor) -> float:
    """mean_n ‖x − x̂‖²."""
    return (x - x_hat).pow(2).sum(-1).mean().item()


def fvu(x: Tensor, x_hat: Tensor) -> float:
    """Σ‖x − x̂‖² / Σ‖x − mean(x)‖² (0: perfect, 1: no better than the mean)."""
    return ((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()


def explained_variance(x: Tensor, x_hat: Tensor) -> float:
    return 1.0 - fvu(x, x_hat)


def nmse(x: Tensor, x_hat: Tensor) -> float:
    """Σ‖x − x̂‖² / Σ‖x‖²."""
    return ((x - x_hat).pow(2).sum() / x.pow(2).sum()).item()


def l0(f: Tensor) -> float:
    """Mean number of active features per token."""
    return (f > 0).float().sum(-1).mean().item()


def l1(f: Tensor) -> float:
    return f.abs().sum(-1).mean().item()


def density_summary(fire_counts: Tensor, n_tokens: int, ultralow: float = 1e-5, dense: float = 0.1) -> dict:
    """Fractions of dead, ultralow-density and dense features from per-feature fire counts."""
    d = fire_counts.double() / n_tokens
    return {"dead_fraction": (fire_counts == 0).double().mean().item(),
            "ultralow_fraction": ((d > 0) & (d < ultralow)).double().mean().item(),
            "dense_fraction": (d > dense).double().mean().item()}


def log_density_histogram(fire_counts: Tensor, n_tokens: int, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of log10(density) of the features that fired at least once: (counts, edges)."""
    d = fire_counts.double() / n_tokens
    d = d[d > 0].log10().numpy()
    lo = min(np.log10(1.0 / n_tokens), d.min() if len(d) else 0.0)
    return np.histogram(d, bins=bins, range=(lo, 0.0))


def ce_recovered(ce_clean: float, ce_sae: float, ce_ablated: float) -> float:
    """(CE_ablated − CE_sae) / (CE_ablated − CE_clean): 1 when the splice is perfect, 0 when it is as bad as the ablation."""
    return (ce_ablated - ce_sae) / (ce_ablated - ce_clean)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Exact AUROC (ties count ½) from average ranks: the Mann-Whitney U statistic, O(n log n)."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs positives and negatives, got {n_pos} and {n_neg}")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties share their mean rank
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
