"""SAE architectures: how pre-activations become features, and what sparsity costs.

Every architecture shares the maths of `sae.autoencoder` and differs only in σ (the activation),
S (the sparsity term), Aux (an auxiliary loss for dead latents), the reconstruction term R (the
squared error, except Matryoshka's mean over nested prefixes) and three flags:

    pre  = (x_s - b_dec) @ W_enc + b_enc        # (batch, d_sae); no "- b_dec" without pre_encoder_bias
    f    = σ(pre)                               # σ_train in training where it differs (BatchTopK)
    x̂_s  = f @ W_dec + b_dec
    loss = R + λ·S + α·Aux                      # R = ‖x_s - x̂_s‖², averaged over the batch

Each is a small class (a strategy, like openai/sparse_autoencoder's `ACTIVATIONS_CLASSES`); a new
architecture is one class, one entry of `ARCHITECTURES` and its tests. The methods take the SAE,
whose parameters they read (and, for JumpReLU, the threshold they add).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from sae import kernels


class ReLU:
    """Towards Monosemanticity (Bricken et al. 2023): σ = ReLU, S = Σ_i f_i (decoder rows kept unit norm)."""

    unit_norm_decoder = True  # the trainer keeps ‖W_dec[i]‖ = 1 (projects the gradient, renormalises)
    pre_encoder_bias = True  # subtract b_dec before encoding
    fold_decoder_norms = False  # save() folds ‖W_dec[i]‖ into the encoder
    elementwise = True  # f_i depends on pre_i alone, so `encode(x, features)` computes only those

    def __init__(self, cfg):
        self.cfg = cfg

    @staticmethod
    def check(cfg) -> None:
        """Raise ValueError on a configuration this architecture cannot train."""

    def add_parameters_(self, sae) -> None:
        """Register the architecture's own parameters and buffers on the SAE (none here)."""

    def activation(self, sae, pre: Tensor, features: list[int] | None = None) -> Tensor:
        """σ at inference: pre-activations (batch, d_sae), or (batch, len(features)), -> f."""
        return pre.relu()

    def encode_decode(self, sae, x_s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The training form: pre (batch, d_sae), f = σ_train(pre) and x̂_s (batch, d_in)."""
        pre = sae.pre_acts(x_s)
        f = self.train_activation(sae, pre)
        return pre, f, torch.addmm(sae.b_dec, f, sae.W_dec)

    def train_activation(self, sae, pre: Tensor) -> Tensor:
        return self.activation(sae, pre)

    def sparsity(self, sae, pre: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        """(the reported l1 = mean_batch Σ_i f_i ‖W_dec[i]‖, S). Here ‖W_dec[i]‖ = 1 and f >= 0: S = Σ_i f_i."""
        l1 = f.sum(-1).mean()
        return l1, l1

    def aux_loss(self, sae, x_s: Tensor, err: Tensor, dead_mask: Tensor | None) -> Tensor:
        """Aux, given the detached error e = y_s - ŷ_s (an SAE's y_s is x_s) and the latents that have
        not fired lately (the trainer's `dead_mask`); none here."""
        return x_s.new_zeros(())

    @torch.no_grad()
    def update_(self, sae, f: Tensor, mean: Callable[[Tensor], Tensor]) -> None:
        """After each optimizer step, with the step's f: statistics the architecture keeps (none
        here). `mean` averages a tensor over the processes of a distributed training."""

    def reconstruction_loss(self, sae, x_s: Tensor, y_s: Tensor, f: Tensor, mse: Tensor) -> Tensor:
        """The loss's reconstruction term R, given mse = mean_batch ‖y_s - ŷ_s‖² (y_s: the target, an
        SAE's is x_s): mse itself here."""
        return mse

    @torch.no_grad()
    def resample_(self, sae, idx: Tensor) -> list[tuple[Tensor, tuple]]:
        """When the trainer gives the features `idx` new directions: reset the architecture's own
        per-feature state, and return (parameter, index) pairs whose Adam moments it should zero."""
        return []


class ReLUApril(ReLU):
    """Anthropic's April 2024 update: no pre-encoder bias, decoder norms free, S = Σ_i f_i ‖W_dec[i]‖,
    so that shrinking a decoder row cannot buy sparsity. Saved with the norms folded into the encoder."""

    unit_norm_decoder = pre_encoder_bias = False
    fold_decoder_norms = True

    def sparsity(self, sae, pre, f):
        l1 = (f @ sae.W_dec.norm(dim=1)).mean()
        return l1, l1


def _reported_l1(sae, f: Tensor) -> Tensor:
    """mean_batch Σ_i f_i ‖W_dec[i]‖, for the history of architectures whose S is something else."""
    with torch.no_grad():
        return (f @ sae.W_dec.norm(dim=1).to(f.dtype)).mean()


class TopK(ReLU):
    """Gao et al. 2024 (section 2.3): σ keeps each row's k largest pre-activations (ReLU'd), S = 0 (k
    sets the sparsity), Aux = AuxK on the dead latents. With `sparse_topk`, training decodes and
    back-propagates through the k chosen latents only (`sae.kernels`)."""

    elementwise = False  # feature i's value depends on whether k others beat it

    @staticmethod
    def check(cfg):
        if not 1 <= cfg.k <= cfg.d_sae:
            raise ValueError(f"{cfg.arch} needs 1 <= k <= d_sae, got k={cfg.k} with d_sae={cfg.d_sae}")

    def activation(self, sae, pre, features=None):
        vals, idx = pre.topk(self.cfg.k, dim=-1, sorted=False)  # (batch, k)
        return torch.zeros_like(pre).scatter(-1, idx, vals.relu())

    def encode_decode(self, sae, x_s):
        if not self.cfg.sparse_topk:
            return super().encode_decode(sae, x_s)
        with torch.no_grad():  # the dense pre-activations only choose the k latents
            pre = sae.pre_acts(x_s)  # (batch, d_sae)
            vals, idx = pre.topk(self.cfg.k, dim=-1, sorted=False)  # (batch, k)
        vals = kernels.GatherSelected.apply(vals, idx, x_s, sae.W_enc, sae.encoder_bias()).relu()
        x_hat_s = kernels.decode_topk(idx, vals, sae.W_dec, sae.b_dec)
        return pre, torch.zeros_like(pre).scatter_(-1, idx, vals.detach()), x_hat_s

    def sparsity(self, sae, pre, f):
        return _reported_l1(sae, f), f.new_zeros(())

    def aux_loss(self, sae, x_s, err, dead_mask):
        """AuxK (Gao et al. 2024, appendix A.2): reconstruct the error e = x_s - x̂_s (a transcoder's
        y_s - ŷ_s) from the top k_aux dead latents.

            pre_dead = x_s @ W_enc[:, dead] + b[dead]        # (batch, n_dead): only the dead latents
            ê        = TopK_{k_aux}(pre_dead) @ W_dec[dead]   # ReLU'd, the rest zero
            AuxK     = mean_batch ‖ê - e‖²

        The target is detached, so AuxK only moves the dead latents (and their decoder rows)
        towards what the live ones miss. Only the dead latents' pre-activations are computed, in
        their own small matmul: few are dead once training is under way, so this costs a fraction
        of a second top-k over all d_sae masked pre-activations (which would double the step)."""
        if not self.cfg.aux_coeff or dead_mask is None or not bool(dead_mask.any()):
            return x_s.new_zeros(())
        dead = dead_mask.nonzero().squeeze(1)
        k_aux = min(self.cfg.k_aux or sae.d_out // 2, dead.numel())
        bias = sae.b_enc[dead] - sae.b_dec @ sae.W_enc[:, dead] if sae.pre_encoder_bias else sae.b_enc[dead]
        pre = torch.addmm(bias, x_s, sae.W_enc[:, dead])  # (batch, n_dead)
        if k_aux < dead.numel():
            vals, idx = pre.topk(k_aux, dim=-1, sorted=False)
            acts = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
        else:  # every dead latent is among the top k_aux
            acts = pre.relu()
        return (acts @ sae.W_dec[dead] - err).pow(2).sum(-1).mean()


class BatchTopK(TopK):
    """Bussmann et al. 2024 (arXiv 2412.06410): in training σ_train keeps the k·B largest of the batch's
    B·d_sae ReLU'd pre-activations, so a row may use more or fewer than k latents and the average is
    k; at inference σ(pre) = pre · 1[pre > θ], one global threshold, with θ the running average over
    training batches of the smallest activation kept (`update_`). Aux = AuxK, as TopK."""

    elementwise = True  # at inference: a JumpReLU with one threshold
    # θ ← β·θ + (1 - β)·min kept: an average over the last ~10 batches. The smallest kept activation
    # keeps falling as training sharpens the features, so a longer memory leaves θ too high (a lower
    # L0 at inference than in training); being the (k·B)-th largest of B·d_sae values, it is
    # steady from batch to batch, so a short memory is enough.
    beta = 0.9

    def add_parameters_(self, sae):
        sae.register_buffer("threshold", torch.tensor(0.0))  # θ; 0 until the first training step

    def activation(self, sae, pre, features=None):
        return pre * (pre > sae.threshold)

    def encode_decode(self, sae, x_s):
        return ReLU.encode_decode(self, sae, x_s)  # dense: a row's number of latents varies

    def train_activation(self, sae, pre):
        f = pre.relu()
        vals, idx = f.flatten().topk(self.cfg.k * len(f), sorted=False)  # (k·B,) over the whole batch
        return torch.zeros_like(f).flatten().scatter(0, idx, vals).view_as(f)

    @torch.no_grad()
    def update_(self, sae, f, mean):
        smallest = mean(torch.where(f > 0, f, torch.inf).amin().float())  # inf if nothing fired
        new = torch.where(sae.threshold > 0, self.beta * sae.threshold + (1 - self.beta) * smallest, smallest)
        sae.threshold.copy_(torch.where(torch.isfinite(smallest), new, sae.threshold))


class _JumpReLU(torch.autograd.Function):
    """f = pre · H(pre - θ), with the straight-through pseudo-derivatives of Rajamanoharan et al. (eq. 11):
    ∂f/∂pre = H(pre - θ) (exact away from the jump), ∂f/∂θ = -(θ/ε)·K((pre - θ)/ε)."""

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, theta = ctx.saved_tensors
        grad_theta = -(theta / ctx.eps) * _rectangle((pre - theta) / ctx.eps) * grad
        return grad * (pre > theta), grad_theta.sum(0), None


class _Step(torch.autograd.Function):
    """H(pre - θ), with ∂H/∂θ = -(1/ε)·K((pre - θ)/ε) and no gradient to pre (eq. 12): the L0 penalty
    moves the thresholds, and the encoder only through the reconstruction."""

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, theta = ctx.saved_tensors
        return None, (-(1 / ctx.eps) * _rectangle((pre - theta) / ctx.eps) * grad).sum(0), None


def _rectangle(u: Tensor) -> Tensor:
    """K(u) = 1 on (-1/2, 1/2), else 0: the kernel whose width ε sets how far from θ a pre-activation
    must be to pass no gradient to θ."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class JumpReLU(ReLU):
    """Rajamanoharan et al. 2024 (arXiv 2407.14435), the Gemma Scope SAEs: σ(pre)_i = pre_i · H(pre_i - θ_i)
    with a learned threshold θ_i = exp(log_threshold_i) per feature, S = Σ_i H(pre_i - θ_i) (the L0
    itself), both trained through straight-through estimators with the rectangle kernel of width
    ε = `jump_bandwidth`. No pre-encoder bias (as the paper); unit-norm decoder rows, so θ is in
    the units of the activation along the feature's direction. Aux = TopK's AuxK on the dead
    latents (as SynthSAEBench's JumpReLU): a latent whose pre-activations all sit below θ gets no
    gradient from R or S, and without AuxK a third of the dictionary died on the toy task."""

    pre_encoder_bias = False
    aux_loss = TopK.aux_loss

    @staticmethod
    def check(cfg):
        if not (cfg.jump_bandwidth > 0 and cfg.jump_threshold > 0):
            raise ValueError(f"jumprelu needs jump_bandwidth > 0 and jump_threshold > 0 (θ = exp(log θ)), got "
                             f"{cfg.jump_bandwidth} and {cfg.jump_threshold}")

    def add_parameters_(self, sae):
        theta = torch.full((self.cfg.d_sae,), self.cfg.jump_threshold)
        sae.log_threshold = torch.nn.Parameter(theta.log())

    def activation(self, sae, pre, features=None):
        theta = sae.log_threshold.exp() if features is None else sae.log_threshold[features].exp()
        return pre * (pre > theta)

    def train_activation(self, sae, pre):
        return _JumpReLU.apply(pre, sae.log_threshold.exp(), self.cfg.jump_bandwidth)

    @torch.no_grad()
    def resample_(self, sae, idx):
        """A resampled feature starts from the initial threshold, with fresh Adam moments: its old
        θ was tuned to a direction it no longer has."""
        sae.log_threshold[idx] = math.log(self.cfg.jump_threshold)
        return [(sae.log_threshold, (idx,))]

    def sparsity(self, sae, pre, f):
        l0 = _Step.apply(pre, sae.log_threshold.exp(), self.cfg.jump_bandwidth).sum(-1).mean()
        return _reported_l1(sae, f), l0


class MatryoshkaBatchTopK(BatchTopK):
    """Bussmann et al. 2025 (arXiv 2503.17547): BatchTopK whose nested prefixes of the dictionary,
    the first m_1 < m_2 < ... < m_G = d_sae latents, must each reconstruct the input on their own:

        x̂_s^(g) = f[:, :m_g] @ W_dec[:m_g] + b_dec
        L_rec   = (1/G) Σ_g mean_batch ‖x_s - x̂_s^(g)‖²        (equal weights, as dictionary_learning)

    The first latents are trained to carry the input without help from the later ones, so they
    learn broad features (a topic), and the later ones refine them instead of absorbing a parent's
    tokens into narrower children. σ, θ and AuxK are BatchTopK's; `matryoshka_sizes` sets the
    m_g (default d_sae/16, d_sae/4, d_sae)."""

    @staticmethod
    def check(cfg):
        TopK.check(cfg)
        sizes = MatryoshkaBatchTopK.sizes(cfg)
        if any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1 or sizes[-1] != cfg.d_sae:
            raise ValueError(f"matryoshka needs increasing prefix sizes ending at d_sae={cfg.d_sae} "
                             f"(sae.matryoshka_sizes, e.g. {cfg.d_sae // 16},{cfg.d_sae // 4},{cfg.d_sae}), got {sizes}")

    @staticmethod
    def sizes(cfg) -> tuple[int, ...]:
        """m_1 < ... < m_G = d_sae: `cfg.matryoshka_sizes`, or d_sae/16, d_sae/4, d_sae."""
        default = {max(cfg.d_sae // 16, 1), max(cfg.d_sae // 4, 1), cfg.d_sae}
        return tuple(cfg.matryoshka_sizes or sorted(default))

    def reconstruction_loss(self, sae, x_s, y_s, f, mse):
        """The prefixes' reconstructions, built up block by block: x̂^(g) = x̂^(g-1) + f_block W_block
        from x̂^(0) = b_dec (a skip transcoder's b_dec + x_s W_skip). The full one's error (g = G) is
        `mse`, already computed; the others cost a decode of the first m_{G-1} latents."""
        sizes, total, x_hat, start = self.sizes(self.cfg), x_s.new_zeros(()), sae.decoder_base(x_s), 0
        for m in sizes[:-1]:
            x_hat = x_hat + f[:, start:m] @ sae.W_dec[start:m]
            total = total + (x_hat - y_s).pow(2).sum(-1).mean()
            start = m
        return (total + mse) / len(sizes)


ARCHITECTURES: dict[str, type[ReLU]] = {"relu": ReLU, "relu_april": ReLUApril, "topk": TopK,
                                         "batchtopk": BatchTopK, "jumprelu": JumpReLU,
                                         "matryoshka": MatryoshkaBatchTopK}
