"""The activation buffer: a stream of shuffled activations of one site, for training an SAE.

Towards Monosemanticity ("Problem Setup") trains on activations from many contexts, shuffled:
consecutive tokens of one context are strongly correlated, and an SAE fed context after context
sees a slowly drifting distribution (a batch of 4,096 rows from only 32 contexts is 32 topics,
not a sample of the corpus). The buffer fixes that cheaply:

1. Run the model (eval mode, no grad, stopping right after `site`) on `model_batch` contexts of
   `n_ctx` tokens at a time; drop the first `drop_first` positions of every context (position 0
   attends only to itself and its activation norm is an outlier); write the rows into a
   preallocated tensor of `buffer_tokens` rows until it is full.
2. Serve batches of `batch_size` rows in a random order. Once half of the buffer has been served,
   overwrite exactly the served rows with fresh activations and reshuffle, so every batch mixes
   rows from ~`buffer_tokens / n_ctx` contexts and no row is served twice between refills.

Memory is bounded by `buffer_tokens × d_in × 4` bytes (the buffer, float32) plus one model batch
(`model_batch × n_ctx` tokens of activations: 64 contexts on a CPU, 512 on a GPU) and a refill
chunk of as many rows (at least 8,192): 2^17 rows of 512 neurons is 256 MiB.

The scale: `estimate_scale()` computes once, from a sample, the constant s with
`E‖s·x‖ = sqrt(d_in)` (Anthropic's April 2024 update). The SAE stores s and applies it inside
`encode`/`decode`, so the buffer serves raw activations and users never see scaled ones.

Optional on-disk cache (`write_cache` / `CachedActivations`), so that a sweep of several SAEs
reads the activations without re-running the model: a `numpy.memmap` and a header naming the
model's fingerprint and the site (another model's or site's cache is refused). The header is the
cache's seal: it is removed before the data file changes and written after it is complete, so a
crash at any point leaves either a header that describes the data beside it or no header (refused).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from sae.autoencoder import input_scale_for
from sae.gpt import GPT
from sae.utils import atomic_write_json, eval_mode, weights_fingerprint


def model_fingerprint(model: GPT) -> str:
    """SHA-256 of the model's config and weights: two models share it only if they compute the same."""
    return weights_fingerprint(model, json.dumps(vars(model.cfg), sort_keys=True).encode())


class ContextSource:
    """Endless contexts of `n_ctx` tokens from a 1-D token stream, in a seeded shuffled order.

    The stream is cut into non-overlapping windows; each epoch visits all of them once in a new
    random order. `contexts(n)` returns the next `n` as a (n, n_ctx) long tensor."""

    def __init__(self, tokens: np.ndarray, n_ctx: int, seed: int = 0):
        tokens = np.asarray(tokens)
        if tokens.ndim != 1 or len(tokens) < n_ctx:
            raise ValueError(f"need a 1-D token stream of at least n_ctx={n_ctx} tokens, got shape {tokens.shape}")
        n = len(tokens) // n_ctx
        self.windows = torch.from_numpy(tokens[: n * n_ctx].astype(np.int64)).view(n, n_ctx)
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(n, generator=self.gen)
        self.pos = 0

    def contexts(self, n: int) -> torch.Tensor:
        out = []
        while n > 0:
            if self.pos == len(self.order):
                self.order = torch.randperm(len(self.windows), generator=self.gen)
                self.pos = 0
            take = min(n, len(self.order) - self.pos)
            out.append(self.windows[self.order[self.pos:self.pos + take]])
            self.pos += take
            n -= take
        return torch.cat(out)


@torch.no_grad()
def harvest(model: GPT, contexts: torch.Tensor, site: str, drop_first: int = 1,
            target_site: str | None = None) -> torch.Tensor:
    """Activations of `site` for a batch of contexts, without the first `drop_first` positions:
    (n_contexts × (n_ctx − drop_first), d) float32 rows, context-major. With `target_site` (a
    transcoder's), each row is the two sites' activations side by side, [x | y]."""
    sites = [site] + ([target_site] if target_site else [])
    last = max(sites, key=model.sites.index)
    with eval_mode(model):
        _, cache = model.run_with_cache(contexts.to(next(model.parameters()).device), sites, stop_at=last)
    act = torch.cat([cache[s] for s in sites], dim=-1)[:, drop_first:, :]  # (B, T - drop_first, d)
    return act.reshape(-1, act.shape[-1]).float()


class ActivationBuffer:
    """Shuffled batches of raw activations of `site` (see the module docstring): iterate over it
    (`for x in buffer`) or call `next_batch()`. With `target_site`, rows are a transcoder's
    [x | y]: `d_in` is x's width, `d_out` y's (0 without a target)."""

    def __init__(self, model: GPT, tokens: np.ndarray, site: str, buffer_tokens: int = 2**16,
                 batch_size: int = 4096, model_batch: int | None = None, drop_first: int = 1,
                 seed: int = 0, device: str | torch.device | None = None, target_site: str | None = None):
        model._hook_point(site)  # fail now, with the list of valid sites
        if target_site:
            model._hook_point(target_site)
        n_ctx = model.cfg.n_ctx
        if not 0 <= drop_first < n_ctx:
            raise ValueError(f"drop_first={drop_first} must be in [0, n_ctx={n_ctx})")
        if batch_size > buffer_tokens // 2:
            raise ValueError(f"batch_size={batch_size} must be at most half of buffer_tokens={buffer_tokens}")
        self.model, self.site, self.drop_first, self.target_site = model, site, drop_first, target_site
        self.source = ContextSource(tokens, n_ctx, seed=seed)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        # contexts per model call: a GPU idles between small calls (a refill of 2^18 rows is then
        # 32 calls of a few kernels each), a CPU does not
        self.batch_size, self.model_batch = batch_size, model_batch or (512 if self.device.type == "cuda" else 64)
        self.chunk = max(8192, self.model_batch * n_ctx)  # rows written into the buffer at a time
        first = self.source.contexts(1)
        probe = harvest(model, first, site, drop_first, target_site)
        self.d_in = harvest(model, first, site, drop_first).shape[1] if target_site else probe.shape[1]
        self.d_out = probe.shape[1] - self.d_in
        self.buffer = torch.empty(buffer_tokens, probe.shape[1], device=self.device)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self._pending = probe.to(self.device)  # harvested rows not yet written into the buffer
        self._fill(torch.arange(buffer_tokens))
        self.perm = torch.randperm(buffer_tokens, generator=self.gen)
        self.pos = self.refills = 0

    def _rows(self, n: int) -> torch.Tensor:
        """The next `n` fresh activation rows (running the model as needed)."""
        parts, have = [self._pending], len(self._pending)
        while have < n:
            rows = harvest(self.model, self.source.contexts(self.model_batch), self.site, self.drop_first,
                           self.target_site)
            parts.append(rows.to(self.device))
            have += len(rows)
        rows = torch.cat(parts)
        self._pending = rows[n:].clone()  # a copy, so the big concatenation can be freed
        return rows[:n]

    def _fill(self, idx: torch.Tensor) -> None:
        for chunk in idx.split(self.chunk):  # in chunks, so no second buffer-sized tensor is ever built
            self.buffer[chunk.to(self.device)] = self._rows(len(chunk))

    def next_batch(self) -> torch.Tensor:
        if self.pos + self.batch_size > len(self.buffer) // 2:  # half served: refill those rows
            self._fill(self.perm[: self.pos])
            self.perm = torch.randperm(len(self.buffer), generator=self.gen)
            self.pos = 0
            self.refills += 1
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.buffer[idx.to(self.device)]

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            yield self.next_batch()

    def estimate_scale(self) -> float:
        """s with E‖s·x‖ = sqrt(d_in), from the rows currently in the buffer (`input_scale_for`)."""
        return input_scale_for(self.buffer[:, :self.d_in])

    def estimate_target_scale(self) -> float | None:
        """t with E‖t·y‖ = sqrt(d_out) for a transcoder's targets; None without a target site."""
        return input_scale_for(self.buffer[:, self.d_in:]) if self.d_out else None


# ----------------------------------------------------------------------------- on-disk cache
def write_cache(path: str | Path, model: GPT, tokens: np.ndarray, site: str, n_tokens: int,
                model_batch: int = 64, drop_first: int = 1, seed: int = 0, log=True) -> Path:
    """Write the activations of `n_tokens` tokens of `site` to `path` (float32 memmap) + header.

    Rows are in context order (the reader shuffles). Written to a temporary file and renamed; the
    header (`cache_header_path`) is the seal the module docstring describes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header_path = cache_header_path(path)
    header_path.unlink(missing_ok=True)  # from here until the new header, the cache is refused
    source = ContextSource(tokens, model.cfg.n_ctx, seed=seed)
    per_ctx = model.cfg.n_ctx - drop_first
    d = harvest(model, source.windows[:1], site, drop_first).shape[1]  # source stays at its start
    tmp = path.with_name(path.name + ".tmp")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_tokens, d))
    t0, done = time.time(), 0
    try:
        while done < n_tokens:
            rows = harvest(model, source.contexts(model_batch), site, drop_first).cpu().numpy()
            take = min(len(rows), n_tokens - done)
            mm[done:done + take] = rows[:take]
            done += take
            if log and (done == n_tokens or done // (per_ctx * model_batch) % 50 == 0):
                print(f"  cache: {done:,}/{n_tokens:,} rows ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
        mm.flush()
        del mm
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    header = {"site": site, "model": model_fingerprint(model), "n_tokens": n_tokens, "d_in": d,
              "drop_first": drop_first, "seed": seed}
    atomic_write_json(header_path, header)
    return path


def cache_header_path(path: str | Path) -> Path:
    """The header beside cache `path`: ACTS.npy's is ACTS.npy.json. A cache without one is incomplete."""
    path = Path(path)
    return path.with_name(path.name + ".json")


class CachedActivations:
    """Shuffled batches read from a cache written by `write_cache` (same interface as the buffer).

    Each epoch visits every row once in a new random order; a batch's rows are read in sorted
    order (fast on a memmap) and then shuffled in memory."""

    def __init__(self, path: str | Path, model: GPT, site: str, batch_size: int = 4096,
                 seed: int = 0, device: str | torch.device = "cpu"):
        path = Path(path)
        hdr_path = cache_header_path(path)
        if not path.exists() or not hdr_path.exists():
            what = "no activation cache" if not path.exists() else "an incomplete activation cache (no header)"
            raise FileNotFoundError(f"{what} at {path}; write one with sae.buffer.write_cache")
        hdr = json.loads(hdr_path.read_text())
        fp = model_fingerprint(model)
        if hdr["model"] != fp or hdr["site"] != site:
            raise ValueError(f"activation cache {path} was made from model {hdr['model']} at site "
                             f"{hdr['site']!r}, not model {fp} at {site!r}: delete it or write a "
                             "new cache for this model and site")
        self.data = np.load(path, mmap_mode="r")
        if self.data.shape != (hdr["n_tokens"], hdr["d_in"]):
            raise ValueError(f"activation cache {path} holds {self.data.shape[0]} x {self.data.shape[1]} rows, but its "
                             f"header says {hdr['n_tokens']} x {hdr['d_in']}: delete both and write the cache again")
        self.d_in = self.data.shape[1]
        if batch_size > len(self.data):
            raise ValueError(f"batch_size={batch_size} is larger than the cache ({len(self.data)} rows)")
        self.batch_size, self.device = batch_size, torch.device(device)
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[torch.Tensor]:
        n = len(self.data)
        while True:
            order = torch.randperm(n, generator=self.gen)
            for i in range(0, n - self.batch_size + 1, self.batch_size):
                rows = torch.from_numpy(self.data[np.sort(order[i:i + self.batch_size].numpy())])
                yield rows[torch.randperm(len(rows), generator=self.gen)].to(self.device)

    def estimate_scale(self, n: int = 65_536) -> float:
        x = torch.from_numpy(np.array(self.data[:n]))  # a copy: the memmap is read-only
        return input_scale_for(x)
