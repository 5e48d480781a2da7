"""A sparse autoencoder (SAE): a dictionary of feature directions learned from activations.

Six architectures, chosen by `SAEConfig.arch`: `relu` (Towards Monosemanticity), `relu_april`
(Anthropic's April 2024 update), `topk` (Gao et al. 2024), `batchtopk` (Bussmann et al. 2024),
`jumprelu` (Rajamanoharan et al. 2024) and `matryoshka` (Bussmann et al. 2025), each a small
strategy class in `sae.architectures` that states its σ, sparsity term S and auxiliary loss Aux.

The maths (x is one activation vector of width d_in, f the d_sae feature activations):

    x_s   = s · x                                    # s: input scale, E‖x_s‖ = sqrt(d_in)
    pre   = (x_s - b_dec) @ W_enc + b_enc            # (batch, d_sae); relu_april, jumprelu: no "- b_dec"
    f     = σ(pre)                                   # the architecture's activation
    x̂_s   = f @ W_dec + b_dec                        # (batch, d_in)
    x̂     = x̂_s / s
    loss  = mean_batch ‖x_s - x̂_s‖² + λ · mean_batch S(f, pre) + α · Aux   # matryoshka: ‖·‖² over prefixes

Callers pass and receive raw activations; the scale s lives in the SAE (a buffer, set once from
the data by whoever builds the activation stream, see `input_scale_for`), so λ means the same
thing at every site and every model.

For speed (benchmarks/bench_sae.py), `(x_s - b_dec) @ W_enc` is computed as
`x_s @ W_enc - b_dec @ W_enc`: the subtraction moves into a (d_sae,) bias, so no (batch, d_in)
tensor that requires a gradient enters the encoder and autograd never computes the encoder's input
gradient (a whole matmul per step we do not need). TopK's `sparse_topk` kernels: `sae.kernels`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from sae import kernels
from sae.architectures import ARCHITECTURES
from sae.utils import atomic_torch_save, load_checkpoint, resolve_device

ARCHS = tuple(ARCHITECTURES)


@dataclass
class SAEConfig:
    d_in: int  # width of the activations (e.g. 512 MLP neurons); 0 in a preset: taken from the site when built
    d_sae: int  # number of dictionary features; d_sae / d_in is the expansion factor
    arch: str = "relu"  # one of ARCHS: relu, relu_april, topk, batchtopk, jumprelu, matryoshka (see the module docstring)
    k: int = 32  # topk: active latents per token; batchtopk, matryoshka: per token on average over the batch
    k_aux: int = 0  # topk, batchtopk, matryoshka, jumprelu: dead latents AuxK may use to model the error (0: d_in // 2, as Gao et al.)
    aux_coeff: float = 1 / 32  # topk, batchtopk, matryoshka, jumprelu: α, weight of the AuxK loss (Gao et al.)
    sparse_topk: bool = True  # topk: decode and back-propagate through the k active latents only
    jump_threshold: float = 0.5  # jumprelu: every θ_i's initial value (in the scaled space)
    jump_bandwidth: float = 0.1  # jumprelu: ε, the width of the straight-through estimators' window around θ
    matryoshka_sizes: tuple[int, ...] = ()  # matryoshka: nested prefix sizes m_1 < ... < m_G = d_sae (empty: d_sae/16, /4, /1)
    # norm of the initial decoder rows, and so of the encoder's columns (W_enc starts as W_dec.T): 0 means 1
    # for the unit-norm archs, 0.1 for relu_april. It matters even where the trainer renormalises
    # the rows: a small encoder starts every feature quiet (see sae.evaluation.compare.TOY_RECIPES)
    decoder_init_norm: float = 0.0
    site: str = ""  # the model's hook site the SAE reads, e.g. "blocks.0.mlp.hook_post" ("": not tied to a model)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"SAEConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.d_in < 0 or self.d_sae < 1:
            raise ValueError(f"SAEConfig needs d_in >= 1 and d_sae >= 1, got {self.d_in} and {self.d_sae}")
        ARCHITECTURES[self.arch].check(self)


class ForwardOutput(NamedTuple):
    x_hat: Tensor  # (batch, d_in) reconstruction, raw (unscaled) units
    f: Tensor  # (batch, d_sae) feature activations
    loss: Tensor  # scalar: mse + l1_coeff * S + aux_coeff * aux
    mse: Tensor  # scalar: mean over the batch of ‖x_s - x̂_s‖² (scaled space)
    l1: Tensor  # scalar: mean over the batch of Σ_i f_i ‖W_dec[i]‖ (reported for every arch; S for relu, relu_april)
    aux: Tensor  # scalar: the auxiliary loss (AuxK for topk, batchtopk with dead latents), else 0


def input_scale_for(x: Tensor) -> float:
    """The scale s that makes E‖s·x‖ = sqrt(d_in) on the sample `x` (batch, d_in) (April 2024
    update), computed in float32. The one place this formula is written: the activation buffer
    and the cache call it too."""
    return float(x.shape[-1] ** 0.5 / x.float().norm(dim=-1).mean())


@torch.no_grad()
def geometric_median(x: Tensor, n_iter: int = 200, tol: float = 1e-7) -> Tensor:
    """The point that minimises Σ_i ‖x_i - y‖, by Weiszfeld's iterations.

    y ← Σ_i w_i x_i / Σ_i w_i with w_i = 1 / ‖x_i - y‖, starting from the mean. Unlike the mean it
    is not dragged by a few huge activations: Towards Monosemanticity starts b_dec there."""
    y = x.mean(0)
    for _ in range(n_iter):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(1e-12)  # (n,)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if (y_new - y).norm() <= tol * (1.0 + y.norm()):
            return y_new
        y = y_new
    return y


class SparseAutoencoder(nn.Module):
    """f = σ((x_s - b_dec) @ W_enc + b_enc), x̂_s = f @ W_dec + b_dec; see the module docstring.

    `W_dec[i]` is feature i's direction in activation space: interpretation and steering read it
    directly. `forward` is pure: bookkeeping (dead features, schedules) lives in the trainer."""

    def __init__(self, cfg: SAEConfig, generator: torch.Generator | None = None):
        super().__init__()
        if cfg.d_in < 1:
            raise ValueError("SAEConfig.d_in is 0: set it to the width of the activations (a preset's "
                             "`sae_config(d_in)` does this)")
        self.cfg = cfg
        self.arch = ARCHITECTURES[cfg.arch](cfg)
        d_in, d_sae = cfg.d_in, cfg.d_sae
        norm = cfg.decoder_init_norm or (1.0 if self.arch.unit_norm_decoder else 0.1)
        W_dec = torch.randn(d_sae, d_in, generator=generator)
        W_dec *= norm / W_dec.norm(dim=1, keepdim=True)
        self.W_enc = nn.Parameter(W_dec.t().clone())  # (d_in, d_sae), starts as W_dec.T (Gao et al.)
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(W_dec)  # (d_sae, d_in), row i = feature i's direction
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("input_scale", torch.tensor(1.0))  # s with E‖s·x‖ = sqrt(d_in)
        self.arch.add_parameters_(self)  # jumprelu's log_threshold, batchtopk's threshold

    def _check(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.cfg.d_in:
            raise ValueError(f"the SAE expects activations of width d_in={self.cfg.d_in}, got "
                             f"shape {tuple(x.shape)}: is it the right hook site (MLP neurons vs "
                             "residual stream)?")
        return x.reshape(-1, self.cfg.d_in)

    def encoder_bias(self) -> Tensor:
        """b_enc - b_dec @ W_enc: the pre-encoder bias folded into a (d_sae,) vector (see module docstring)."""
        return self.b_enc - self.b_dec @ self.W_enc if self.arch.pre_encoder_bias else self.b_enc

    def pre_acts(self, x_s: Tensor) -> Tensor:
        """pre = (x_s - b_dec) @ W_enc + b_enc (batch, d_sae) for scaled inputs x_s (batch, d_in)."""
        return torch.addmm(self.encoder_bias(), x_s, self.W_enc)

    def encode(self, x: Tensor, features: list[int] | None = None) -> Tensor:
        """Raw activations (..., d_in) -> feature activations (..., d_sae), or (..., len(features))
        for just those features (steering reads a few at every step: when σ acts feature by feature,
        feature i depends on column i of W_enc alone; TopK must rank all pre-activations, so it
        encodes in full). The inference form of σ (BatchTopK: its threshold, not the batch's top k·B)."""
        x_s = self._check(x) * self.input_scale
        if features is not None and self.arch.elementwise:
            f = self.arch.activation(self, torch.addmm(self.encoder_bias()[features], x_s, self.W_enc[:, features]),
                                     features)
        else:
            f = self.arch.activation(self, self.pre_acts(x_s))
            f = f if features is None else f[:, features]
        return f.reshape(*x.shape[:-1], f.shape[-1])

    def decode(self, f: Tensor, active: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
        """Feature activations (..., d_sae) -> reconstruction (..., d_in), in raw units. `active`:
        the non-zero entries (rows, cols, values) of f as (-1, d_sae), where the caller has them."""
        if f.shape[-1] != self.cfg.d_sae:
            raise ValueError(f"decode expects (..., d_sae={self.cfg.d_sae}) features, got shape {tuple(f.shape)}")
        f2 = f.reshape(-1, self.cfg.d_sae)
        n_active = f2.count_nonzero() if active is None else len(active[0])
        if not (f2.requires_grad and torch.is_grad_enabled()) and n_active * 10 < f2.numel():
            x_hat_s = kernels.decode_active(f2, self.W_dec, self.b_dec, active)  # mostly zeros, no gradient wanted
        else:
            x_hat_s = torch.addmm(self.b_dec, f2, self.W_dec)
        return (x_hat_s / self.input_scale).reshape(*f.shape[:-1], self.cfg.d_in)

    def forward(self, x: Tensor, l1_coeff: float = 0.0, dead_mask: Tensor | None = None) -> ForwardOutput:
        """The reconstruction and the loss terms of raw activations (..., d_in), σ in training form.

        l1_coeff is λ, the weight of S: a training setting, so the trainer passes it (warmed up);
        dead_mask (d_sae,) bool marks the latents that have not fired lately, for Aux (the trainer
        knows them; architectures without Aux ignore it)."""
        x_s = self._check(x) * self.input_scale  # (batch, d_in)
        pre, f, x_hat_s = self.arch.encode_decode(self, x_s)  # f = σ(pre), x̂_s = f @ W_dec + b_dec
        mse = (x_hat_s - x_s).pow(2).sum(-1).mean()
        rec = self.arch.reconstruction_loss(self, x_s, f, mse)  # mse, or Matryoshka's mean over prefixes
        l1, sparsity = self.arch.sparsity(self, pre, f)
        aux = self.arch.aux_loss(self, x_s, x_hat_s, dead_mask)
        loss = rec + l1_coeff * sparsity + self.cfg.aux_coeff * aux
        x_hat = (x_hat_s / self.input_scale).reshape(x.shape)
        return ForwardOutput(x_hat, f.reshape(*x.shape[:-1], self.cfg.d_sae), loss, mse, l1, aux)

    @torch.no_grad()
    def unit_norm_decoder_(self) -> None:
        """Rescale every decoder row to unit norm (after each optimizer step, if `arch.unit_norm_decoder`)."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Remove from W_dec.grad the component parallel to each row (before the optimizer step), so
        the step moves each row along its unit sphere (to first order) instead of wasting Adam's
        update on a norm change that the renormalisation would undo."""
        if self.W_dec.grad is None:
            return
        W = self.W_dec
        parallel = (self.W_dec.grad * W).sum(dim=1, keepdim=True) / W.pow(2).sum(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_dec.grad -= parallel * W

    @torch.no_grad()
    def init_b_dec_(self, sample: Tensor) -> None:
        """Set b_dec to the geometric median of a sample of raw activations (in the scaled space)."""
        x_s = self._check(sample).double() * self.input_scale.double()
        self.b_dec.copy_(geometric_median(x_s).to(self.b_dec.dtype))

    @torch.no_grad()
    def set_input_scale_(self, scale: float) -> None:
        self.input_scale.fill_(float(scale))

    @torch.no_grad()
    def save(self, path: str | os.PathLike, **meta: Any) -> None:
        """Write {"config", "state_dict", "meta"} atomically, with relu_april's decoder norms folded
        into the encoder (`arch.fold_decoder_norms`): f_i ‖W_dec[i]‖ is what its loss penalises, so
        scaling encoder column i and b_enc[i] up by n_i = ‖W_dec[i]‖ and decoder row i down by n_i
        changes neither the reconstruction nor the loss, and the saved rows have unit norm."""
        sd = {name: t.detach().clone() for name, t in self.state_dict().items()}
        if self.arch.fold_decoder_norms:
            n = sd["W_dec"].norm(dim=1)  # (d_sae,)
            sd["W_enc"] *= n
            sd["b_enc"] *= n
            sd["W_dec"] /= n.clamp_min(1e-12)[:, None]
        sd = {name: t.cpu() for name, t in sd.items()}
        atomic_torch_save({"config": asdict(self.cfg), "state_dict": sd, "meta": meta}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> "SparseAutoencoder":
        ckpt = load_checkpoint(path, "an SAE (sae.pt)")
        unknown = set(ckpt["config"]) - {f.name for f in fields(SAEConfig)}
        if unknown:
            raise ValueError(f"{path} was written by another version of sae (unknown config fields: "
                             f"{', '.join(sorted(unknown))}): train it again with this version")
        sae = cls(SAEConfig(**ckpt["config"]))
        sae.load_state_dict(ckpt["state_dict"])
        sae.meta = ckpt.get("meta", {})
        return sae.to(resolve_device(device))
