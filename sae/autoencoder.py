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

A *transcoder* (`d_out > 0`; Dunefsky et al. 2024) is the same model with another target: it reads
x at `site` and predicts the activation y (width d_out) at `target_site`, e.g. an MLP's output
from its input, so that its features replace the MLP's computation. The skip transcoder (Paulo,
Shabalin & Belrose 2025, arXiv 2501.18823) adds an affine path for the part of the map that is
linear, which its features then need not carry:

    y_s   = t · y                                    # t: target scale, E‖y_s‖ = sqrt(d_out)
    pre   = x_s @ W_enc + b_enc                      # no "- b_dec": b_dec lives in the target's space
    ŷ_s   = f @ W_dec + b_dec + x_s @ W_skip         # W_skip (d_in, d_out), starts at 0; no skip: `skip=False`
    loss  = mean_batch ‖y_s - ŷ_s‖² + λ · S + α · Aux

An SAE is the special case y = x (and no skip). Training batches of a transcoder are rows
[x | y] of width d_in + d_out (`split` cuts them), so the trainer and the buffer serve both.

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
    # a transcoder's target site, e.g. "blocks.0.mlp.hook_out" with site "blocks.0.mlp.hook_in" ("": an SAE)
    target_site: str = ""
    d_out: int = 0  # width of the target (0: an SAE, whose target is its input; a preset takes it from target_site)
    skip: bool = True  # a transcoder's linear skip path x_s @ W_skip (Paulo et al. 2025); ignored by an SAE

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"SAEConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.d_in < 0 or self.d_sae < 1 or self.d_out < 0:
            raise ValueError(f"SAEConfig needs d_in >= 1, d_sae >= 1 and d_out >= 0, got {self.d_in}, "
                             f"{self.d_sae} and {self.d_out}")
        if self.target_site and self.target_site == self.site:
            raise ValueError(f"SAEConfig.target_site is the site it reads ({self.site!r}): that is an SAE, "
                             "leave target_site empty")
        ARCHITECTURES[self.arch].check(self)


class ForwardOutput(NamedTuple):
    x_hat: Tensor  # (batch, d_in) reconstruction, raw (unscaled) units (a transcoder: the prediction ŷ, (batch, d_out))
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
        if self.transcoder:  # the decoder writes into the target's space, of width d_out
            W_dec = torch.randn(d_sae, cfg.d_out, generator=generator)
            self.W_dec = nn.Parameter(W_dec * (norm / W_dec.norm(dim=1, keepdim=True)))
            self.b_dec = nn.Parameter(torch.zeros(cfg.d_out))
            self.register_buffer("target_scale", torch.tensor(1.0))  # t with E‖t·y‖ = sqrt(d_out)
            if cfg.skip:
                self.W_skip = nn.Parameter(torch.zeros(d_in, cfg.d_out))
        self.arch.add_parameters_(self)  # jumprelu's log_threshold, batchtopk's threshold

    @property
    def transcoder(self) -> bool:
        """True if the target is another activation than the input (`SAEConfig.d_out` > 0)."""
        return self.cfg.d_out > 0

    @property
    def d_out(self) -> int:
        """Width of what the decoder writes: d_out for a transcoder, d_in for an SAE."""
        return self.cfg.d_out or self.cfg.d_in

    @property
    def output_scale(self) -> Tensor:
        """The scale of the decoder's space: t for a transcoder, s for an SAE."""
        return self.target_scale if self.transcoder else self.input_scale

    @property
    def write_site(self) -> str:
        """The site the decoder's output belongs at: `target_site` for a transcoder, `site` for an SAE."""
        return self.cfg.target_site or self.cfg.site

    def split(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Training rows -> (input x, target y): a transcoder's rows are [x | y] (width d_in + d_out),
        an SAE's are x, its own target."""
        if not self.transcoder:
            return rows, rows
        if rows.shape[-1] != self.cfg.d_in + self.cfg.d_out:
            raise ValueError(f"a transcoder trains on rows [input | target] of width d_in + d_out = "
                             f"{self.cfg.d_in} + {self.cfg.d_out}, got shape {tuple(rows.shape)}: build the "
                             "activation stream with its target site (ActivationBuffer(..., target_site=...))")
        return rows[..., :self.cfg.d_in], rows[..., self.cfg.d_in:]

    def _check(self, x: Tensor, width: int | None = None) -> Tensor:
        width, name = (width, "targets of width d_out") if width else (self.cfg.d_in, "activations of width d_in")
        if x.shape[-1] != width:
            raise ValueError(f"the SAE expects {name}={width}, got "
                             f"shape {tuple(x.shape)}: is it the right hook site (MLP neurons vs "
                             "residual stream)?")
        return x.reshape(-1, width)

    def encoder_bias(self) -> Tensor:
        """b_enc - b_dec @ W_enc: the pre-encoder bias folded into a (d_sae,) vector (see module docstring)."""
        return self.b_enc - self.b_dec @ self.W_enc if self.pre_encoder_bias else self.b_enc

    @property
    def pre_encoder_bias(self) -> bool:
        """Whether b_dec is subtracted before encoding: the architecture's choice, never for a transcoder."""
        return self.arch.pre_encoder_bias and not self.transcoder

    def decoder_base(self, x_s: Tensor) -> Tensor:
        """What the decoder adds to f @ W_dec: b_dec, plus a skip transcoder's x_s @ W_skip."""
        return torch.addmm(self.b_dec, x_s, self.W_skip) if hasattr(self, "W_skip") else self.b_dec

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
        the non-zero entries (rows, cols, values) of f as (-1, d_sae), where the caller has them.
        A transcoder: f @ W_dec + b_dec in the target's units, without the skip path (which needs x)."""
        if f.shape[-1] != self.cfg.d_sae:
            raise ValueError(f"decode expects (..., d_sae={self.cfg.d_sae}) features, got shape {tuple(f.shape)}")
        f2 = f.reshape(-1, self.cfg.d_sae)
        n_active = f2.count_nonzero() if active is None else len(active[0])
        if not (f2.requires_grad and torch.is_grad_enabled()) and n_active * 10 < f2.numel():
            x_hat_s = kernels.decode_active(f2, self.W_dec, self.b_dec, active)  # mostly zeros, no gradient wanted
        else:
            x_hat_s = torch.addmm(self.b_dec, f2, self.W_dec)
        return (x_hat_s / self.output_scale).reshape(*f.shape[:-1], self.d_out)

    def predict(self, x: Tensor, f: Tensor, active: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
        """The output in raw units for inputs x (..., d_in) with features f = encode(x): `decode(f)`,
        plus a skip transcoder's skip path x_s @ W_skip / t."""
        out = self.decode(f, active)
        if hasattr(self, "W_skip"):
            x_s = self._check(x) * self.input_scale
            out = out + (x_s @ self.W_skip / self.target_scale).reshape(out.shape)
        return out

    def forward(self, x: Tensor, l1_coeff: float = 0.0, dead_mask: Tensor | None = None,
                target: Tensor | None = None) -> ForwardOutput:
        """The reconstruction and the loss terms of raw activations (..., d_in), σ in training form.

        l1_coeff is λ, the weight of S: a training setting, so the trainer passes it (warmed up);
        dead_mask (d_sae,) bool marks the latents that have not fired lately, for Aux (the trainer
        knows them; architectures without Aux ignore it). `target`: a transcoder's y (..., d_out)
        (an SAE's target is x)."""
        x_s = self._check(x) * self.input_scale  # (batch, d_in)
        if self.transcoder:
            if target is None:
                raise ValueError("a transcoder's forward needs the target activations: sae(x, target=y)")
            y_s = self._check(target, self.cfg.d_out) * self.target_scale
        else:
            y_s = x_s
        pre, f, y_hat_s = self.arch.encode_decode(self, x_s)  # f = σ(pre), ŷ_s = f @ W_dec + b_dec
        if hasattr(self, "W_skip"):
            y_hat_s = torch.addmm(y_hat_s, x_s, self.W_skip)
        mse = (y_hat_s - y_s).pow(2).sum(-1).mean()
        rec = self.arch.reconstruction_loss(self, x_s, y_s, f, mse)  # mse, or Matryoshka's mean over prefixes
        l1, sparsity = self.arch.sparsity(self, pre, f)
        aux = self.arch.aux_loss(self, x_s, (y_s - y_hat_s).detach(), dead_mask)
        loss = rec + l1_coeff * sparsity + self.cfg.aux_coeff * aux
        y_hat = (y_hat_s / self.output_scale).reshape(*x.shape[:-1], self.d_out)
        return ForwardOutput(y_hat, f.reshape(*x.shape[:-1], self.cfg.d_sae), loss, mse, l1, aux)

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
        """Set b_dec to the geometric median of a sample of raw targets (in the scaled space): `sample`
        holds training rows (a transcoder's are [x | y])."""
        y = self.split(sample)[1]
        y_s = self._check(y, self.cfg.d_out).double() * self.output_scale.double()
        self.b_dec.copy_(geometric_median(y_s).to(self.b_dec.dtype))

    @torch.no_grad()
    def set_input_scale_(self, scale: float, target_scale: float | None = None) -> None:
        """Set s (and a transcoder's t, required for one)."""
        if self.transcoder and target_scale is None:
            raise ValueError("a transcoder needs the target's scale too: set_input_scale_(s, t), "
                             "e.g. from `scales_for(rows)`")
        self.input_scale.fill_(float(scale))
        if self.transcoder:
            self.target_scale.fill_(float(target_scale))

    def scales_for(self, rows: Tensor) -> tuple[float, float | None]:
        """(s, t) from a sample of training rows by `input_scale_for` (t None for an SAE)."""
        x, y = self.split(rows)
        return input_scale_for(x), (input_scale_for(y) if self.transcoder else None)

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
