"""Training a sparse autoencoder: one flat loop over any iterator of activation batches.

What the loop does each step (Towards Monosemanticity appendix "Autoencoder Training"; Anthropic
April 2024 update "Training SAEs"; Gao et al. 2024 section 2):

1. the learning rate and the L1 coefficient λ come from their schedules (`lr_at`, `l1_coeff_at`);
2. forward, backward; for the unit-norm architectures (all but relu_april) the decoder gradient's
   component parallel to each row is removed; optional gradient-norm clipping; Adam step; rows
   renormalised; the architecture updates what it keeps (BatchTopK's inference threshold);
3. bookkeeping: per-feature "steps since fired" counters. A feature that has not fired for
   `dead_window` steps is *dead*: AuxK (topk, batchtopk, matryoshka) uses the dead ones,
   resampling replaces them.

Resampling (Towards Monosemanticity, appendix "Neuron Resampling"): at each step of
`resample_steps` at which some feature is dead, `resample_dead_` gives the dead features new
directions chosen among `resample_inputs` fresh inputs of the batch iterator (not trained on: from
a shuffled activation buffer they are a random sample of the data, as Anthropic's 819,200 were).

Under `torchrun` (see `sae.distributed`) each process trains on its own shard: gradients are
averaged over the processes after `backward`, a feature fired if it fired on any process, and
b_dec's initialisation and resampling see every process's rows, so N processes with batch B/N
take the same steps as one process with batch B (tested). Only rank 0 prints and checkpoints.

Checkpoints hold the SAE, Adam's state, the counters, the random generator, the history and the
number of batches drawn. To resume, pass the *same* stream of batches from its beginning and
`resume=True`: the loop skips the batches the interrupted run already drew, so the resumed run
sees exactly what the uninterrupted one would have (bit-identical on CPU, tested).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch import Tensor

from sae import distributed
from sae.autoencoder import SparseAutoencoder
from sae.utils import PRECISIONS, atomic_torch_save, format_duration, load_checkpoint, mixed_precision


@dataclass
class TrainSAEConfig:
    n_steps: int = 10_000  # optimizer steps, one batch each
    lr: float = 1e-3  # Adam learning rate (no weight decay)
    l1_coeff: float = 5.0  # λ, the weight of the sparsity term S: of the L1 (relu, relu_april), of the L0 (jumprelu); topk, batchtopk, matryoshka ignore it
    adam_betas: tuple[float, float] = (0.9, 0.999)  # Adam's β1, β2
    l1_warmup_frac: float = 0.05  # λ ramps linearly from 0 over this first fraction of the steps
    lr_decay_frac: float = 0.2  # the learning rate decays linearly to 0 over this last fraction
    lr_warmup_frac: float = 0.0  # the learning rate ramps linearly from 0 over this first fraction (0: none)
    grad_clip: float = 0.0  # clip the gradient norm to this (0: off; the April update uses 1.0)
    dead_window: int = 1000  # steps without firing after which a feature counts as dead (Anthropic: 12,500)
    resample_steps: tuple[int, ...] = ()  # steps at which dead features are resampled (Anthropic: 25k, 50k, 75k, 100k)
    resample_inputs: int = 16_384  # inputs drawn to choose new directions (Anthropic: 819,200)
    resample_encoder_scale: float = 0.2  # new encoder column = direction × this × mean alive encoder norm
    resample_fire_frac: float = 0.01  # new b_enc <= 0 set so a new feature fires on <= this share of the sample (0: b_enc = 0, Anthropic)
    init_b_dec: bool = True  # start b_dec at the geometric median of the first batch (not on resume)
    log_every: int = 100  # print a progress line every this many steps (0: silent)
    checkpoint_every: int = 0  # write the training checkpoint every this many steps (0: only at the end)
    precision: str = "auto"  # the forward pass: "bf16" (autocast + TF32), "fp32", or "auto" (bf16 on CUDA, fp32 elsewhere)
    seed: int = 0  # seeds the resampling draws

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainSAEConfig.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


def sae_schedule(n_steps: int, **kw) -> TrainSAEConfig:
    """A config for `n_steps` steps with Anthropic's resampling schedule scaled down (the fields'
    comments give theirs): a feature is dead after 10% of the steps without firing, resampling at
    20% and 40%; progress 20 times, a checkpoint 10 times. `kw` sets or overrides any field."""
    return TrainSAEConfig(**{"n_steps": n_steps, "dead_window": max(n_steps // 10, 1),
                             "resample_steps": (n_steps // 5, 2 * n_steps // 5), "log_every": max(n_steps // 20, 1),
                             "checkpoint_every": max(n_steps // 10, 1), **kw})


def lr_at(step: int, cfg: TrainSAEConfig) -> float:
    """Linear warm-up over the first `lr_warmup_frac` of the steps (if any), constant, then linear
    decay to 0 over the last `lr_decay_frac`."""
    warmup = cfg.n_steps * cfg.lr_warmup_frac
    if step < warmup:  # (a warm-up shorter than one step must not give more than lr at step 0)
        return cfg.lr * min(1.0, (step + 1) / warmup)
    decay_start = cfg.n_steps * (1 - cfg.lr_decay_frac)
    if step < decay_start or cfg.lr_decay_frac <= 0:
        return cfg.lr
    return cfg.lr * (cfg.n_steps - step) / (cfg.n_steps - decay_start)


def l1_coeff_at(step: int, cfg: TrainSAEConfig) -> float:
    """λ: linear warm-up from 0 over the first `l1_warmup_frac` of the steps, then `cfg.l1_coeff`."""
    warmup = cfg.n_steps * cfg.l1_warmup_frac
    return cfg.l1_coeff if warmup <= 0 else cfg.l1_coeff * min(1.0, (step + 1) / warmup)


def make_optimizer(sae: SparseAutoencoder, cfg: TrainSAEConfig) -> torch.optim.Adam:
    # fused Adam: one kernel for all parameters instead of a dozen elementwise passes each
    fused = sae.W_enc.device.type in ("cpu", "cuda")
    return torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=cfg.adam_betas, fused=fused)


@torch.no_grad()
def resample_dead_(sae: SparseAutoencoder, opt: torch.optim.Optimizer, dead: Tensor, sample: Tensor,
                   generator: torch.Generator | None = None, encoder_scale: float = 0.2,
                   fire_frac: float = 0.01) -> dict:
    """Give every dead feature a new direction taken from an input the SAE reconstructs badly.

    For a sample of inputs, compute each one's loss (its squared reconstruction error); draw one
    input per dead feature with probability ∝ loss²; with v = (x_s - b_dec) / ‖x_s - b_dec‖ the
    scaled, centred input, set
        W_dec[i] = v,   W_enc[:, i] = v · encoder_scale · mean_{alive j} ‖W_enc[:, j]‖,   b_enc[i] = 0,
    (a transcoder: W_dec[i] from its centred target y_s - b_dec, W_enc[:, i] from its input x_s)
    and zero Adam's moments (exp_avg, exp_avg_sq) of exactly those rows, columns and biases,
    looked up by parameter (`opt.state[p]`), so nothing else moves.

    The small encoder scale matters: the new feature must start gently. Returns a summary with
    the fraction of the sample each new feature fires on right away (`fire_frac_*`); if that is
    near 1/2 for hundreds of features, the next step's loss jumps."""
    dead_idx = dead.nonzero().squeeze(1)
    n_dead = dead_idx.numel()
    if n_dead == 0:
        return {"n_resampled": 0}
    x_s, y_s = (part * scale for part, scale in zip(sae.split(sample), (sae.input_scale, sae.output_scale)))
    loss = torch.cat([(sae(x / sae.input_scale, target=y / sae.output_scale).x_hat * sae.output_scale - y).pow(2).sum(-1)
                      for x, y in zip(x_s.split(4096), y_s.split(4096))])  # (n_sample,): ‖ŷ_s - y_s‖²
    weights = loss.double().pow(2).cpu()
    if weights.sum() <= 0:
        weights = torch.ones_like(weights)
    pick = torch.multinomial(weights, n_dead, replacement=n_dead > len(weights), generator=generator).to(sample.device)
    v = y_s[pick] - sae.b_dec  # (n_dead, d_out)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    v_in = x_s[pick] / x_s[pick].norm(dim=1, keepdim=True).clamp_min(1e-12) if sae.transcoder else v

    alive = ~dead
    enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else torch.tensor(1.0)
    if sae.arch.unit_norm_decoder:
        sae.W_dec[dead_idx] = v
    else:  # relu_april: match the typical alive decoder norm so the L1 price is ordinary
        dec_norm = sae.W_dec[alive].norm(dim=1).mean() if bool(alive.any()) else torch.tensor(1.0)
        sae.W_dec[dead_idx] = v * dec_norm
    sae.W_enc[:, dead_idx] = v_in.T * (encoder_scale * enc_norm)
    sae.b_enc[dead_idx] = 0.0
    if fire_frac > 0:  # lower each new bias until the feature fires on at most `fire_frac` of the sample
        x_c = x_s - sae.b_dec if sae.pre_encoder_bias else x_s
        pre_new = x_c @ sae.W_enc[:, dead_idx]  # (n_sample, n_dead)
        kth = max(1, len(sample) - int(fire_frac * len(sample)))
        threshold = pre_new.kthvalue(kth, dim=0).values  # (n_dead,)
        sae.b_enc[dead_idx] = -threshold.clamp_min(0.0)

    extra = sae.arch.resample_(sae, dead_idx)  # the architecture's own per-feature state (JumpReLU's θ)
    for p, rows in ((sae.W_dec, (dead_idx,)), (sae.W_enc, (slice(None), dead_idx)), (sae.b_enc, (dead_idx,)), *extra):
        state = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][rows] = 0.0

    fires = torch.cat([(sae.encode(chunk / sae.input_scale)[:, dead_idx] > 0).float().sum(0, keepdim=True)
                       for chunk in x_s.split(4096)])
    fire_frac = fires.sum(0) / len(sample)  # (n_dead,)
    return {"n_resampled": n_dead, "sample_loss_mean": loss.mean().item(),
            "fire_frac_mean": fire_frac.mean().item(), "fire_frac_max": fire_frac.max().item()}


def train_sae(sae: SparseAutoencoder, batches: Iterable[Tensor], cfg: TrainSAEConfig,
              checkpoint_path: str | os.PathLike | None = None, resume: bool = False) -> list[dict]:
    """Train `sae` on an iterator of raw activation batches (batch, d_in) (a transcoder: rows [x | y]
    of width d_in + d_out, `SparseAutoencoder.split`); returns the history.

    The history has one dict per step: step, loss, mse, l1, l0, fvu, dead_frac, aux (TopK's AuxK
    loss, 0 when it did not run), lr, l1_coeff, batch_size, elapsed_s; a step that resampled also
    has "resample" (see `resample_dead_`). With `checkpoint_path`, a checkpoint is written every
    `checkpoint_every` steps and at the end; `resume=True` continues from it (see the module
    docstring). If the loss stops being finite, training stops with FloatingPointError naming the
    step (noticed at most 100 steps later, before any checkpoint: the last one stays finite)."""
    run = _Training(sae, batches, cfg, checkpoint_path, resume)
    while run.step < cfg.n_steps:
        run.sync.step = run.step  # named by a divergence (SAE_CHECK_SYNC=1)
        dead = run.dead()
        resampled = None
        if run.step in cfg.resample_steps and bool(dead.any()):  # none dead: draw nothing (on every rank)
            resampled = run.resample(dead)
            dead = run.dead()
        run.train_step(run.draw(), dead, resampled)
        # `flush` is a collective: whether it runs must not depend on the rank (sae/distributed.py),
        # so it follows the configured log_every on every rank, though only rank 0 prints
        logging = cfg.log_every and (run.step % cfg.log_every == 0 or run.step == cfg.n_steps)
        checkpointing = cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0
        if logging or checkpointing or run.step == cfg.n_steps or run.step in cfg.resample_steps \
                or len(run.pending) >= 100:
            run.flush()
        if logging and run.prints:
            run.print_progress()
        if checkpointing:
            run.save()
    run.save()
    return run.history


class _Training:
    """One training's state between steps: the SAE, Adam, the "steps since fired" counters, the
    resampling generator, the batch stream and the history; made fresh (b_dec at the first batch's
    geometric median, if `init_b_dec`) or resumed. `sync` is what the ranks agree on under
    `torchrun` (`sae.distributed.Sync`; it does nothing in one process)."""

    def __init__(self, sae: SparseAutoencoder, batches: Iterable[Tensor], cfg: TrainSAEConfig,
                 checkpoint_path, resume: bool):
        self.sae, self.cfg, self.checkpoint_path = sae, cfg, checkpoint_path
        self.device = sae.W_enc.device
        self.sync = distributed.Sync()
        # every rank starts from rank 0's parameters and must train the same configuration
        self.sync.start(sae, {"sae": asdict(sae.cfg), "train": asdict(cfg)})
        self.prints = bool(cfg.log_every) and self.sync.rank == 0  # progress lines come from rank 0 alone
        self.opt = make_optimizer(sae, cfg)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.steps_since_fired = torch.zeros(sae.cfg.d_sae, dtype=torch.long, device=self.device)
        self.history: list[dict] = []
        self.step = self.n_drawn = 0
        self.stream: Iterator[Tensor] = iter(batches)
        # Each step's numbers stay on the device until `flush` brings a run of steps to the host in
        # one transfer: reading them every step would make the CPU wait for the GPU at every step.
        self.pending: list[tuple] = []  # (step, lr, λ, batch size, elapsed seconds, scalars, resampling)
        if resume:
            self.resume()
        elif cfg.init_b_dec:
            first = next(self.stream)
            sae.init_b_dec_(self.sync.rows(first.to(self.device), "b_dec's initial median"))
            self.stream = itertools.chain([first], self.stream)
        self.t_start = time.perf_counter() - (self.history[-1]["elapsed_s"] if self.history else 0.0)
        self.t_log, self.step_log = time.perf_counter(), self.step

    def resume(self) -> None:
        if self.checkpoint_path is None or not Path(self.checkpoint_path).exists():
            raise FileNotFoundError(f"resume=True but there is no checkpoint at {self.checkpoint_path}")
        ckpt = load_checkpoint(self.checkpoint_path, "an SAE training checkpoint", self.device)
        if ckpt["config"] != asdict(self.sae.cfg):
            raise ValueError(f"the checkpoint was made for {ckpt['config']}, not this SAE's {asdict(self.sae.cfg)}")
        self.sae.load_state_dict(ckpt["state_dict"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.step, self.n_drawn = ckpt["step"], ckpt["batches_drawn"]
        self.steps_since_fired = ckpt["steps_since_fired"].to(self.device)
        self.gen.set_state(ckpt["generator"].cpu())
        self.history = ckpt["history"]
        self.stream = itertools.islice(self.stream, self.n_drawn, None)  # the batches already used

    def dead(self) -> Tensor:
        return self.steps_since_fired >= self.cfg.dead_window

    def draw(self) -> Tensor:
        try:
            x = next(self.stream)
        except StopIteration:
            raise ValueError(f"the batch iterator ran out after {self.n_drawn} batches, before "
                             f"step {self.cfg.n_steps}: give more batches, ask for fewer steps, or "
                             "fewer resample_inputs") from None
        self.n_drawn += 1
        return x.to(self.device, non_blocking=True)

    def resample(self, dead: Tensor) -> dict:
        """Resample the dead features from `resample_inputs` fresh inputs (every rank's rows)."""
        cfg, chunks, n = self.cfg, [], 0
        while n < cfg.resample_inputs:
            chunks.append(self.sync.rows(self.draw(), "resampling inputs"))
            n += len(chunks[-1])
        sample = torch.cat(chunks)[: cfg.resample_inputs]
        info = resample_dead_(self.sae, self.opt, dead, sample, self.gen, cfg.resample_encoder_scale,
                              cfg.resample_fire_frac)
        self.steps_since_fired[dead] = 0  # give the new features a full window to prove themselves
        if self.prints:
            print(f"step {self.step:>7}: resampled {info['n_resampled']} dead features; right after, they fire on "
                  f"{info.get('fire_frac_mean', 0.0):.2%} of the sample inputs on average "
                  f"(max {info.get('fire_frac_max', 0.0):.2%})", flush=True)
        return info

    def train_step(self, x: Tensor, dead: Tensor, resampled: dict | None) -> None:
        """One optimizer step on batch `x`; its numbers join `pending`."""
        sae, cfg, opt = self.sae, self.cfg, self.opt
        lr, lam = lr_at(self.step, cfg), l1_coeff_at(self.step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = sae.split(x)  # a transcoder's rows are [input | target]; an SAE's target is its input
        with mixed_precision(cfg.precision, self.device):  # parameters, gradients and Adam stay float32
            out = sae(x, l1_coeff=lam, dead_mask=dead, target=y)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        self.sync.grads(sae.parameters())
        if sae.arch.unit_norm_decoder:
            sae.remove_parallel_decoder_grad_()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
        opt.step()
        if sae.arch.unit_norm_decoder:
            sae.unit_norm_decoder_()

        with torch.no_grad():
            f = out.f.reshape(-1, sae.cfg.d_sae)
            sae.arch.update_(sae, f, lambda t: self.sync.mean(t, "the architecture's statistics"))
            fired = self.sync.any(f.amax(0) > 0, "fired")  # (d_sae,): fired on any rank
            self.steps_since_fired += 1
            self.steps_since_fired[fired] = 0
            # L0 = mean count of f > 0; f >= 0, so Σ sign(f) counts it in one float pass ((f > 0).sum()
            # converts a (batch, d_sae) bool tensor to int64 first: 20x slower, a sixth of a training step)
            l0 = f.sign().sum() / len(f)
            x_hat = out.x_hat.float()
            fvu = (y - x_hat).pow(2).sum() / (y - y.mean(0)).pow(2).sum()  # `metrics.fvu`, kept on the device
            scalars = torch.stack([t.float() for t in (out.loss, out.mse, out.l1, l0, self.dead().float().mean(),
                                                       out.aux, fvu)])
            scalars = self.sync.mean(scalars, "logged numbers")  # the mean over ranks (for the FVU, of the ranks' batch FVUs)
        self.step += 1
        self.pending.append((self.step, lr, lam, len(x) * self.sync.n_ranks, time.perf_counter() - self.t_start,
                             scalars, resampled))

    def flush(self) -> None:
        """Append the pending steps to the history; stop if a loss stopped being finite. A
        non-finite step is caught here, a few steps late at most: the parameters it reached are
        never checkpointed (`save` flushes first and checks them too)."""
        if not self.pending:
            return
        values = torch.stack([p[5] for p in self.pending])  # (steps, 7)
        # all ranks stop together, or the others would wait for this one forever
        everyone_finite = not bool(self.sync.any(~torch.isfinite(values[:, 0]).all().reshape(1), "a loss not finite").item())
        last = self.pending[-1][0]
        for (n, lr, lam, batch_size, elapsed, _, resampled), v in zip(self.pending, values.tolist()):
            loss, mse, l1, l0, dead_frac, aux, fvu = v
            if not math.isfinite(loss) or (not everyone_finite and n == last):  # here, or on another rank
                self.pending.clear()
                where = (f"the last good checkpoint, {self.checkpoint_path}, was kept" if self.checkpoint_path
                         else "no checkpoint was written")
                raise FloatingPointError(
                    f"SAE training diverged at step {n - 1}: loss = {loss} (mse {mse}, l1 {l1}); {where}. Is there "
                    "a NaN/inf in the activations, is the input scale set (E‖x·s‖ should be sqrt(d_in)), or is the "
                    f"learning rate ({lr:g}) too high?")
            entry = {"step": n, "loss": loss, "mse": mse, "l1": l1, "l0": l0, "fvu": fvu, "dead_frac": dead_frac,
                     "aux": aux, "lr": lr, "l1_coeff": lam, "batch_size": batch_size, "elapsed_s": elapsed}
            if resampled is not None:
                entry["resample"] = resampled
            self.history.append(entry)
        self.pending.clear()

    def print_progress(self) -> None:
        last, now = self.history[-1], time.perf_counter()
        steps_per_s = (self.step - self.step_log) / max(now - self.t_log, 1e-9)
        self.t_log, self.step_log = now, self.step
        eta = (self.cfg.n_steps - self.step) / max(steps_per_s, 1e-9)
        print(f"step {self.step:>7}/{self.cfg.n_steps} | loss {last['loss']:8.4f} | mse {last['mse']:8.4f} | "
              f"L0 {last['l0']:6.1f} | dead {last['dead_frac']:6.1%} | {steps_per_s * last['batch_size']:9,.0f} tok/s"
              f" | ETA {format_duration(eta)}", flush=True)

    def save(self) -> None:
        """Flush, check the parameters are finite, and write the checkpoint (rank 0)."""
        self.flush()
        if self.checkpoint_path is None:
            return
        if not all(bool(torch.isfinite(p).all()) for p in self.sae.parameters()):  # the same on every rank
            raise FloatingPointError(
                f"SAE parameters stopped being finite at step {self.step} (an inf gradient?); the last good "
                f"checkpoint, {self.checkpoint_path}, was kept. Lower the learning rate or set grad_clip.")
        if self.sync.rank == 0:
            atomic_torch_save({
                "config": asdict(self.sae.cfg), "train_config": asdict(self.cfg), "state_dict": self.sae.state_dict(),
                "optimizer": self.opt.state_dict(), "step": self.step, "batches_drawn": self.n_drawn,
                "steps_since_fired": self.steps_since_fired, "generator": self.gen.get_state(),
                "history": self.history,
            }, self.checkpoint_path)
