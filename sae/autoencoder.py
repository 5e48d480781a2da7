"""A sparse autoencoder (SAE): a dictionary of feature directions learned from activations.

Three variants, chosen by `SAEConfig.arch` (one class, a flag, no subclasses):

- `"relu"`, Towards Monosemanticity (Bricken et al. 2023, "Problem Setup" and appendix
  "Autoencoder Training"): subtract the decoder bias, ReLU, unit-norm decoder rows,
  loss = MSE + λ Σ|f_i|.
- `"relu_april"`, Anthropic's April 2024 update ("Training SAEs"): no pre-encoder bias, no norm
  constraint; the penalty is λ Σ|f_i|·‖W_dec[i]‖ so shrinking a decoder row cannot buy sparsity.
  On save the norms are folded into the encoder, so the saved decoder rows are unit norm too.
- `"topk"`, Gao et al. 2024 ("Scaling and evaluating sparse autoencoders", section 2.3): keep the
  k largest pre-activations, loss = MSE + α·AuxK, where AuxK reconstructs the remaining error
  from the top k_aux *dead* latents so that they receive a gradient again.

The maths (x is one activation vector of width d_in, f the d_sae feature activations):

    x_s   = s · x                                    # s: input scale, E‖x_s‖ = sqrt(d_in)
    f     = ReLU((x_s - b_dec) @ W_enc + b_enc)      # (batch, d_sae); TopK keeps the k largest
    x̂_s   = f @ W_dec + b_dec                        # (batch, d_in)
    x̂     = x̂_s / s
    loss  = mean_batch ‖x_s - x̂_s‖² + λ · mean_batch Σ_i f_i ‖W_dec[i]‖   (+ α·AuxK for topk)

Callers pass and receive raw activations; the scale s lives in the SAE (a buffer, set once from
the data by whoever builds the activation stream, see `input_scale_for`), so λ means the same
thing at every site and every model.

Two details that matter for speed (see benchmarks/bench_sae.py):
- `(x_s - b_dec) @ W_enc` is computed as `x_s @ W_enc - b_dec @ W_enc`: the subtraction moves into
  a (d_sae,) bias, so no (batch, d_in) tensor that requires a gradient enters the encoder and
  autograd never computes the encoder's input gradient (a whole matmul per step we do not need).
- With `sparse_topk`, TopK decodes with only the k active decoder rows per token
  (`F.embedding_bag`), and the encoder's weight gradient touches only the k selected columns.
  Same numbers as the dense path (tested), fewer FLOPs.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sae.utils import atomic_torch_save, load_checkpoint, resolve_device

ARCHS = ("relu", "relu_april", "topk")


@dataclass
class SAEConfig:
    d_in: int  # width of the activations (e.g. 512 MLP neurons); 0 in a preset: taken from the site when built
    d_sae: int  # number of dictionary features; d_sae / d_in is the expansion factor
    arch: str = "relu"  # "relu" (Towards Monosemanticity), "relu_april" (April 2024 update), "topk" (Gao et al.)
    k: int = 32  # topk: active latents per token
    k_aux: int = 0  # topk: dead latents AuxK may use to model the error (0: d_in // 2, as Gao et al.)
    aux_coeff: float = 1 / 32  # topk: α, weight of the AuxK loss (Gao et al.)
    sparse_topk: bool = True  # topk: decode and back-propagate through the k active latents only
    decoder_init_norm: float = 0.0  # norm of the initial decoder rows (0: 1 for relu/topk, 0.1 for relu_april)
    site: str = ""  # the model's hook site the SAE reads, e.g. "blocks.0.mlp.hook_post" ("": not tied to a model)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"SAEConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.d_in < 0 or self.d_sae < 1:
            raise ValueError(f"SAEConfig needs d_in >= 1 and d_sae >= 1, got {self.d_in} and {self.d_sae}")
        if self.arch == "topk" and not 1 <= self.k <= self.d_sae:
            raise ValueError(f"topk needs 1 <= k <= d_sae, got k={self.k} with d_sae={self.d_sae}")

    @property
    def unit_norm_decoder(self) -> bool:
        """relu and topk keep ‖W_dec[i]‖ = 1 during training; relu_april lets the norms float."""
        return self.arch != "relu_april"

    @property
    def pre_encoder_bias(self) -> bool:
        """Subtract b_dec before encoding (Towards Monosemanticity, Gao et al.), not in the April update."""
        return self.arch != "relu_april"


class ForwardOutput(NamedTuple):
    x_hat: Tensor  # (batch, d_in) reconstruction, raw (unscaled) units
    f: Tensor  # (batch, d_sae) feature activations
    loss: Tensor  # scalar: mse + l1_coeff * l1 + aux_coeff * aux
    mse: Tensor  # scalar: mean over the batch of ‖x_s - x̂_s‖² (scaled space)
    l1: Tensor  # scalar: mean over the batch of Σ_i f_i ‖W_dec[i]‖ (reported for every arch)
    aux: Tensor  # scalar: the AuxK loss (topk with dead latents), else 0


def input_scale_for(x: Tensor) -> float:
    """The scale s that makes E‖s·x‖ = sqrt(d_in) on the sample `x` (batch, d_in) (April 2024 update)."""
    return math.sqrt(x.shape[-1]) / x.float().norm(dim=-1).mean().item()


@torch.no_grad()
def geometric_median(x: Tensor, n_iter: int = 200, tol: float = 1e-7) -> Tensor:
    """The point that minimises Σ_i ‖x_i - y‖, by Weiszfeld's iterations.

    y ← Σ_i w_i x_i / Σ_i w_i with w_i = 1 / ‖x_i - y‖, starting from the mean. Unlike the mean it
    is not dragged by a few huge activations, which is why Towards Monosemanticity starts b_dec there.
    """
    y = x.mean(0)
    for _ in range(n_iter):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(1e-12)  # (n,)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        done = (y_new - y).norm() <= tol * (1.0 + y.norm())
        y = y_new
        if done:
            break
    return y


class _GatherSelected(torch.autograd.Function):
    """vals = (x_s @ W_enc + b)[row, idx[row, j]], with a backward that touches only the selected columns.

    The forward reuses the values already computed densely (TopK has to look at every latent to
    choose), but the gradient of W_enc needs only the k chosen columns per token:
    grad_W_enc[:, i] = Σ_{(t, j): idx[t, j] = i} grad[t, j] · x_s[t]. Dense autograd would build a
    (batch, d_sae) gradient full of zeros and multiply it out; this costs batch·k·d_in instead.
    """

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


class SparseAutoencoder(nn.Module):
    """f = ReLU((x_s - b_dec) @ W_enc + b_enc) (or TopK), x̂_s = f @ W_dec + b_dec; see the module docstring.

    `W_dec[i]` is feature i's direction in activation space: interpretation and steering read it
    directly. `forward` is pure: bookkeeping (which features are dead, schedules) lives in the trainer.
    """

    def __init__(self, cfg: SAEConfig, generator: torch.Generator | None = None):
        super().__init__()
        if cfg.d_in < 1:
            raise ValueError("SAEConfig.d_in is 0: set it to the width of the activations (a preset's "
                             "`sae_config(d_in)` does this)")
        self.cfg = cfg
        d_in, d_sae = cfg.d_in, cfg.d_sae
        norm = cfg.decoder_init_norm or (1.0 if cfg.unit_norm_decoder else 0.1)
        W_dec = torch.randn(d_sae, d_in, generator=generator)
        W_dec *= norm / W_dec.norm(dim=1, keepdim=True)
        self.W_enc = nn.Parameter(W_dec.t().clone())  # (d_in, d_sae), starts as W_dec.T (Gao et al.)
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(W_dec)  # (d_sae, d_in), row i = feature i's direction
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("input_scale", torch.tensor(1.0))  # s with E‖s·x‖ = sqrt(d_in)

    # ----------------------------------------------------------------------------------- encode
    def _check(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.cfg.d_in:
            raise ValueError(
                f"the SAE expects activations of width d_in={self.cfg.d_in}, got shape {tuple(x.shape)}: "
                "is it the right hook site (MLP neurons vs residual stream)?"
            )
        return x.reshape(-1, self.cfg.d_in)

    def _encoder_bias(self) -> Tensor:
        """b_enc - b_dec @ W_enc: the pre-encoder bias folded into a (d_sae,) vector (see module docstring)."""
        if self.cfg.pre_encoder_bias:
            return self.b_enc - self.b_dec @ self.W_enc
        return self.b_enc

    def _pre_acts(self, x_s: Tensor) -> Tensor:
        return torch.addmm(self._encoder_bias(), x_s, self.W_enc)  # (batch, d_sae)

    def _topk(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """Indices (batch, k) of the k largest pre-activations and the values after ReLU."""
        vals, idx = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return vals.relu(), idx

    def encode(self, x: Tensor, features: list[int] | None = None) -> Tensor:
        """Raw activations (..., d_in) -> feature activations (..., d_sae), or (..., len(features))
        for just those features (steering reads a few at every step: under ReLU feature i depends
        on column i of W_enc alone; TopK must rank all pre-activations, so it encodes in full)."""
        x_s = self._check(x) * self.input_scale
        if features is not None:
            if self.cfg.arch == "topk":
                return self.encode(x)[..., features]
            f = torch.addmm(self._encoder_bias()[features], x_s, self.W_enc[:, features]).relu_()
            return f.reshape(*x.shape[:-1], len(features))
        pre = self._pre_acts(x_s)
        if self.cfg.arch == "topk":
            vals, idx = self._topk(pre)
            f = torch.zeros_like(pre).scatter_(-1, idx, vals)
        else:
            f = pre.relu_()  # in place: addmm does not need its output for the backward pass
        return f.reshape(*x.shape[:-1], self.cfg.d_sae)

    def decode(self, f: Tensor) -> Tensor:
        """Feature activations (..., d_sae) -> reconstruction (..., d_in), in raw units."""
        if f.shape[-1] != self.cfg.d_sae:
            raise ValueError(f"decode expects (..., d_sae={self.cfg.d_sae}) features, got shape {tuple(f.shape)}")
        f2 = f.reshape(-1, self.cfg.d_sae)
        if not (f2.requires_grad and torch.is_grad_enabled()) and f2.count_nonzero() * 10 < f2.numel():
            # mostly zeros and no gradient wanted (evaluation): add up only the active rows of W_dec
            # (an L0 of 17 of 1,024 features is 60x fewer products than the dense matmul)
            rows, cols = f2.nonzero(as_tuple=True)  # row-major, so each row's features are contiguous
            starts = torch.searchsorted(rows, torch.arange(len(f2), device=f2.device))
            x_hat_s = self.b_dec + F.embedding_bag(cols, self.W_dec, starts, mode="sum",
                                                   per_sample_weights=f2[rows, cols].to(self.W_dec.dtype))
        else:
            x_hat_s = torch.addmm(self.b_dec, f2, self.W_dec)
        return (x_hat_s / self.input_scale).reshape(*f.shape[:-1], self.cfg.d_in)

    # ---------------------------------------------------------------------------------- forward
    def forward(self, x: Tensor, l1_coeff: float = 0.0, dead_mask: Tensor | None = None) -> ForwardOutput:
        """Encode, decode and compute the loss terms on a batch of raw activations (..., d_in).

        l1_coeff is λ (relu, relu_april): a training setting, so the trainer passes it (warmed up);
        dead_mask (d_sae,) bool marks the latents AuxK may use (topk only; the trainer knows which
        latents have not fired lately).
        """
        cfg = self.cfg
        x_s = self._check(x) * self.input_scale  # (batch, d_in)
        zero = x_s.new_zeros(())
        aux = zero

        if cfg.arch == "topk":
            if cfg.sparse_topk:
                with torch.no_grad():  # the dense pre-activations only choose the k latents
                    pre = self._pre_acts(x_s)  # (batch, d_sae)
                    vals, idx = pre.topk(cfg.k, dim=-1, sorted=False)  # (batch, k)
                vals = _GatherSelected.apply(vals, idx, x_s, self.W_enc, self._encoder_bias()).relu()
                # a gather and a sum, in W_dec's dtype (float32 also under bfloat16 autocast)
                x_hat_s = self.b_dec + F.embedding_bag(idx, self.W_dec, per_sample_weights=vals.to(self.W_dec.dtype),
                                                       mode="sum")
                f = torch.zeros_like(pre).scatter_(-1, idx, vals.detach())
            else:
                pre = self._pre_acts(x_s)
                vals, idx = self._topk(pre)
                f = torch.zeros_like(pre).scatter(-1, idx, vals)
                x_hat_s = torch.addmm(self.b_dec, f, self.W_dec)
            if cfg.aux_coeff and dead_mask is not None and bool(dead_mask.any()):
                aux = self._aux_loss(x_s, x_hat_s, dead_mask)
            with torch.no_grad():
                l1 = (vals * self.W_dec.norm(dim=1)[idx]).sum(-1).mean()
            sparsity_loss = zero
        else:
            pre = self._pre_acts(x_s)  # (batch, d_sae)
            f = pre.relu_()  # in place: addmm does not need its output for the backward pass
            if cfg.arch == "relu":
                l1 = f.sum(-1).mean()  # ‖W_dec[i]‖ = 1 is kept by the trainer; f >= 0 so |f| = f
            else:
                l1 = (f @ self.W_dec.norm(dim=1)).mean()
            x_hat_s = torch.addmm(self.b_dec, f, self.W_dec)
            sparsity_loss = l1_coeff * l1

        mse = (x_hat_s - x_s).pow(2).sum(-1).mean()
        loss = mse + sparsity_loss + cfg.aux_coeff * aux
        x_hat = (x_hat_s / self.input_scale).reshape(x.shape)
        return ForwardOutput(x_hat, f.reshape(*x.shape[:-1], cfg.d_sae), loss, mse, l1, aux)

    def _aux_loss(self, x_s: Tensor, x_hat_s: Tensor, dead_mask: Tensor) -> Tensor:
        """AuxK (Gao et al. 2024, appendix A.2): reconstruct the error e = x_s - x̂_s from the top k_aux dead latents.

            pre_dead = x_s @ W_enc[:, dead] + b[dead]        # (batch, n_dead): only the dead latents
            ê        = TopK_{k_aux}(pre_dead) @ W_dec[dead]   # ReLU'd, the rest zero
            AuxK     = mean_batch ‖ê - e‖²

        The target is detached, so AuxK only moves the dead latents (and their decoder rows)
        towards what the live ones miss. Only the dead latents' pre-activations are computed, in
        their own small matmul: few latents are dead once training is under way, so this costs a
        fraction of masking a copy of all d_sae pre-activations and running a second top-k over
        them (which would double TopK's step time).
        """
        dead = dead_mask.nonzero().squeeze(1)
        k_aux = min(self.cfg.k_aux or self.cfg.d_in // 2, dead.numel())
        err = (x_s - x_hat_s).detach()
        bias = self.b_enc[dead] - self.b_dec @ self.W_enc[:, dead] if self.cfg.pre_encoder_bias else self.b_enc[dead]
        pre = torch.addmm(bias, x_s, self.W_enc[:, dead])  # (batch, n_dead)
        if k_aux < dead.numel():
            vals, idx = pre.topk(k_aux, dim=-1, sorted=False)
            acts = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
        else:  # every dead latent is among the top k_aux
            acts = pre.relu()
        return (acts @ self.W_dec[dead] - err).pow(2).sum(-1).mean()

    # ------------------------------------------------------------------- decoder-norm operations
    @torch.no_grad()
    def unit_norm_decoder_(self) -> None:
        """Rescale every decoder row to unit norm (after each optimizer step, for relu and topk)."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Remove from W_dec.grad the component parallel to each row (before the optimizer step).

        The step then moves each row along its unit sphere (to first order) instead of wasting
        Adam's update on a norm change that the renormalisation would undo.
        """
        if self.W_dec.grad is None:
            return
        W = self.W_dec
        parallel = (self.W_dec.grad * W).sum(dim=1, keepdim=True) / W.pow(2).sum(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_dec.grad -= parallel * W

    @torch.no_grad()
    def folded_state_dict(self) -> dict[str, Tensor]:
        """The state dict with decoder norms folded into the encoder: the same function, unit decoder rows.

        f_i ‖W_dec[i]‖ is what the April loss penalises, so scaling encoder column i (and b_enc[i])
        up by n_i = ‖W_dec[i]‖ and decoder row i down by n_i changes neither the reconstruction
        nor the loss. (With ReLU only: TopK ranks latents by their value, so it is left alone.)
        """
        sd = {name: t.detach().clone() for name, t in self.state_dict().items()}
        if self.cfg.arch == "relu_april":
            n = sd["W_dec"].norm(dim=1)  # (d_sae,)
            sd["W_enc"] *= n
            sd["b_enc"] *= n
            sd["W_dec"] /= n.clamp_min(1e-12)[:, None]
        return sd

    @torch.no_grad()
    def init_b_dec_(self, sample: Tensor) -> None:
        """Set b_dec to the geometric median of a sample of raw activations (in the scaled space)."""
        x_s = self._check(sample).double() * self.input_scale.double()
        self.b_dec.copy_(geometric_median(x_s).to(self.b_dec.dtype))

    @torch.no_grad()
    def set_input_scale_(self, scale: float) -> None:
        self.input_scale.fill_(float(scale))

    # ----------------------------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike, **meta: Any) -> None:
        """Write {"config", "state_dict", "meta"} atomically; relu_april's decoder norms are folded in."""
        sd = {name: t.cpu() for name, t in self.folded_state_dict().items()}
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
