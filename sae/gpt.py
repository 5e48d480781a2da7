"""A tiny GPT with named hook points: the model the whole reproduction dissects.

Towards Monosemanticity (Bricken et al. 2023, "Problem Setup: Transformer") trains its dictionaries
on a one-layer transformer with a residual stream of 128 and an MLP of 512 neurons; `GPTConfig()`
defaults to that shape. The code follows nanoGPT (`model.py`): pre-LayerNorm blocks, learned
positions, causal self-attention, a GELU (or ReLU) MLP, no dropout (our data is tiny and we want
bit-for-bit repeatable runs).

Interpretability needs to *read* and *write* activations in the middle of the model. Every block
holds `HookPoint` modules (identity layers that do nothing but give an activation a name):

    x = blocks.i.hook_resid_pre(x)
    x = x + blocks.i.attn.hook_out( attn(ln_1(x)) )            # after the output projection
    u = blocks.i.mlp.hook_in( ln_2(x) )                         # what the MLP reads (a transcoder's input)
    h = blocks.i.mlp.hook_pre( u @ W_in + b_in )                # neuron pre-activations
    h = blocks.i.mlp.hook_post( gelu(h) )                       # the MLP neurons (default SAE site)
    y = blocks.i.mlp.hook_out( h @ W_out + b_out )              # what it writes (a transcoder's target)
    x = blocks.i.hook_resid_post( x + y )

`run_with_cache` records activations at chosen sites; the `hooks` context manager runs functions
`fn(act) -> act` there, which may replace them (that is how an SAE is spliced in for steering).

The unembedding is *untied* from the token embedding. In a one-layer model the direct path
`embed -> unembed` is the model's bigram table; with tied weights it would be `W_E @ W_E.T`
(up to LayerNorm), a symmetric matrix that cannot say "A is followed by B, but B not by A". An
untied `lm_head` also gives feature logit effects their own readout matrix, as in the papers.
The cost is `vocab_size * d_model` extra parameters (262k at the default shape).
"""

from __future__ import annotations

import difflib
import math
from contextlib import contextmanager
from functools import partial
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from sae.utils import atomic_torch_save, eval_mode, load_checkpoint, resolve_device

HookFn = Callable[[torch.Tensor], "torch.Tensor | None"]


@dataclass
class GPTConfig:
    n_layer: int = 1  # number of transformer blocks; Towards Monosemanticity used 1
    d_model: int = 128  # width of the residual stream
    n_head: int = 4  # attention heads per block; each head has d_model // n_head dimensions
    d_mlp: int = 512  # MLP neurons per block (the default SAE site, blocks.{last}.mlp.hook_post)
    n_ctx: int = 128  # context length: the longest sequence the model can read (learned positions)
    vocab_size: int = 2048  # number of token ids; must match the tokenizer's n_vocab
    activation: str = "gelu"  # MLP nonlinearity: "gelu" (as in the papers) or "relu"

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "n_head", "d_mlp", "n_ctx", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head != 0:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0][:8]
            raise ValueError(f"GPTConfig: d_model={self.d_model} is not divisible by "
                             f"n_head={self.n_head}, so the heads cannot split the residual stream "
                             f"evenly; pick n_head from the divisors of d_model (e.g. {divisors}) "
                             "or change d_model")
        if self.activation not in ("gelu", "relu"):
            raise ValueError(f"GPTConfig.activation must be 'gelu' or 'relu', got {self.activation!r}")


class HookPoint(nn.Identity):
    """Returns its input unchanged; exists so that an activation has a name to hook."""


class _StopForward(Exception):
    """Raised by a hook to end a forward pass early (`run_with_cache(..., stop_at=site)`)."""


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.hook_out = HookPoint()  # this block's write into the residual stream

    def forward(self, x: torch.Tensor, kv: dict | None = None) -> torch.Tensor:
        """`kv`: this layer's key/value cache when sampling (`GPT.generate(use_cache=True)`): the keys and
        values of the positions before `x` are read from it, and `x`'s are appended."""
        B, T, C = x.shape
        # each of q, k, v: (B, T, C) -> (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        if kv is not None and "k" in kv:  # one new position (T == 1) attends to every cached one
            k, v = torch.cat([kv["k"], k], dim=2), torch.cat([kv["v"], v], dim=2)
        if kv is not None:
            kv["k"], kv["v"] = k, v
        # softmax(q k^T / sqrt(hs) + causal mask) v, in one fused kernel
        y = F.scaled_dot_product_attention(q, k, v, is_causal=k.shape[2] == T)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.hook_out(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.hook_in = HookPoint()  # the MLP's input, ln_2 of the residual stream
        self.c_fc = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.hook_pre = HookPoint()  # neuron pre-activations
        self.act = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        self.hook_post = HookPoint()  # the neurons: what Towards Monosemanticity decomposes
        self.c_proj = nn.Linear(cfg.d_mlp, cfg.d_model)
        self.hook_out = HookPoint()  # the MLP's output, its write into the residual stream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_neurons(self.hook_post(self.act(self.hook_pre(self.c_fc(self.hook_in(x))))))

    def from_neurons(self, h: torch.Tensor) -> torch.Tensor:
        """The MLP's output from its neurons (after hook_post)."""
        return self.hook_out(self.c_proj(h))


class Block(nn.Module):
    # Modules are created in the order they run, so `GPT.sites` lists sites in execution order.
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor, kv: dict | None = None) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        x = x + self.attn(self.ln_1(x), kv)
        x = x + self.mlp(self.ln_2(x))
        return self.hook_resid_post(x)

    def forward_from(self, name: str, act: torch.Tensor, resid_pre: torch.Tensor | None,
                     attn_out: torch.Tensor | None) -> torch.Tensor:
        """`forward`'s output with the activation at this block's site `name` (e.g. "mlp.hook_post")
        set to `act`, computing only what runs after it: the same operations, so the same numbers.
        `resid_pre` / `attn_out`: this block's `hook_resid_pre` / `attn.hook_out` from a pass over
        the same tokens (needed by the sites inside the block)."""
        if name == "hook_resid_post":
            return act
        if name == "hook_resid_pre":
            x = act + self.attn(self.ln_1(act))
        else:
            x = resid_pre + (act if name == "attn.hook_out" else attn_out)
        if name == "mlp.hook_out":
            x = x + act
        elif name == "mlp.hook_post":
            x = x + self.mlp.from_neurons(act)
        elif name == "mlp.hook_pre":
            x = x + self.mlp.from_neurons(self.mlp.hook_post(self.mlp.act(act)))
        elif name == "mlp.hook_in":
            x = x + self.mlp.from_neurons(self.mlp.hook_post(self.mlp.act(self.mlp.hook_pre(self.mlp.c_fc(act)))))
        else:
            x = x + self.mlp(self.ln_2(x))
        return self.hook_resid_post(x)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)  # token embedding W_E
        self.wpe = nn.Embedding(cfg.n_ctx, cfg.d_model)  # learned position embedding
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # unembedding W_U, untied

        self.hook_points = {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}
        self.sites: list[str] = list(self.hook_points)  # every hookable site, in execution order

        # nanoGPT's init: N(0, 0.02) everywhere, zero biases, and the projections that write into
        # the residual stream scaled by 1/sqrt(2 * n_layer) so its variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
            elif p.dim() >= 2:
                nn.init.normal_(p, mean=0.0, std=0.02)
        # (LayerNorm weights keep their init of 1: they are 1-D and not named "bias".)

    def forward(self, tokens: torch.Tensor, last_only: bool = False, kv: list[dict] | None = None) -> torch.Tensor:
        """tokens (B, T) long -> logits (B, T, vocab_size) for the next token at every position
        (`last_only`: (B, 1, vocab_size) at the last position, all that sampling needs). `kv`: a
        key/value cache per block (`generate`): `tokens` then continue the cached positions."""
        B, T = tokens.shape
        start = kv[0]["k"].shape[2] if kv and "k" in kv[0] else 0  # positions already in the cache
        if start + T > self.cfg.n_ctx:
            raise ValueError(f"sequence of {start + T} tokens is longer than the context "
                             f"n_ctx={self.cfg.n_ctx}: crop it (tokens[:, -{self.cfg.n_ctx}:]) or "
                             "train a model with a larger n_ctx")
        pos = torch.arange(start, start + T, device=tokens.device)
        x = self.wte(tokens) + self.wpe(pos)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, kv[i] if kv else None)
        if last_only:  # the unembedding is the largest matmul: skip it where no one reads it
            x = x[:, -1:, :]
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    def forward_from(self, site: str, act: torch.Tensor, cache: dict[str, torch.Tensor],
                     positions: slice = slice(None), out: torch.Tensor | None = None) -> torch.Tensor:
        """The logits of `forward` with the activation at `site` replaced by `act`, without
        recomputing what runs before the site (`cache`: the activations at `resume_sites(site)` from
        a pass over the same tokens, e.g. `run_with_cache(..., stop_at=site)`), at `positions` only
        (the unembedding is the largest matmul). Equal to `forward(...)[:, positions]` under a hook
        that returns `act` at `site` (tested); hooks at later sites apply. An evaluation that
        splices several replacements into one batch (an SAE, zero and mean ablation, the clean
        activation itself) runs the model up to the site once. `out`: a tensor of the logits' shape
        to write them into (on a CPU a fresh 16 MB tensor is 4,000 page faults: a caller that
        resumes many times reuses one)."""
        needed = self.resume_sites(site)  # (checks the site too)
        missing = [s for s in needed if s not in cache]
        if missing:
            raise ValueError(f"forward_from({site!r}) needs the cached activations {missing}: "
                             f"run_with_cache(tokens, {needed}) first")
        i, name = _block_site(site)
        x = self.blocks[i].forward_from(name, act, cache.get(f"blocks.{i}.hook_resid_pre"),
                                        cache.get(f"blocks.{i}.attn.hook_out"))
        for block in self.blocks[i + 1:]:
            x = block(x)
        h = self.ln_f(x[:, positions])
        if out is None:
            return self.lm_head(h)
        if out.shape != (*h.shape[:-1], self.cfg.vocab_size):
            raise ValueError(f"forward_from's out has shape {tuple(out.shape)}, the logits "
                             f"{(*h.shape[:-1], self.cfg.vocab_size)}: pass a buffer of that shape, or out=None")
        return torch.matmul(h, self.lm_head.weight.t(), out=out)

    def resume_sites(self, site: str) -> list[str]:
        """The sites whose cached activations `forward_from(site, ...)` reads besides `act`."""
        self._hook_point(site)
        i, name = _block_site(site)
        if name in ("hook_resid_pre", "hook_resid_post"):
            return []
        return [f"blocks.{i}.hook_resid_pre"] + ([] if name == "attn.hook_out" else [f"blocks.{i}.attn.hook_out"])

    # ------------------------------------------------------------------ hooks
    def _hook_point(self, site: str) -> HookPoint:
        if site not in self.hook_points:
            close = difflib.get_close_matches(site, self.sites, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown site {site!r}{hint}; valid sites are: {', '.join(self.sites)}")
        return self.hook_points[site]

    @contextmanager
    def hooks(self, fns: dict[str, HookFn]) -> Iterator["GPT"]:
        """Within the block, every forward pass calls `fn(act)` at each site and uses its result.

        `fn` may return a tensor of the same shape (which replaces the activation for the rest of
        the forward pass) or None (keep it, e.g. to record it). Hooks are removed on exit, also
        when an exception escapes the block.
        """
        handles = []
        try:
            for site, fn in fns.items():
                handles.append(self._hook_point(site).register_forward_hook(_as_forward_hook(site, fn)))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def run_with_cache(
        self, tokens: torch.Tensor, sites: list[str] | None = None, stop_at: str | None = None
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Forward `tokens` and return (logits, {site: activation}) for `sites` (default: all).

        `stop_at=site` ends the forward pass as soon as that site has been computed (the
        activation buffer needs activations, not logits); logits is then None. Runs under the
        caller's grad mode, so wrap it in `torch.no_grad()` when you only read.
        """
        sites = list(self.sites) if sites is None else list(sites)
        for site in sites + ([stop_at] if stop_at is not None else []):
            self._hook_point(site)  # fail early, with the list of valid names
        if stop_at is not None:
            late = [s for s in sites if self.sites.index(s) > self.sites.index(stop_at)]
            if late:
                raise ValueError(f"sites {late} run after stop_at={stop_at!r}, so they would never be cached")

        cache: dict[str, torch.Tensor] = {}
        with self.hooks({site: partial(cache.__setitem__, site) for site in sites}):
            if stop_at is None:
                return self(tokens), cache
            # registered after the savers, so the activation at stop_at is saved before we stop
            stopper = self.hook_points[stop_at].register_forward_hook(_raise_stop)
            try:
                self(tokens)
            except _StopForward:
                pass
            finally:
                stopper.remove()
            return None, cache

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(self, prompt_tokens: torch.Tensor | list[int], max_new_tokens: int,
                 temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
                 use_cache: bool = False, uniforms: torch.Tensor | None = None) -> torch.Tensor:
        """Sample `max_new_tokens` tokens after the prompt; returns prompt + continuation.

        `prompt_tokens` is a list of ids, a 1-D tensor (returns 1-D) or a (B, T) tensor (returns
        (B, T + max_new_tokens)). Sampling draws from a private generator seeded with `seed`, so
        the same seed gives the same text, and global RNG state is untouched. `temperature=0`
        takes the most likely token. Active `hooks(...)` apply at every step (used for steering).

        `use_cache`: keep each block's keys and values, so a step computes only its new position
        (`benchmarks/bench_generate.py` measures the speed-up). The same distribution, but not the
        same floats, so not always the same text; and a hook then sees the prompt once, then one
        position per step, so it must treat every position alike (a clamp over the prompt only,
        `clamp_features(until=...)`, does not). Without room for the whole continuation in the
        context (`n_ctx`), the window slides and the cache is not used.

        `uniforms` (B, max_new_tokens) in [0, 1): row b's token at step t is the first whose
        cumulative probability exceeds uniforms[b, t] (instead of drawing from the seeded
        generator). Rows given the same uniforms share their randomness ("common random numbers":
        two steering methods compared on the same draws), and a row's text does not depend on the
        other rows of the batch.
        """
        idx = torch.as_tensor(prompt_tokens, dtype=torch.long, device=self.wte.weight.device)
        squeeze = idx.dim() == 1
        idx = torch.atleast_2d(idx)
        if idx.shape[1] == 0:
            raise ValueError("generate needs a prompt of at least one token (e.g. the end-of-text token)")
        if not math.isfinite(temperature) or temperature < 0:  # nan/inf make the softmax nan, and sampling fails
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
        if top_k is not None and top_k < 1:  # no token left to sample from
            raise ValueError(f"top_k must be >= 1 (or None for all tokens), got {top_k}")
        gen = torch.Generator(device="cpu").manual_seed(seed)  # sample on CPU: same result on any device
        kv = [{} for _ in self.blocks] if use_cache and idx.shape[1] + max_new_tokens <= self.cfg.n_ctx else None
        with eval_mode(self):
            for step in range(max_new_tokens):
                context = idx[:, -1:] if kv and step else idx[:, -self.cfg.n_ctx :]  # the model sees at most n_ctx tokens
                logits = self(context, last_only=True, kv=kv)[:, -1, :].float().cpu()  # (B, V) at the last position
                if temperature == 0:
                    next_id = logits.argmax(dim=-1, keepdim=True)
                else:
                    logits = logits / temperature
                    if top_k is not None:
                        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, [-1]]
                        logits[logits < kth] = -float("inf")
                    probs = F.softmax(logits, dim=-1)
                    if uniforms is None:
                        next_id = torch.multinomial(probs, 1, generator=gen)  # (B, 1)
                    else:  # inverse CDF (clamped: float rounding can leave the last sum below u)
                        u = uniforms[:, step:step + 1].float().cpu().contiguous()
                        next_id = torch.searchsorted(probs.cumsum(-1), u, right=True).clamp_max(probs.shape[-1] - 1)
                idx = torch.cat([idx, next_id.to(idx.device)], dim=1)
        return idx[0] if squeeze else idx

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | Path) -> Path:
        """Atomically write {"config", "state_dict"}; read it back with `GPT.load`."""
        return atomic_torch_save({"config": asdict(self.cfg), "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "GPT":  # device may be "auto"
        """Load a model saved by `save` or a training checkpoint of `train_lm` (same two keys)."""
        device = resolve_device(str(device))
        ckpt = load_checkpoint(path, "a language model (lm.pt)", device)
        model = cls(GPTConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
        return model.to(device)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the embeddings (lookups, not matmuls), as in nanoGPT."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel() + self.wpe.weight.numel()
        return n


def _block_site(site: str) -> tuple[int, str]:
    """"blocks.3.mlp.hook_post" -> (3, "mlp.hook_post")."""
    _, i, name = site.split(".", 2)
    return int(i), name


def _as_forward_hook(site: str, fn: HookFn):
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        new = fn(output)
        if new is not None and new.shape != output.shape:
            raise ValueError(f"hook at {site!r} returned shape {tuple(new.shape)} but the "
                             f"activation has shape {tuple(output.shape)}; a replacing hook must "
                             "keep the shape (return None to only read)")
        return new
    return hook


def _raise_stop(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
    raise _StopForward


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token loss: logits (B, T, V) scored against targets (B, T), in at least float32.

    For logits of `model(tokens)` the targets are the tokens shifted by one:
    `cross_entropy(logits[:, :-1], tokens[:, 1:])`. reduction="none" gives a (B, T) tensor.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # upcast half precision only
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction=reduction)
    return loss.view(targets.shape) if reduction == "none" else loss
