"""The held-out pass: consecutive windows of held-out text, read by the model and encoded by the SAE, batch by batch.

Every analysis of a dictionary reads this one pass (`held_out_batches`), and everything that is
fitted and then scored splits it the same way (`first_half_rows`). Positions before `drop_first`
are left untouched (the SAE never saw position 0 in training).
"""

from __future__ import annotations

import sys
import time
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch import Tensor

from sae.utils import eval_mode


def label_segments(labels: np.ndarray) -> np.ndarray:
    """Segment id of every token: a new segment starts wherever the label changes (so each
    end-of-text token, label −1, is a segment of its own and ends the document's last one)."""
    return np.cumsum(np.diff(labels, prepend=labels[:1]) != 0, dtype=np.int64)


class Active(NamedTuple):
    """The non-zero entries of a (N, d_sae) feature batch f, row by row: f[rows, cols] = vals (a few
    % of f), found once per batch and read by every accumulator that only needs what fired."""

    rows: Tensor
    cols: Tensor
    vals: Tensor

    @classmethod
    def of(cls, f: Tensor) -> "Active":
        rows, cols = f.detach().nonzero(as_tuple=True)
        return cls(rows, cols, f.detach()[rows, cols])


def unit_site(model, sae) -> tuple[str, int]:
    """(site, width) of the model's own units a dictionary is compared with (its "neurons"): what it
    reads, or for a transcoder that reads an MLP's input (`blocks.i.mlp.hook_in`) that MLP's
    neurons (`blocks.i.mlp.hook_post`), the units it stands in for."""
    site = sae.cfg.site
    if sae.transcoder and site.endswith("mlp.hook_in"):
        return site[: -len("hook_in")] + "hook_post", model.cfg.d_mlp
    return site, sae.cfg.d_in


class HeldOutBatch(NamedTuple):
    """One batch of held-out windows, read by the model and encoded by the SAE."""

    ctx: Tensor  # (B, n_ctx) token windows, on the model's device
    cache: dict[str, Tensor]  # the site's (B, n_ctx, d_in) activations and what `GPT.forward_from` needs to resume there
    x: Tensor  # (N, d_in) activations at the site, positions >= drop_first, N = B·(n_ctx − drop_first)
    f: Tensor  # (N, d_sae) feature activations
    y: Tensor  # (N, d_out) what the dictionary predicts: a transcoder's target activations, an SAE's x
    units: Tensor  # (N, d) the model's units it is compared with (`unit_site`): an SAE's x, a transcoder's MLP neurons
    active: Active  # f's non-zero entries
    index: Tensor  # (N,) int64 index of each row's token in the token stream (on the CPU, to index arrays)
    labels: Tensor | None  # (N,) int64 concept of each row's token (−1: none), or None; on the model's device
    segments: Tensor | None  # (N,) int64 segment of each row's token (`label_segments`), or None; likewise
    first_window: int  # index of the batch's first window
    n_windows: int  # windows in the whole pass


def first_half_rows(b: HeldOutBatch) -> int:
    """How many of the batch's rows, from its first, lie in the first half of the pass's windows.

    Windows come in order and each gives the same number of rows, so the first half's rows are a
    prefix of every batch: `x[:k]` fits (the mean-difference probes, the k-sparse probes and
    their unit choice), `x[k:]` scores."""
    n_ctx_rows = len(b.x) // len(b.ctx)  # rows per window (n_ctx − drop_first)
    return n_ctx_rows * min(max(b.n_windows // 2 - b.first_window, 0), len(b.ctx))


@torch.no_grad()
def held_out_batches(model, sae, tokens: np.ndarray, labels: np.ndarray | None = None,
                     n_tokens: int = 200_000, batch_contexts: int = 32, drop_first: int = 1,
                     log: str = "") -> Iterator[HeldOutBatch]:
    """Cut `tokens` into consecutive n_ctx windows (at most `n_tokens` tokens), run each batch of
    windows through the model and the SAE, and yield it: the pass that the evaluator and the
    feature statistics (`sae.interpret.FeatureStatsBuilder`) both read. The model stops at
    `sae.cfg.site` (a transcoder's at its target site); whoever needs logits resumes from the
    batch's `cache` at `sae.write_site` (`GPT.forward_from`). `log` names the pass in the progress
    lines (rate and ETA on stderr); "" is silent."""
    site, write = sae.cfg.site, sae.write_site
    if not site:
        raise ValueError("the SAE does not name its hook site (SAEConfig.site): set it, e.g. "
                         "SAEConfig(..., site='blocks.0.mlp.hook_post')")
    units_at, d_units = unit_site(model, sae)
    sites = list(dict.fromkeys([site, write, units_at, *model.resume_sites(write)]))
    last = max(site, write, units_at, key=model.sites.index)
    device, n_ctx = next(model.parameters()).device, model.cfg.n_ctx
    n_windows = min(len(tokens) // n_ctx, max(n_tokens // n_ctx, 1))
    if n_windows == 0:
        raise ValueError(f"need at least n_ctx={n_ctx} held-out tokens, got {len(tokens)}")
    windows = torch.from_numpy(np.asarray(tokens[: n_windows * n_ctx], dtype=np.int64)).view(n_windows, n_ctx)
    lab = seg = None
    if labels is not None:
        lab_np = np.asarray(labels[: n_windows * n_ctx], dtype=np.int64)
        lab = torch.from_numpy(lab_np).to(device)
        seg = torch.from_numpy(label_segments(lab_np)).to(device)
    positions = torch.arange(drop_first, n_ctx)  # positions encoded in every window
    with eval_mode(model):  # (and back to the mode it was in, however the pass ends)
        t0 = time.perf_counter()
        for start in range(0, n_windows, batch_contexts):
            ctx = windows[start:start + batch_contexts].to(device)
            B = len(ctx)
            _, cache = model.run_with_cache(ctx, sites, stop_at=last)
            x = cache[site][:, drop_first:].reshape(-1, sae.cfg.d_in).float()  # (N, d_in)
            y = cache[write][:, drop_first:].reshape(-1, sae.d_out).float() if sae.transcoder else x
            units = cache[units_at][:, drop_first:].reshape(-1, d_units).float() if units_at != site else x
            index = ((start + torch.arange(B))[:, None] * n_ctx + positions[None, :]).reshape(-1)  # (N,)
            on_device = index.to(device)
            f = sae.encode(x)
            yield HeldOutBatch(ctx, cache, x, f, y, units, Active.of(f), index, None if lab is None else lab[on_device],
                               None if seg is None else seg[on_device], start, n_windows)
            done = start + B
            if log and (done == n_windows or (start // batch_contexts) % 20 == 19):
                elapsed = time.perf_counter() - t0
                print(f"  {log}: {done * n_ctx:,}/{n_windows * n_ctx:,} tokens ({elapsed:.0f}s, "
                      f"{done * n_ctx / max(elapsed, 1e-9):,.0f} tok/s, ETA {elapsed / done * (n_windows - done):.0f}s)",
                      file=sys.stderr, flush=True)
