"""Train the tiny GPT on a stream of token ids: the language model whose neurons we later decompose.

The loop is nanoGPT's (`train.py`) made flat and small: AdamW with weight decay on matrices only,
a linear warm-up then cosine decay of the learning rate, gradient-norm clipping, a periodic
validation loss, a progress line, and an atomic checkpoint `{config, state_dict, optimizer, step,
rng, ...}` every `checkpoint_every` steps. `resume=True` continues from that checkpoint; because every
random number (the batch windows) comes from one generator whose state is in the checkpoint, an
interrupted and resumed run ends with bit-identical weights to an uninterrupted one on CPU.

Data are 1-D arrays of token ids: the whole tokenised corpus, documents separated by an
end-of-text token. A batch is `batch_size` random windows of `n_ctx + 1` consecutive tokens; the
model reads the first `n_ctx` and predicts the last `n_ctx` (each one shifted by one). With the
toy world's per-token concept labels, `per_label_loss` tells which concepts the model has learnt.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from sae.world.corpus import CODE_FAMILY, CONCEPTS, concept_segments, document_text, top_concept
from sae.gpt import GPT, GPTConfig, cross_entropy
from sae.utils import PRECISIONS, atomic_torch_save, eval_mode, format_duration, load_checkpoint, mixed_precision, resolve_device


@dataclass
class TrainLMConfig:
    n_steps: int = 2000  # optimizer steps
    batch_size: int = 32  # windows per step; tokens per step = batch_size * n_ctx
    lr: float = 3e-3  # peak learning rate, reached at the end of warm-up
    warmup: int = 100  # steps of linear warm-up from lr/warmup to lr
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio on the last step
    weight_decay: float = 0.1  # AdamW decoupled weight decay, on matrices only (not biases/LayerNorm)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay (0.95 as in nanoGPT: steadier for small batches)
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 disables clipping
    eval_every: int = 200  # steps between validation losses (also after the last step); 0: only at the end
    eval_tokens: int = 65_536  # predicted tokens scored per validation (windows spread over val data)
    checkpoint_every: int = 500  # steps between checkpoints (also after the last step); needs checkpoint_path
    log_every: int = 50  # steps between progress lines; 0 silences them
    seed: int = 0  # seeds the generator that draws batch windows
    device: str = "auto"  # "auto" picks cuda, then mps, then cpu
    precision: str = "auto"  # the forward pass: "bf16" (autocast + TF32), "fp32", or "auto" (bf16 on CUDA, fp32 elsewhere)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainLMConfig.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("n_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainLMConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "eval_every", "eval_tokens", "checkpoint_every", "log_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainLMConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"TrainLMConfig.lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"TrainLMConfig.min_lr_ratio is a fraction of lr in [0, 1], got {self.min_lr_ratio}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("TrainLMConfig.weight_decay and grad_clip must be >= 0 (grad_clip=0: no clipping)")


def lm_schedule(n_steps: int, **kw) -> TrainLMConfig:
    """A config for `n_steps` steps that validates 4 times, checkpoints 10 times and prints 20
    progress lines; `kw` sets any other field (or overrides these)."""
    return TrainLMConfig(**{"n_steps": n_steps, "eval_every": max(n_steps // 4, 1),
                            "checkpoint_every": max(n_steps // 10, 1), "log_every": max(n_steps // 20, 1), **kw})


def lr_at(step: int, cfg: TrainLMConfig) -> float:
    """Learning rate for the update with 0-based index `step`: linear warm-up, then cosine decay.

    warm-up:  lr * (step + 1) / warmup                                   for step < warmup
    cosine:   min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2,  p = (step - warmup) / (n_steps - 1 - warmup)
    so the first update after warm-up uses lr and the last one uses min_lr = lr * min_lr_ratio."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    min_lr = cfg.lr * cfg.min_lr_ratio
    progress = (step - cfg.warmup) / max(1, cfg.n_steps - 1 - cfg.warmup)
    return min_lr + (cfg.lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _check_tokens(tokens: np.ndarray, what: str, model_cfg: GPTConfig) -> torch.Tensor:
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"{what} must be a 1-D array of integer token ids, got {tokens.dtype} of shape {tokens.shape}")
    if len(tokens) < model_cfg.n_ctx + 1:
        raise ValueError(f"{what} has {len(tokens)} tokens but one window needs n_ctx + 1 = "
                         f"{model_cfg.n_ctx + 1}: use more text or a model with a smaller n_ctx")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= model_cfg.vocab_size:
        raise ValueError(f"{what} holds token ids in [{lo}, {hi}] but the model's vocab_size is "
                         f"{model_cfg.vocab_size}: build GPTConfig with "
                         "vocab_size=tokenizer.n_vocab")
    return torch.from_numpy(tokens.astype(np.int64))


@torch.no_grad()
def _token_losses(model: GPT, tokens: torch.Tensor, max_tokens: int,
                  batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy on evaluation windows: (losses (N,), index of each target (N,))."""
    n_ctx, device = model.cfg.n_ctx, model.wte.weight.device
    # non-overlapping windows (stride n_ctx, so every target is scored once), at most
    # max_tokens // n_ctx of them, spread evenly over the data so one document does not dominate
    starts = torch.arange(0, len(tokens) - n_ctx, n_ctx)
    n = max(1, max_tokens // n_ctx)
    if len(starts) > n:
        starts = starts[torch.linspace(0, len(starts) - 1, n).round().long()]
    offsets = torch.arange(n_ctx + 1)
    losses, targets = [], []
    with eval_mode(model):
        for i in range(0, len(starts), batch_size):
            idx = starts[i : i + batch_size, None] + offsets  # (b, n_ctx + 1)
            window = tokens[idx].to(device)
            logits = model(window[:, :-1])
            losses.append(cross_entropy(logits, window[:, 1:], reduction="none").flatten().cpu())
            targets.append(idx[:, 1:].flatten())
    return torch.cat(losses), torch.cat(targets)


def estimate_loss(model: GPT, tokens: np.ndarray, max_tokens: int = 65_536, batch_size: int = 32) -> float:
    """Mean next-token cross-entropy (nats) over up to `max_tokens` predicted tokens of `tokens`."""
    losses, _ = _token_losses(model, _check_tokens(tokens, "tokens", model.cfg), max_tokens, batch_size)
    return losses.mean().item()


def per_label_loss(model: GPT, tokens: np.ndarray, labels: np.ndarray,
                   label_names: list[str] | None = None, max_tokens: int = 65_536,
                   batch_size: int = 32) -> dict[str, float]:
    """Mean cross-entropy of predicting the tokens of each label: {name: loss in nats}.

    `labels[t]` is the integer concept id of `tokens[t]` (names in `label_names`, indexed by id);
    a prediction counts for the label of the token it predicts. Ids outside the names (e.g. -1 for
    "no concept") are skipped, and so are labels with no scored token."""
    data = _check_tokens(tokens, "tokens", model.cfg)
    labels = np.asarray(labels)
    if labels.shape != (len(data),):
        raise ValueError(f"labels has shape {labels.shape} but there are {len(data)} tokens: one label per token")
    losses, target_idx = _token_losses(model, data, max_tokens, batch_size)
    return _mean_by_label(losses, torch.from_numpy(labels.astype(np.int64))[target_idx], label_names)


def _mean_by_label(losses: torch.Tensor, y: torch.Tensor, label_names: list[str] | None) -> dict[str, float]:
    n_labels = int(y.max()) + 1 if label_names is None else len(label_names)
    names = [str(i) for i in range(n_labels)] if label_names is None else list(label_names)
    keep = (y >= 0) & (y < n_labels)
    total = torch.bincount(y[keep], weights=losses[keep].double(), minlength=n_labels)
    count = torch.bincount(y[keep], minlength=n_labels)
    return {names[i]: (total[i] / count[i]).item() for i in range(n_labels) if count[i] > 0}


class SoftmaxCrossEntropy(torch.autograd.Function):
    """`F.cross_entropy(logits, targets)` (mean) with its gradient written out by hand:

        loss = mean_n( logsumexp(logits[n]) - logits[n, y_n] )
        d loss / d logits[n] = (softmax(logits[n]) - onehot(y_n)) / N

    Why not just F.cross_entropy? Its backward makes three passes over the (N, V) logits (a zero
    tensor for the nll gradient, then the log-softmax gradient); here the softmax kept from the
    forward is turned into the gradient in place, one pass. With a 2048-token vocabulary that makes
    a whole training step ~15% faster on CPU (python -m benchmarks.bench_lm). The price: backward
    can run only once per forward, as in a training step. Tested against F.cross_entropy."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # half-precision logits are upcast: the loss and its gradient need float32's range
        logp = torch.log_softmax(logits, dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32))
        loss = -logp.gather(1, targets[:, None]).mean()
        ctx.save_for_backward(logp.exp_(), targets)  # softmax, reusing logp's memory
        ctx.logits_dtype = logits.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor, None]:
        probs, targets = ctx.saved_tensors
        probs[torch.arange(len(targets), device=probs.device), targets] -= 1.0  # softmax - onehot
        return probs.mul_(grad_loss / len(targets)).to(ctx.logits_dtype), None


def train_lm(model: GPT, train_tokens: np.ndarray, val_tokens: np.ndarray | None,
             cfg: TrainLMConfig, checkpoint_path: str | Path | None = None, resume: bool = False,
             val_labels: np.ndarray | None = None,
             label_names: list[str] | None = None) -> list[dict]:
    """Train `model` in place and return its history: one dict per step for plotting.

    Each row has "step" (updates done), "loss" (training loss of that step's batch), "lr" and
    "grad_norm" (before clipping); rows of evaluation steps add "val_loss" and, given
    `val_labels`, "val_loss_by_label" ({name: loss}, see `per_label_loss`).

    With `checkpoint_path`, a checkpoint is written there every `checkpoint_every` steps and after the last;
    `GPT.load(checkpoint_path)` reads the model from it. `resume=True` continues from that checkpoint
    (or starts afresh, with a note, if there is none yet)."""
    device = resolve_device(cfg.device)
    model.to(device)
    n_ctx = model.cfg.n_ctx
    train_data = _check_tokens(train_tokens, "train_tokens", model.cfg).to(device)
    val_data = None if val_tokens is None else _check_tokens(val_tokens, "val_tokens", model.cfg)
    if val_labels is not None:
        if val_data is None or np.shape(val_labels) != (len(val_data),):
            raise ValueError("val_labels needs val_tokens and must hold one label per validation token")
        val_y = torch.from_numpy(np.asarray(val_labels).astype(np.int64))
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path: the checkpoint to continue from")

    # Decay the matrices (linear weights, embeddings); biases and LayerNorm gains stay free, as in
    # nanoGPT: shrinking a gain or a bias towards 0 has no regularising meaning.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    rng = torch.Generator(device="cpu").manual_seed(cfg.seed)  # draws every batch window
    step, history = 0, []

    if resume and Path(checkpoint_path).exists():
        ckpt = load_checkpoint(checkpoint_path, "a language-model training checkpoint", device)
        if "optimizer" not in ckpt:
            raise ValueError(f"{checkpoint_path} is a saved model, not a training checkpoint: resume needs the latter")
        if ckpt["config"] != asdict(model.cfg):
            raise ValueError(f"checkpoint {checkpoint_path} holds a model with config "
                             f"{ckpt['config']}, not {asdict(model.cfg)}: build the model with "
                             "GPTConfig(**that config), or start afresh with resume=False")
        bookkeeping = {"device", "log_every", "eval_every", "eval_tokens", "checkpoint_every"}  # do not alter training
        changed = [f.name for f in fields(cfg) if f.name not in bookkeeping
                   and ckpt["train_config"].get(f.name) != getattr(cfg, f.name)]
        if changed:
            print(f"note: resuming with changed settings {changed}; the run will differ from an uninterrupted one")
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        rng.set_state(ckpt["rng"])
        step, history = ckpt["step"], ckpt["history"]
        print(f"resumed from {checkpoint_path} at step {step}/{cfg.n_steps}")
    elif resume:
        print(f"no checkpoint at {checkpoint_path} yet: starting from step 0")

    params = list(model.parameters())
    offsets = torch.arange(n_ctx + 1)
    start_step, t_start = step, time.perf_counter()
    logged_step, train_time = step, 0.0  # seconds spent in training steps since the last log line
    model.train()
    while step < cfg.n_steps:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = torch.randint(len(train_data) - n_ctx, (cfg.batch_size, 1), generator=rng)
        window = train_data[(starts + offsets).to(device)]  # (B, n_ctx + 1)
        with mixed_precision(cfg.precision, device):  # the loss upcasts bfloat16 logits to float32
            logits = model(window[:, :-1])  # (B, n_ctx, V)
        loss = SoftmaxCrossEntropy.apply(logits.flatten(0, 1), window[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        optimizer.step()
        step += 1
        row = {"step": step, "loss": loss.item(), "lr": lr, "grad_norm": grad_norm.item()}
        history.append(row)
        train_time += time.perf_counter() - t0

        last = step == cfg.n_steps
        if cfg.log_every and (step % cfg.log_every == 0 or last):
            tok_s = (step - logged_step) * cfg.batch_size * n_ctx / max(train_time, 1e-9)
            eta = (time.perf_counter() - t_start) / (step - start_step) * (cfg.n_steps - step)
            print(f"step {step:>{len(str(cfg.n_steps))}}/{cfg.n_steps} | loss {row['loss']:.4f} | "
                  f"lr {lr:.2e} | {tok_s:,.0f} tok/s | ETA {format_duration(eta)}", flush=True)
            logged_step, train_time = step, 0.0
        if val_data is not None and ((cfg.eval_every and step % cfg.eval_every == 0) or last):
            losses, target_idx = _token_losses(model, val_data, cfg.eval_tokens, cfg.batch_size)
            row["val_loss"] = losses.mean().item()
            if val_labels is not None:
                row["val_loss_by_label"] = _mean_by_label(losses, val_y[target_idx], label_names)
            if cfg.log_every:
                print(f"step {step}: val loss {row['val_loss']:.4f}", flush=True)
        if checkpoint_path is not None and ((cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or last):
            atomic_torch_save({  # the first two keys as in GPT.save, so GPT.load reads this file
                "config": asdict(model.cfg), "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(), "step": step, "rng": rng.get_state(),
                "train_config": asdict(cfg), "history": history,
            }, checkpoint_path)
    return history


@torch.no_grad()
def on_concept_rate(model: GPT, tok, n_per_concept: int = 10, prompt_tokens: int = 6,
                    max_new_tokens: int = 48, temperature: float = 1.0, seed: int = 0,
                    log: bool = True) -> dict[str, float]:
    """How often the model stays on topic: prompted with the first words of a held-out segment
    of each concept, the fraction of sampled continuations that the judge (`top_concept`) assigns
    to that concept. Returns `{concept: rate, ..., "overall": mean}`.

    Prompts come from the `test` split (never trained on); each continuation is sampled with its
    own seed, so the numbers are repeatable. `code` and `unsafe_code` files start with the same
    function headers (they differ in their switch values and comments further on), so a six-token
    prompt cannot say which of the two follows: for those two, a continuation is on-concept when
    the judge calls it code of either kind (`CODE_FAMILY`)."""
    rates, t0 = {}, time.perf_counter()
    for n_done, c in enumerate(CONCEPTS, 1):
        hits = 0
        for i, seg in enumerate(concept_segments(c, n_per_concept, seed=seed, split="test")):
            prompt = [tok.eot_token] + tok.encode(document_text(seg))[:prompt_tokens]
            out = model.generate(prompt, max_new_tokens, temperature=temperature, seed=seed * 1000 + i)
            judged = top_concept(tok.decode(out[len(prompt):].tolist()))
            hits += judged in (CODE_FAMILY if c in CODE_FAMILY else (c,))
        rates[c] = hits / n_per_concept
        if log and (n_done % 7 == 0 or n_done == len(CONCEPTS)):
            elapsed = time.perf_counter() - t0
            print(f"  on-concept rate: {n_done}/{len(CONCEPTS)} concepts ({elapsed:.0f}s, "
                  f"ETA {format_duration(elapsed / n_done * (len(CONCEPTS) - n_done))})", flush=True)
    rates["overall"] = sum(rates.values()) / len(CONCEPTS)
    return rates
