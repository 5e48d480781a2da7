"""What does a feature mean? Activation statistics, contexts and logit effects of SAE features.

Towards Monosemanticity ("Interpretability", the feature browser) reads a feature from two sides:

- **Activations** (what makes it fire). `feature_stats` streams held-out text through the model
  and the SAE once and keeps, per feature i, with a memory independent of the number of tokens:
    top-k        the k largest activations a_i(t) and their token indices t: each batch's top-k
                 merged with the running top-k (exact: a union's top-k lies in its parts' top-ks);
    sample       a uniform sample (without replacement) of up to n_samples firing tokens: each
                 firing gets a key u ~ U(0, 1) and the n_samples largest keys are kept, merged like
                 the top-k (a "bottom-k sketch": reservoir sampling's law, vectorised). Sorted by
                 activation, it gives examples per quantile and an unbiased histogram;
    fire count   #{t : a_i(t) > 0}; density = fire count / n_tokens;
    act sum      Σ_t a_i(t); mean activation when firing = act sum / fire count;
    max act      max_t a_i(t) (steering clamps features to multiples of it);
    concept mass Σ_{t in concept c} a_i(t) per concept (toy world only); the share of feature i's
                 mass on its top concept measures how monosemantic it is (as in `sae.evaluation.detectors`).
  The token stream is kept (a few MB), so `contexts` can rebuild any token's context: it re-runs
  the model on the n_ctx window the token was read in, which reproduces its activation exactly.

- **Logit effects** (what it does). `logit_weights` pushes each decoder direction through the
  rest of the model to the unembedding along the direct path ("direct logit attribution"):

      d_i   = W_dec[i] / s                      raw-unit direction at the site (s: input scale)
      r_i   = W_out d_i                         the MLP's output projection, bias left out
                                                (for residual-stream sites r_i = d_i)
      u_i   = γ ⊙ (r_i − mean(r_i))             the final LayerNorm, treated as linear
      ℓ_i   = W_U u_i                           (vocab,) logit effect of one unit of feature i

  LayerNorm also divides by the norm of the whole residual stream; that is a positive number
  shared by every vocabulary entry, so it rescales ℓ_i but changes no ranking of promoted and
  suppressed tokens. The ln_f bias and everything that is not on the direct path (later blocks,
  attention reading the feature at later positions) are left out.

Search helpers answer "which feature is about X?" by concept, by the tokens it fires on, and by
the tokens it promotes. `sae.run.dashboard` renders all of this as HTML and as terminal text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from sae.buffer import harvest
from sae.world.corpus import CONCEPTS
from sae.evaluation.held_out import HeldOutBatch, held_out_batches
from sae.utils import atomic_torch_save, load_checkpoint, weights_fingerprint


# ----------------------------------------------------------------------------- statistics
@dataclass
class FeatureStats:
    """Streaming statistics of every feature of one SAE over `n_tokens` held-out tokens."""

    site: str  # hook site the SAE reads
    n_ctx: int  # window length the text was read in (the model's context)
    drop_first: int  # positions at the start of each window that were not encoded
    n_tokens: int  # tokens encoded (windows × (n_ctx − drop_first))
    tokens: Tensor  # (n_windows · n_ctx,) int32 the token stream, to rebuild contexts
    labels: Tensor | None  # (n_windows · n_ctx,) int8 concept of each token (−1: none), or None
    top_acts: Tensor  # (d_sae, top_k) largest activations, descending (0: fewer firings than k)
    top_idx: Tensor  # (d_sae, top_k) int64 their indices into `tokens` (−1: empty slot)
    sample_acts: Tensor  # (d_sae, n_samples) a uniform sample of non-zero activations (0: empty)
    sample_idx: Tensor  # (d_sae, n_samples) int64 their token indices (−1: empty slot)
    fire_count: Tensor  # (d_sae,) int64 tokens on which the feature fired
    act_sum: Tensor  # (d_sae,) float64 Σ of activations
    max_act: Tensor  # (d_sae,) float32 largest activation
    concept_mass: Tensor | None  # (n_concepts + 1, d_sae) float64 Σ activations per concept (last: no concept)
    sae_fingerprint: str = ""  # `utils.weights_fingerprint` of the SAE measured ("": unknown, an older file)

    @property
    def d_sae(self) -> int:
        return self.top_acts.shape[0]

    @property
    def density(self) -> Tensor:
        return self.fire_count.double() / max(self.n_tokens, 1)

    @property
    def mean_act(self) -> Tensor:
        """Mean activation over the tokens on which the feature fired (0 for dead features)."""
        return (self.act_sum / self.fire_count.clamp_min(1)).float()

    @property
    def alive(self) -> Tensor:
        return self.fire_count > 0

    def concept_share(self) -> Tensor | None:
        """(n_concepts, d_sae): the share of each feature's activation mass on each concept."""
        if self.concept_mass is None:
            return None
        return (self.concept_mass[:-1] / self.concept_mass.sum(0).clamp_min(1e-12)).float()

    def best_concept(self) -> tuple[Tensor, Tensor] | None:
        """Per feature: (share of its mass on its top concept, that concept's id (−1: never fired))."""
        share = self.concept_share()
        if share is None:
            return None
        best_share, best = share.max(0)
        return best_share, torch.where(self.alive, best, torch.full_like(best, -1))

    def save(self, path: str | os.PathLike) -> None:
        """One dict of tensors and numbers, written atomically; read it back with `FeatureStats.load`."""
        atomic_torch_save({f.name: getattr(self, f.name) for f in fields(self)}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        d = load_checkpoint(path, "feature statistics (feature_stats.pt)")
        expected = {f.name for f in fields(cls)}
        if set(d) not in (expected, expected - {"sae_fingerprint"}):  # another version's file, or another file
            raise ValueError(f"{path} is not a file of feature statistics of this version of sae (keys "
                             f"{sorted(d)}, expected {sorted(expected)}); delete it and re-run "
                             "`python -m sae evaluate` on the run")
        return cls(**d)


def _merge_top(vals: Tensor, new_vals: Tensor, *payloads: tuple[Tensor, Tensor]) -> tuple[Tensor, ...]:
    """Keep the k largest of two (d_sae, ·) candidate sets, k = vals.shape[1], and the entries of
    each (old, new) pair of `payloads` that go with them."""
    top, pos = torch.cat([vals, new_vals], 1).topk(vals.shape[1], dim=1)
    return top, *(torch.cat(p, 1).gather(1, pos) for p in payloads)


def _top_per_feature(cols: Tensor, scores: Tensor, k: int, d_sae: int) -> Tensor:
    """(d_sae, k): for every feature, the indices of its k entries with the largest `scores`
    (entries are the non-zero activations, `cols` their features; scores >= 0), best first, ties
    in entry order; −1 where a feature has fewer than k. One stable sort by (feature, −score) puts
    each feature's entries together, best first: a non-negative float32's bits, read as an int32,
    order as the float does, so the key is feature · 2³¹ + (2³¹ − 1 − bits). An entry's rank is
    its distance from its feature's first one."""
    bits = scores.float().view(torch.int32).long()
    order = (cols * 2**31 + (2**31 - 1 - bits)).argsort(stable=True)
    c = cols[order]
    rank = torch.arange(len(c), device=c.device) - torch.searchsorted(c, c)
    keep = rank < k
    pick = torch.full((d_sae, k), -1, dtype=torch.int64, device=c.device)
    pick[c[keep], rank[keep]] = order[keep]
    return pick


def _take(values: Tensor, pick: Tensor, empty: float = -1) -> Tensor:
    """values[pick] where pick >= 0, `empty` elsewhere."""
    return torch.where(pick >= 0, values[pick.clamp_min(0)], empty)


class FeatureStatsBuilder:
    """Accumulates `FeatureStats` from `HeldOutBatch`es (`add`), for `result()` at the end.

    Fed by the evaluator's pass (`sae.evaluation.held_out.held_out_batches`), so a run's metrics
    and feature statistics come from one read of the held-out text. Accumulates on the SAE's
    device; the sample's keys come from a generator there, seeded with `seed` (a GPU draws
    another, equally uniform, sample than a CPU)."""

    def __init__(self, sae, tokens: np.ndarray, labels: np.ndarray | None, top_k: int = 20, n_samples: int = 200,
                 seed: int = 0):
        d_sae, dev = sae.cfg.d_sae, next(sae.parameters()).device
        self.site, self.all_tokens, self.all_labels = sae.cfg.site, tokens, labels
        self.sae_fingerprint = weights_fingerprint(sae)
        self.gen = torch.Generator(device=dev).manual_seed(seed)
        self.top_acts = torch.zeros(d_sae, top_k, device=dev)
        self.top_idx = torch.full((d_sae, top_k), -1, dtype=torch.int64, device=dev)
        self.keys = torch.full((d_sae, n_samples), -1.0, device=dev)  # the random keys of the kept sample (−1: empty)
        self.sample_acts = torch.zeros(d_sae, n_samples, device=dev)
        self.sample_idx = torch.full((d_sae, n_samples), -1, dtype=torch.int64, device=dev)
        self.fire_count = torch.zeros(d_sae, dtype=torch.int64, device=dev)
        self.act_sum = torch.zeros(d_sae, dtype=torch.float64, device=dev)
        self.max_act = torch.zeros(d_sae, device=dev)
        self.concept_mass = None if labels is None else torch.zeros(len(CONCEPTS) + 1, d_sae, dtype=torch.float64,
                                                                    device=dev)
        self.n_ctx = None  # the pass's shape, read from its first batch

    @torch.no_grad()
    def add(self, b: HeldOutBatch) -> None:
        if self.n_ctx is None:  # the first batch: the pass's shape
            B, self.n_ctx = b.ctx.shape
            self.drop_first = self.n_ctx - len(b.x) // B
            self.n_tokens = b.n_windows * (self.n_ctx - self.drop_first)
            n = b.n_windows * self.n_ctx  # the token stream the pass reads, to rebuild contexts
            self.stream = torch.from_numpy(np.asarray(self.all_tokens[:n], dtype=np.int32))
            self.labels = None if self.all_labels is None else torch.from_numpy(
                np.asarray(self.all_labels[:n], dtype=np.int8))
        dev, d_sae = self.top_acts.device, self.top_acts.shape[0]
        rows, cols, acts = (t.to(dev) for t in b.active)  # f's non-zero entries: all that is read below
        where = b.index.to(dev)[rows]  # each entry's token index
        if self.concept_mass is not None:
            lb = b.labels.to(dev)[rows].clone()
            lb[lb < 0] = len(CONCEPTS)
            self.concept_mass.view(-1).index_add_(0, lb * d_sae + cols, acts.double())
        self.act_sum.index_add_(0, cols, acts.double())
        self.max_act.scatter_reduce_(0, cols, acts, "amax")  # (the running max starts at 0, as zeros would)
        fired = acts > 0
        rows, cols, acts, where = rows[fired], cols[fired], acts[fired], where[fired]
        self.fire_count += torch.bincount(cols, minlength=d_sae)
        if not len(acts):
            return
        pick = _top_per_feature(cols, acts, self.top_acts.shape[1], d_sae)  # (d_sae, k) entry indices, −1: fewer than k
        self.top_acts, self.top_idx = _merge_top(self.top_acts, _take(acts, pick, 0.0),
                                                 (self.top_idx, _take(where, pick)))
        keys = torch.rand(len(acts), generator=self.gen, device=dev)  # the sample: the firings with the largest keys
        pick = _top_per_feature(cols, keys, self.keys.shape[1], d_sae)
        self.keys, self.sample_acts, self.sample_idx = _merge_top(
            self.keys, _take(keys, pick, -1.0), (self.sample_acts, _take(acts, pick, 0.0)),
            (self.sample_idx, _take(where, pick)))

    def result(self) -> FeatureStats:
        # sort each feature's sample by activation, so that quantiles are slices
        sample_acts, pos = self.sample_acts.sort(1, descending=True)
        return FeatureStats(site=self.site, n_ctx=self.n_ctx, drop_first=self.drop_first, n_tokens=self.n_tokens,
                            tokens=self.stream, labels=self.labels, top_acts=self.top_acts.cpu(),
                            top_idx=self.top_idx.masked_fill(self.top_acts <= 0, -1).cpu(),
                            sample_acts=sample_acts.cpu(), sample_idx=self.sample_idx.gather(1, pos).cpu(),
                            fire_count=self.fire_count.cpu(), act_sum=self.act_sum.cpu(), max_act=self.max_act.cpu(),
                            concept_mass=None if self.concept_mass is None else self.concept_mass.cpu(),
                            sae_fingerprint=self.sae_fingerprint)


def feature_stats(model, sae, tokens: np.ndarray, labels: np.ndarray | None = None, n_tokens: int = 500_000,
                  top_k: int = 20, n_samples: int = 200, batch_contexts: int = 32, drop_first: int = 1,
                  seed: int = 0, log: bool = True) -> FeatureStats:
    """Stream consecutive n_ctx windows of `tokens` (at most `n_tokens`) through the model and the
    SAE (at `sae.cfg.site`) and collect the statistics of `FeatureStats`. Memory: one batch of
    activations plus (d_sae × (top_k + n_samples)) kept values."""
    builder = FeatureStatsBuilder(sae, tokens, labels, top_k, n_samples, seed)
    for b in held_out_batches(model, sae, tokens, labels, n_tokens, batch_contexts, drop_first,
                              log="feature statistics" if log else ""):
        builder.add(b)
    return builder.result()


# ----------------------------------------------------------------------------- contexts
class Context(NamedTuple):
    """A stretch of text around one token, with one feature's activation on each of its tokens."""

    index: int  # the token's index into `stats.tokens`
    token_ids: list[int]  # the window's tokens, the token itself included
    acts: list[float]  # the feature's activation on each (0 on positions that were not encoded)
    focus: int  # position of the token within `token_ids`


@torch.no_grad()
def contexts_many(stats: FeatureStats, model, sae, requests: dict[int, list[int]], before: int = 12,
                  after: int = 4, batch_contexts: int = 64) -> dict[int, list[Context]]:
    """Rebuild the text around token indices with a feature's activation on every token, for
    several features at once: `requests` maps feature -> token indices (−1 entries are skipped).
    A context is clipped to the n_ctx window its token was read in, re-run whole (once, however
    many requests need it): exactly what `feature_stats` saw.
    Memory: (windows needed × n_ctx × features requested) floats."""
    reqs = {f: [int(i) for i in idx if int(i) >= 0] for f, idx in requests.items()}
    n_ctx = stats.n_ctx
    wins = sorted({i // n_ctx for idx in reqs.values() for i in idx})
    row = {w: r for r, w in enumerate(wins)}
    acts = torch.zeros(len(wins), n_ctx, len(reqs))
    sel = torch.tensor(list(reqs), dtype=torch.long)
    for s in range(0, len(wins), batch_contexts):
        ws = torch.tensor(wins[s:s + batch_contexts])
        ctx = stats.tokens.view(-1, n_ctx)[ws].long()  # (b, n_ctx)
        x = harvest(model, ctx, stats.site, drop_first=0)  # (b·n_ctx, d_in)
        f = sae.encode(x)[:, sel.to(x.device)]  # (b·n_ctx, n_feats)
        acts[s:s + len(ws)] = f.reshape(len(ws), n_ctx, len(reqs)).cpu()
    acts[:, : stats.drop_first] = 0  # never encoded by feature_stats (the SAE never saw them)
    out: dict[int, list[Context]] = {}
    for j, (feat, idx) in enumerate(reqs.items()):  # feature `feat` is column j of `acts`
        out[feat] = []
        for i in idx:
            w, p = divmod(i, n_ctx)
            lo, hi = max(p - before, 0), min(p + after + 1, n_ctx)
            out[feat].append(Context(i, stats.tokens[w * n_ctx + lo: w * n_ctx + hi].tolist(),
                                     acts[row[w], lo:hi, j].tolist(), p - lo))
    return out


def contexts(stats: FeatureStats, model, sae, feature: int, indices: list[int] | Tensor,
             before: int = 12, after: int = 4) -> list[Context]:
    """The contexts of one feature at token `indices` (see `contexts_many`)."""
    return contexts_many(stats, model, sae, {feature: list(indices)}, before, after)[feature]


def top_contexts(stats: FeatureStats, model, sae, feature: int, k: int | None = None, **kw) -> list[Context]:
    """Contexts of the feature's k largest activations, largest first."""
    idx = stats.top_idx[feature]
    return contexts(stats, model, sae, feature, idx[idx >= 0][:k], **kw)


def quantile_indices(stats: FeatureStats, feature: int, n_bins: int = 4, per_bin: int = 5,
                     seed: int = 0) -> list[tuple[float, float, list[int]]]:
    """Split the feature's sampled activations into `n_bins` equal-count bins (highest first) and
    draw up to `per_bin` token indices from each: [(lo, hi, indices), ...]."""
    acts, idx = stats.sample_acts[feature], stats.sample_idx[feature]
    acts, idx = acts[idx >= 0], idx[idx >= 0]  # sorted by activation, descending
    if len(acts) == 0:
        return []
    gen = torch.Generator().manual_seed(seed + feature)
    out = []
    for chunk_a, chunk_i in zip(acts.tensor_split(n_bins), idx.tensor_split(n_bins)):
        if len(chunk_a):
            pick = torch.randperm(len(chunk_a), generator=gen)[:per_bin].sort().values
            out.append((float(chunk_a[-1]), float(chunk_a[0]), chunk_i[pick].tolist()))
    return out


# ----------------------------------------------------------------------------- logit effects
class LogitEffects(NamedTuple):
    promoted: list[tuple[int, float]]  # (token id, logit change per unit of activation), largest first
    suppressed: list[tuple[int, float]]  # most negative first


@torch.no_grad()
def _direct_logits(model, d: Tensor, site: str) -> Tensor:
    """(n, d_in) raw-unit directions at `site` -> (n, vocab) direct logit effects."""
    m = re.fullmatch(r"blocks\.(\d+)\.(mlp\.hook_post|mlp\.hook_out|hook_resid_pre|hook_resid_post|attn\.hook_out)", site)
    if m is None:
        raise ValueError(f"no direct path from {site!r} to the logits: logit effects are defined for "
                         "blocks.i.mlp.hook_post and residual-stream sites (hook_resid_pre/post, attn.hook_out, mlp.hook_out)")
    r = d  # (n, d_model) what the directions write into the residual stream
    if m.group(2) == "mlp.hook_post":
        r = d @ model.blocks[int(m.group(1))].mlp.c_proj.weight.T  # c_proj: (d_model, d_mlp)
    u = (r - r.mean(1, keepdim=True)) * model.ln_f.weight  # final LayerNorm without the positive 1/σ
    return (u @ model.lm_head.weight.T).float().cpu()  # (n, vocab)


def logit_weights(model, sae, site: str | None = None) -> Tensor:
    """(d_sae, vocab) direct logit effect of one unit of each feature (module docstring)."""
    return _direct_logits(model, sae.W_dec / sae.output_scale, site or sae.write_site)


def logit_effects(model, sae, feature: int, k: int = 10, site: str | None = None) -> LogitEffects:
    """The k tokens whose logits feature `feature` raises most, and the k it lowers most."""
    d = (sae.W_dec[feature] / sae.output_scale)[None]  # (1, d_out)
    logits = _direct_logits(model, d, site or sae.write_site)[0]  # (vocab,)
    top, bottom = logits.topk(k), (-logits).topk(k)
    return LogitEffects([(int(i), float(v)) for v, i in zip(top.values, top.indices)],
                        [(int(i), -float(v)) for v, i in zip(bottom.values, bottom.indices)])


# ----------------------------------------------------------------------------- search
def features_for_concept(stats: FeatureStats, concept: str | int, k: int = 10,
                         min_fires: int = 10) -> list[tuple[int, float]]:
    """Features sorted by the share of their activation mass on `concept`: [(feature, share)].
    Features that fired fewer than `min_fires` times are left out (one firing gives share 1)."""
    share = stats.concept_share()
    if share is None:
        raise ValueError("these statistics have no concept labels (real text): search by token instead")
    c = CONCEPTS.index(concept) if isinstance(concept, str) else int(concept)
    s = share[c].masked_fill(stats.fire_count < min_fires, -1.0)
    v, i = s.topk(min(k, len(s)))
    return [(int(f), float(x)) for f, x in zip(i, v) if x >= 0]


def _matching_ids(tok, text: str, match: str) -> list[int]:
    """The ids of the tokens whose string equals (or contains) `text`; an error when there are none."""
    if match not in ("equals", "contains"):
        raise ValueError(f"match must be 'equals' or 'contains', got {match!r}")
    strs = [tok.token_str(i) for i in range(tok.vocab_size)]
    ids = [i for i, s in enumerate(strs) if (s == text if match == "equals" else text in s)]
    if not ids:
        raise ValueError(f"no token string {match} {text!r}")
    return ids


@torch.no_grad()
def features_for_token(stats: FeatureStats, model, sae, tok, text: str, match: str = "equals",
                       k: int = 10, max_occurrences: int = 256) -> list[tuple[int, float]]:
    """Features with the largest mean activation on tokens whose string equals (or contains)
    `text`, e.g. " Golden": [(feature, mean activation on those tokens)], over up to
    `max_occurrences` occurrences in the statistics' token stream (activations recomputed)."""
    ids = torch.tensor(_matching_ids(tok, text, match), dtype=torch.int32)
    pos = torch.arange(len(stats.tokens))
    hit = torch.isin(stats.tokens, ids) & (pos % stats.n_ctx >= stats.drop_first)
    where = hit.nonzero()[:, 0][:max_occurrences]
    if len(where) == 0:
        return []
    wins, inv = (where // stats.n_ctx).unique(return_inverse=True)
    ctx = stats.tokens.view(-1, stats.n_ctx)[wins].long()
    total = torch.zeros(sae.cfg.d_sae)
    for s in range(0, len(wins), 64):
        x = harvest(model, ctx[s:s + 64], stats.site, drop_first=0).unflatten(0, (-1, stats.n_ctx))
        sel = (inv >= s) & (inv < s + 64)
        total += sae.encode(x[inv[sel] - s, where[sel] % stats.n_ctx]).sum(0).cpu()
    mean = total / len(where)
    v, i = mean.topk(min(k, len(mean)))
    return [(int(f), float(x)) for f, x in zip(i, v)]


def features_for_logit_token(model, sae, tok, text: str, match: str = "equals", k: int = 10,
                             weights: Tensor | None = None) -> list[tuple[int, float]]:
    """Features that promote a token whose string equals (or contains) `text` the most:
    [(feature, largest direct logit effect on such a token)]."""
    ids = _matching_ids(tok, text, match)
    best = (logit_weights(model, sae) if weights is None else weights)[:, ids].max(1).values
    v, i = best.topk(min(k, len(best)))
    return [(int(f), float(x)) for f, x in zip(i, v)]
