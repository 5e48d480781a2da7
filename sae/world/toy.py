"""Toy worlds with a known answer: superposition in a tiny ReLU model, and activations built from a
known dictionary, on which a sparse autoencoder can be graded exactly.

1. Toy Models of Superposition (Elhage et al. 2022, sections 2-3): n sparse features squeezed
   through d_hidden < n dimensions and read back out,
       h = W x,   x' = ReLU(Wᵀ h + b),   loss = Σ_i I_i (x_i - x'_i)²,
   where x_i = 0 with probability 1 - p, else uniform in [0, 1], and I_i is feature i's importance.
   Dense features (p = 1): the model keeps the d_hidden most important ones, orthogonal, and drops
   the rest. Sparse features: it stores more features than it has dimensions, in superposition,
   paying a little interference for a lot of reconstruction (`ToyModel`: one instance per p).
2. Synthetic activations (Sharkey, Braun & Millidge 2022, "Taking features out of superposition
   with sparse autoencoders"): `n_features` random unit directions in `d` dimensions; feature i
   fires with probability p_i ∝ decay^i or (i+1)^-power (a few active per sample), with a magnitude uniform in
   [0, 1] (or any [lo, hi]); optionally correlated, or hierarchical (children that fire only with
   their parent, the Matryoshka paper's toy). The dictionary is known, so `mmcs` says how much of it
   an SAE found (`sae.evaluation.matching` grades it one to one).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# ----------------------------------------------------------------- 1. Toy models of superposition
@dataclass
class ToyModelConfig:
    n_features: int = 20  # n: sparse input features
    d_hidden: int = 5  # m < n: the bottleneck
    feature_probability: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03, 0.01)  # p = 1 - S, one instance each
    importance_decay: float = 0.7  # I_i = importance_decay ** i
    linear: bool = False  # x' = Wᵀ h + b without the ReLU (a linear model never superposes)


class ToyModel(nn.Module):
    """`n_instances` independent toy models, h = W x, x' = ReLU(Wᵀ h + b), trained in one batch."""

    def __init__(self, cfg: ToyModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        n_inst = len(cfg.feature_probability)
        std = math.sqrt(2.0 / (cfg.d_hidden + cfg.n_features))  # Xavier-normal
        self.W = nn.Parameter(torch.randn(n_inst, cfg.d_hidden, cfg.n_features, generator=generator) * std)
        self.b = nn.Parameter(torch.zeros(n_inst, cfg.n_features))
        self.register_buffer("feature_probability", torch.tensor(cfg.feature_probability))  # (n_inst,)
        self.register_buffer("importance", cfg.importance_decay ** torch.arange(cfg.n_features).float())

    def forward(self, x: Tensor) -> Tensor:
        """x (n_inst, batch, n_features) -> reconstruction of the same shape."""
        h = x @ self.W.transpose(1, 2)  # (n_inst, batch, d_hidden)
        out = h @ self.W + self.b[:, None, :]  # (n_inst, batch, n_features)
        return out if self.cfg.linear else out.relu()

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """x_i = 0 with probability 1 - p (per instance), else uniform in [0, 1]; (n_inst, batch, n_features)."""
        shape = (len(self.cfg.feature_probability), batch_size, self.cfg.n_features)
        dev = self.W.device
        fires = torch.rand(shape, generator=generator, device=dev) < self.feature_probability[:, None, None]
        return torch.rand(shape, generator=generator, device=dev) * fires

    def loss(self, x: Tensor) -> Tensor:
        """Importance-weighted squared error, mean over the batch, summed over instances."""
        return (self.importance * (x - self(x)).pow(2)).sum(-1).mean(-1).sum()


def train_toy_model(model: ToyModel, n_steps: int = 5000, batch_size: int = 1024, lr: float = 1e-3,
                    seed: int = 0) -> list[float]:
    """Adam with a cosine learning-rate decay, as in the paper; returns the loss per step."""
    gen = torch.Generator(device=model.W.device).manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(n_steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / n_steps))
        loss = model.loss(model.sample(batch_size, gen))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def feature_norms(model: ToyModel) -> Tensor:
    """‖W_i‖ per instance and feature (n_inst, n_features): about 1 if feature i is stored, 0 if dropped."""
    return model.W.norm(dim=1)


@torch.no_grad()
def features_stored(model: ToyModel, threshold: float = 0.5) -> Tensor:
    """How many features each instance represents (‖W_i‖ > threshold); more than d_hidden = superposition."""
    return (feature_norms(model) > threshold).sum(-1)


@torch.no_grad()
def dimensions_per_feature(model: ToyModel) -> Tensor:
    """d_hidden / ‖W‖_F² per instance (Elhage et al. section 6): 1 with no superposition, 1/2 for antipodal pairs."""
    return model.cfg.d_hidden / model.W.pow(2).sum(dim=(1, 2))


@torch.no_grad()
def superposition(model: ToyModel) -> Tensor:
    """Σ_{j≠i} (Ŵ_i · W_j)² per instance and feature (n_inst, n_features): how much feature i shares its direction."""
    W = model.W  # (n_inst, d_hidden, n_features)
    W_hat = W / W.norm(dim=1, keepdim=True).clamp_min(1e-6)
    overlap = (W_hat.transpose(1, 2) @ W).pow(2)  # (n_inst, n_features, n_features)
    return overlap.sum(-1) - overlap.diagonal(dim1=1, dim2=2)


# ----------------------------------------------- 2. Synthetic activations with a known dictionary
@dataclass
class SyntheticConfig:
    n_features: int = 512  # ground-truth dictionary size
    d: int = 256  # activation width
    decay: float = 0.99  # firing probability p_i ∝ decay^i: a few common features, a long tail of rare ones
    power: float = 0.0  # if > 0, p_i ∝ (i + 1)^-power instead (a power law, as language features follow)
    mean_active: float = 5.0  # Σ_i p_i, the expected number of active features per sample
    correlation: float = 0.0  # in [0, 1): share of each feature's firing noise that comes from common factors
    n_factors: int = 16  # common factors behind the correlated variant
    magnitude: tuple[float, float] = (0.0, 1.0)  # a firing feature's coefficient is uniform on [lo, hi]
    n_parents: int = 0  # hierarchical variant: features 0..n_parents-1 are parents, each with...
    n_children: int = 4  # ...this many children, the next features, which fire only with their parent
    child_rate: float = 0.5  # P(one of a parent's children fires | the parent fires); they exclude each other
    seed: int = 0  # fixes the dictionary, the probabilities and the correlation structure


def task_seed(seed: int) -> int:
    """The generator seed behind the task instance `seed`: a hash of it, not `seed` itself.

    The dictionary is `randn(n_features, d)` normalised, which is how an SAE draws its decoder: an
    SAE of width d seeded with the same integer would start *at* the answer (MMCS 1.0 before one
    step). Hashing keeps the task's stream apart from any model seeded with a small integer."""
    return int.from_bytes(hashlib.sha256(f"sae.toy.SyntheticActivations:{seed}".encode()).digest()[:8], "little")


class SyntheticActivations:
    """x = Σ_i c_i D_i with D_i unit directions, c_i ~ U[lo, hi] when feature i fires, else 0.

    `dictionary` (n_features, d) is the ground truth an SAE should find; `probs` (n_features,)
    the firing probabilities. With correlation ρ > 0, feature i fires when z_i < Φ⁻¹(p_i) where
    z_i = sqrt(ρ)·(F g)_i + sqrt(1-ρ)·ε_i, g and ε standard normal and F a fixed matrix of unit rows:
    each p_i is kept, but features that load on the same factors tend to fire together.

    Hierarchy (`n_parents` P > 0, after Bussmann et al. 2025's toy): parent q < P owns the children
    P + q·K ... P + q·K + K - 1 (K = `n_children`). A child fires only when its parent does: given
    the parent, one child fires with probability `child_rate`, uniformly which, so p_child =
    p_parent · child_rate / K. `parents` (n_features,) holds each child's parent, -1 elsewhere.
    An SAE may then *absorb* the parent into a child: a latent for "child" whose direction carries
    the parent's too, leaving the parent's latent silent exactly when a child fires."""

    def __init__(self, cfg: SyntheticConfig):
        if not 0.0 <= cfg.correlation < 1.0:
            raise ValueError(f"SyntheticConfig.correlation must be in [0, 1), got {cfg.correlation}")
        if not 0.0 <= cfg.magnitude[0] <= cfg.magnitude[1]:
            raise ValueError(f"SyntheticConfig.magnitude must be (lo, hi) with 0 <= lo <= hi, got {cfg.magnitude}")
        self.cfg = cfg
        gen = torch.Generator().manual_seed(task_seed(cfg.seed))
        self.dictionary = F.normalize(torch.randn(cfg.n_features, cfg.d, generator=gen), dim=1)
        i = torch.arange(cfg.n_features, dtype=torch.float64)
        p = (i + 1) ** -cfg.power if cfg.power > 0 else cfg.decay ** i
        self.probs = (p * cfg.mean_active / p.sum()).clamp(max=1.0).float()
        self.factors = F.normalize(torch.randn(cfg.n_features, cfg.n_factors, generator=gen), dim=1)
        P, K = cfg.n_parents, cfg.n_children
        self.parents = torch.full((cfg.n_features,), -1)
        if P:
            if P * (K + 1) > cfg.n_features or K < 1 or not 0 < cfg.child_rate <= 1:
                raise ValueError(f"SyntheticConfig: {P} parents with {K} children each need {P * (K + 1)} "
                                 f"features (n_features={cfg.n_features}), n_children >= 1 and child_rate in (0, 1]")
            self.parents[P:P * (K + 1)] = torch.arange(P).repeat_interleave(K)
            self.probs[P:P * (K + 1)] = self.probs[:P].repeat_interleave(K) * cfg.child_rate / K

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n samples: activations x (n, d) and the true coefficients c (n, n_features)."""
        cfg = self.cfg
        if cfg.correlation > 0:
            g = torch.randn(n, cfg.n_factors, generator=generator)
            eps = torch.randn(n, cfg.n_features, generator=generator)
            z = math.sqrt(cfg.correlation) * (g @ self.factors.T) + math.sqrt(1 - cfg.correlation) * eps
            u = torch.special.ndtr(z)  # uniform on [0, 1], correlated across features
        else:
            u = torch.rand(n, cfg.n_features, generator=generator)
        # fires iff u < p_i; given that, u / p_i is uniform on [0, 1]: one draw gives both
        fires, unit = u < self.probs, u / self.probs
        if P := cfg.n_parents:  # the children instead: one per firing parent, with probability child_rate
            K = cfg.n_children
            pick = torch.rand(n, P, generator=generator)  # < child_rate: a child fires; which: its position
            child = (pick / cfg.child_rate * K).long().clamp(max=K - 1)
            kids = (pick < cfg.child_rate) & fires[:, :P]
            fires[:, P:P * (K + 1)] = F.one_hot(child, K).bool().flatten(1) & kids.repeat_interleave(K, 1)
            unit[:, P:P * (K + 1)] = torch.rand(n, P * K, generator=generator)
        lo, hi = cfg.magnitude
        coeffs = torch.where(fires, lo + (hi - lo) * unit, 0.0)
        return coeffs @ self.dictionary, coeffs

    def batches(self, batch_size: int, seed: int = 0, n_batches: int | None = None) -> Iterator[Tensor]:
        """An iterator of activation batches (batch_size, d), deterministic from `seed`; endless by default."""
        gen = torch.Generator().manual_seed(seed)
        for _ in itertools.count() if n_batches is None else range(n_batches):
            yield self.sample(batch_size, gen)[0]


@torch.no_grad()
def max_cosine(decoder: Tensor, true_dictionary: Tensor) -> Tensor:
    """For each true feature (rows of `true_dictionary`), its best cosine similarity with any decoder row."""
    if decoder.shape[-1] != true_dictionary.shape[-1]:
        raise ValueError(f"decoder rows have width {decoder.shape[-1]} but true features "
                         f"{true_dictionary.shape[-1]}: pass W_dec (d_sae, d_in), not "
                         "W_enc (d_in, d_sae)")
    D = F.normalize(decoder.detach().float(), dim=1)
    T = F.normalize(true_dictionary.detach().float().to(D.device), dim=1)
    return (T @ D.T).max(dim=1).values


def mmcs(decoder: Tensor, true_dictionary: Tensor) -> float:
    """Mean max cosine similarity (Sharkey et al. 2022): `max_cosine` averaged over true features.
    1.0 means every true feature has a decoder row pointing exactly its way."""
    return max_cosine(decoder, true_dictionary).mean().item()
