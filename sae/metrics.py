"""How good is a dictionary? Every metric is a small function with its formula, plus one
streaming evaluator (`Evaluator` over `held_out_batches`) that computes them all over held-out
text without holding the activations.

Reconstruction (x: activations (n, d), x̂: reconstructions):
    mse  = mean_n ‖x − x̂‖²
    fvu  = Σ_n ‖x − x̂‖² / Σ_n ‖x − mean_n(x)‖²        fraction of variance unexplained
           (Gao et al. 2024, section 2.1, define their normalised MSE this way, relative to
           always predicting the mean activation; the `normalized_mean_squared_error` in their
           released code divides each row by its own ‖x‖² instead, which is closer to `nmse`)
    explained variance = 1 − fvu
    nmse = Σ_n ‖x − x̂‖² / Σ_n ‖x‖²                     relative to predicting zero (April update's NMSE)
Sparsity (f: feature activations (n, d_sae)):
    l0 = mean_n #{i : f_i > 0}, l1 = mean_n Σ_i |f_i|
    density_i = fraction of tokens on which feature i fires; dead: never fired on the evaluation
    tokens; ultralow: density < 1e-5; dense: density > 10%.
Downstream (the site replaced in the model's forward pass):
    ce_recovered = (CE_ablated − CE_sae) / (CE_ablated − CE_clean)
    with the ablation either zero (what most libraries report) or the mean activation. The
    number depends on the baseline as much as on the SAE, so both are reported (on a one-layer
    model the mean can be the *harsher* ablation: after the final LayerNorm a constant MLP output
    drowns the residual stream; a run's `ce_zero_ablation` and `ce_mean_ablation` show which);
    ce_added = CE_sae − CE_clean (nats/token); kl = mean KL(p_clean ‖ p_sae) per token.
Concepts (toy world; one label per token):
    per concept c and unit j, AUROC_j(c) = P(a_j(t⁺) > a_j(t⁻)) + ½ P(a_j(t⁺) = a_j(t⁻)) over
    tokens t⁺ of concept c and t⁻ of other concepts; the best single unit's AUROC, and its
    precision/recall at the threshold with the best F1. Units are SAE features, or, to test the
    paper's claim that features are more monosemantic than neurons, the MLP neurons themselves.
    Monosemanticity of unit j: the largest share of its activation mass Σ_t max(a_j(t), 0) that
    falls on one concept, and which concept; its distribution over features against neurons is
    Towards Monosemanticity's comparison.
    A concept's *detector* (the papers' sense of "a feature for X"): a unit j with
        share_j(c)  = Σ_{t ∈ c} max(a_j(t), 0) / Σ_t max(a_j(t), 0)      >= DETECTOR_SHARE (0.8)
        recall_j(c) = #{segments s of c : max_{t ∈ s} a_j(t) > DETECTOR_FIRE · max_t a_j(t)} / #{segments of c}
                                                                          >= DETECTOR_RECALL (0.9)
    where a segment is a maximal run of tokens with the same label (documents are separated by
    end-of-text, label −1). It is specific (most of what it says is about c) and lights up across
    c's text (not one narrow sub-case of it). A sparse dictionary can split a concept into narrow
    features (absorption): each is specific, none lights up everywhere, and token AUROC then
    punishes the dictionary; this definition does not.
    What one direction can do: a linear probe on the raw activations, the difference
    of class means d_c = mean(x | c) − mean(x | not c) fitted on the first half of the evaluation
    tokens, scored as AUROC of x·d_c on the second half. If the probe detects a concept and no
    feature does, the concept is in the activations but the dictionary did not make it a feature.

Positions before `drop_first` are left untouched (the SAE never saw position 0 in training).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch import Tensor

from sae.utils import eval_mode

# ----------------------------------------------------------------------------- small metrics


def mse(x: Tensor, x_hat: Tensor) -> float:
    """mean_n ‖x − x̂‖²."""
    return (x - x_hat).pow(2).sum(-1).mean().item()


def fvu(x: Tensor, x_hat: Tensor) -> float:
    """Σ‖x − x̂‖² / Σ‖x − mean(x)‖² (0: perfect, 1: no better than the mean)."""
    return ((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()


def explained_variance(x: Tensor, x_hat: Tensor) -> float:
    return 1.0 - fvu(x, x_hat)


def nmse(x: Tensor, x_hat: Tensor) -> float:
    """Σ‖x − x̂‖² / Σ‖x‖²."""
    return ((x - x_hat).pow(2).sum() / x.pow(2).sum()).item()


def l0(f: Tensor) -> float:
    """Mean number of active features per token."""
    return (f > 0).float().sum(-1).mean().item()


def l1(f: Tensor) -> float:
    return f.abs().sum(-1).mean().item()


def density_summary(fire_counts: Tensor, n_tokens: int, ultralow: float = 1e-5, dense: float = 0.1) -> dict:
    """Fractions of dead, ultralow-density and dense features from per-feature fire counts."""
    d = fire_counts.double() / n_tokens
    return {
        "dead_fraction": (fire_counts == 0).double().mean().item(),
        "ultralow_fraction": ((d > 0) & (d < ultralow)).double().mean().item(),
        "dense_fraction": (d > dense).double().mean().item(),
    }


def log_density_histogram(fire_counts: Tensor, n_tokens: int, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of log10(density) of the features that fired at least once: (counts, edges)."""
    d = fire_counts.double() / n_tokens
    d = d[d > 0].log10().numpy()
    lo = min(np.log10(1.0 / n_tokens), d.min() if len(d) else 0.0)
    return np.histogram(d, bins=bins, range=(lo, 0.0))


def ce_recovered(ce_clean: float, ce_sae: float, ce_ablated: float) -> float:
    """(CE_ablated − CE_sae) / (CE_ablated − CE_clean): 1 when the splice is perfect, 0 when it is as bad as the ablation."""
    return (ce_ablated - ce_sae) / (ce_ablated - ce_clean)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Exact AUROC (ties count ½) from average ranks: the Mann-Whitney U statistic, O(n log n)."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs positives and negatives, got {n_pos} and {n_neg}")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties share their mean rank
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ----------------------------------------------------------------------------- concept detection

DETECTOR_SHARE = 0.8  # Towards Monosemanticity's Arabic feature puts 81% of its activation mass on Arabic text
DETECTOR_FIRE = 0.1  # "lights up": above a tenth of the unit's largest activation, not a faint echo
DETECTOR_RECALL = 0.9  # across the concept's text: in at least 9 of every 10 of its segments


class ConceptHistogram:
    """Streaming per-(concept, unit) histograms of activations, for AUROC and best-F1 thresholds.

    Activations are put into bins: bin 0 holds exact zeros (most SAE features on most tokens),
    bins 1..n_bins hold positive values on a log scale between `lo` and `hi`, and one bin below
    holds negative values (GELU neurons dip below zero). Two tokens in the same bin count as a tie,
    so the AUROC is exact up to the bin width (~5% of the value). Lives on `device` (the
    activations' device: nothing goes back to the host per batch). Memory:
    (n_concepts + 1) × n_units × ((n_bins + 2) int32 + 1 float64), independent of the number of
    tokens (16 × 16,384 × 258 × 4 B = 270 MB for the `base` SAE, 18 MB for `tiny`'s features).
    Tokens with label −1 (end-of-text) count as negatives for every concept.
    """

    def __init__(self, n_units: int, n_concepts: int, n_bins: int = 256, lo: float = 1e-3, hi: float = 1e3,
                 device: str | torch.device = "cpu"):
        self.n_units, self.n_concepts = n_units, n_concepts
        self.edges = torch.logspace(np.log10(lo), np.log10(hi), n_bins - 1, device=device)  # bins 2..n_bins+1
        self.n_bins = n_bins + 2  # [negative, zero, (0, lo], ..., (hi, inf)]
        # bucketize counts the boundaries below a value: none for a < 0, one (the negative number
        # closest to 0) for a = 0 and −0, two for a in (0, lo], ...: the bins above in one search
        below_zero = torch.nextafter(torch.zeros(1), -torch.ones(1))
        self.boundaries = torch.cat([below_zero, torch.zeros(1), self.edges.cpu()]).to(device)
        # counts[c, j, b]: tokens of concept c (index n_concepts: no concept) with unit j in bin b
        self.counts = torch.zeros(n_concepts + 1, n_units, self.n_bins, dtype=torch.int32, device=device)
        self.mass = torch.zeros(n_concepts + 1, n_units, dtype=torch.float64, device=device)  # Σ max(a, 0) per concept

    def _bin(self, a: Tensor) -> Tensor:
        return torch.bucketize(a, self.boundaries)

    def _ones(self, n: int) -> Tensor:
        """n ones to count with: one stored element, read n times."""
        return torch.ones((), dtype=self.counts.dtype, device=self.counts.device).expand(n)

    def add(self, acts: Tensor, labels: Tensor, active: "Active | None" = None) -> None:
        """acts (n, n_units) float, labels (n,) int in [−1, n_concepts); `active`: acts's non-zero
        entries where the caller has them (SAE features: then only they are read)."""
        device = self.counts.device
        lab = labels.to(device).long().clone()
        lab[lab < 0] = self.n_concepts
        C1, U, B = self.counts.shape
        counts = self.counts.view(-1)
        if active is None and acts.count_nonzero() * 2 > acts.numel():  # dense (neurons): every entry, zeros too
            acts = acts.detach().float().to(device)
            self.mass.index_add_(0, lab, acts.clamp_min(0).double())
            # (n, U) bins, turned in place into their entries of counts, (concept · U + unit) · B + bin:
            # no second (n, U) temporary
            flat = self._bin(acts)
            flat += (lab * (U * B))[:, None]
            flat += torch.arange(U, device=device) * B
            counts.index_add_(0, flat.view(-1), self._ones(flat.numel()))
            return
        # sparse (features): bin the non-zero entries; the zeros of each (concept, unit) are the
        # concept's tokens minus its non-zero ones
        rows, units, vals = Active.of(acts) if active is None else active
        pair = lab[rows.to(device)] * U + units.to(device)
        vals = vals.detach().float().to(device)
        self.mass.view(-1).index_add_(0, pair, vals.clamp_min(0).double())
        counts.index_add_(0, pair * B + self._bin(vals), self._ones(len(pair)))
        nz_per = torch.bincount(pair, minlength=C1 * U).view(C1, U)
        self.counts[:, :, 1] += (torch.bincount(lab, minlength=C1)[:, None] - nz_per).to(counts.dtype)

    def cpu(self) -> "ConceptHistogram":
        self.edges, self.counts, self.mass = self.edges.cpu(), self.counts.cpu(), self.mass.cpu()
        return self

    def auroc(self) -> Tensor:
        """(n_concepts, n_units) AUROC of each unit as a detector of each concept."""
        total = self.counts.sum(0, dtype=torch.float64)  # (U, B)
        out = torch.empty(self.n_concepts, self.n_units, dtype=torch.float64, device=total.device)
        for c in range(self.n_concepts):
            pos = self.counts[c].double()  # (U, B)
            neg = total - pos
            neg_below = neg.cumsum(1) - neg  # negatives in strictly lower bins
            n_pos, n_neg = pos.sum(1), neg.sum(1)
            out[c] = ((pos * (neg_below + 0.5 * neg)).sum(1) / (n_pos * n_neg).clamp_min(1))
        return out

    def best_f1(self, c: int, unit: int) -> dict:
        """Precision, recall and F1 of `unit` at its best threshold (a bin edge) for concept `c`."""
        pos = self.counts[c, unit].double()
        neg = self.counts[:, unit].sum(0, dtype=torch.float64) - pos
        tp = pos.flip(0).cumsum(0).flip(0)  # predicted positive: bins >= b
        fp = neg.flip(0).cumsum(0).flip(0)
        prec = tp / (tp + fp).clamp_min(1)
        rec = tp / pos.sum().clamp_min(1)
        f1 = 2 * prec * rec / (prec + rec).clamp_min(1e-12)
        f1[:2] = 0  # "fires at all, zero included" is not a detector
        b = int(f1.argmax())
        return {"precision": prec[b].item(), "recall": rec[b].item(), "f1": f1[b].item()}

    def mass_share(self) -> tuple[Tensor, Tensor]:
        """Per unit: (share of its activation mass on its top concept, that concept's id (−1: none))."""
        total = self.mass.sum(0)
        share, top = (self.mass[: self.n_concepts] / total.clamp_min(1e-12)).max(0)
        top = torch.where(total > 0, top, torch.full_like(top, -1))
        return share.float(), top


class MeanDiffProbe:
    """A linear probe per concept c, the direction d_c = mean(x | c) − mean(x | not c).

    Streaming in two phases: `fit(x, labels)` accumulates class sums (call it on the first part
    of the data); `score(x, labels)` projects later data on the fitted directions and keeps only
    the (n, n_concepts) scores, so memory is small. `auroc()` is then exact per concept.
    """

    def __init__(self, d: int, n_concepts: int, device: str | torch.device = "cpu"):
        self.sums = torch.zeros(n_concepts + 1, d, dtype=torch.float64, device=device)  # last row: no concept
        self.counts = torch.zeros(n_concepts + 1, dtype=torch.float64, device=device)
        self.directions: Tensor | None = None
        self.scores: list[Tensor] = []
        self.labels: list[Tensor] = []

    def fit(self, x: Tensor, labels: Tensor) -> None:
        lab = labels.to(self.sums.device).long().clone()
        lab[lab < 0] = len(self.counts) - 1
        self.sums.index_add_(0, lab, x.detach().to(self.sums.device).double())
        self.counts += torch.bincount(lab, minlength=len(self.counts)).double()

    def difference(self) -> Tensor:
        """(n_concepts, d) float64: mean(x | c) − mean(x | not c) over what `fit` saw."""
        c = self.counts[:-1, None]
        inside = self.sums[:-1] / c.clamp_min(1)
        outside = (self.sums.sum(0) - self.sums[:-1]) / (self.counts.sum() - c).clamp_min(1)
        return inside - outside

    def score(self, x: Tensor, labels: Tensor) -> None:
        if self.directions is None:
            self.directions = self.difference().float()  # (n_concepts, d)
        self.scores.append(x.detach().float().to(self.directions.device) @ self.directions.T)
        self.labels.append(labels.long().to(self.directions.device))

    def auroc(self) -> np.ndarray:
        """(n_concepts,) AUROC of each concept's probe on the scored data (nan: concept absent)."""
        s, lab = torch.cat(self.scores).cpu().numpy(), torch.cat(self.labels).cpu().numpy()
        out = np.full(s.shape[1], np.nan)
        for c in range(s.shape[1]):
            pos = lab == c
            if 0 < pos.sum() < len(pos) and self.counts[c] > 0:
                out[c] = auroc(s[:, c], pos)
        return out


def label_segments(labels: np.ndarray) -> np.ndarray:
    """Segment id of every token: a new segment starts wherever the label changes (so each
    end-of-text token, label −1, is a segment of its own and ends the document's last one)."""
    return np.cumsum(np.diff(labels, prepend=labels[:1]) != 0, dtype=np.int64)


class SegmentPeaks:
    """Streaming "lights up" counts: for every unit j and concept c, the number of c's segments s
    whose peak max_{t ∈ s} a_j(t) exceeds DETECTOR_FIRE · M_j, with M_j = max_t a_j(t) over the
    whole pass (clamped at 0), which is known only at the end.

    Exact, keeping only peaks that can still matter: the running maximum never exceeds the final
    one, so a peak at or below DETECTOR_FIRE × the running maximum can never light up and is
    dropped as its batch is added. Kept: (segment · n_units + unit, peak) for the others, 12 bytes
    each, plus one label per segment. On the default run that is 17% of the (segment, feature)
    pairs and 69% of the (segment, neuron) pairs (a dense float32 record would take 4 bytes for
    every pair): it pays for wide dictionaries, whose features are dark in most segments.
    Rows may arrive in any batches; a segment cut by a batch boundary is counted once. Lives on
    the activations' device.
    """

    def __init__(self, n_units: int, fire: float = DETECTOR_FIRE, device: str | torch.device = "cpu"):
        self.n_units, self.fire = n_units, fire
        self.running_max = torch.full((n_units,), -torch.inf, device=device)
        self.pairs: list[Tensor] = []  # segment · n_units + unit, for the kept peaks
        self.peaks: list[Tensor] = []
        self.segments: list[Tensor] = []  # every segment seen, and its label
        self.labels: list[Tensor] = []

    def add(self, acts: Tensor, labels: Tensor, segments: Tensor) -> None:
        device = self.running_max.device
        acts = acts.detach().float().to(device)
        ids, inverse = torch.unique(segments.to(device), return_inverse=True)
        peak = torch.full((len(ids), self.n_units), -torch.inf, device=device)
        peak.scatter_reduce_(0, inverse[:, None].expand_as(acts), acts, "amax")
        self.running_max = torch.maximum(self.running_max, peak.amax(0))
        rows, units = (peak > self.fire * self.running_max.clamp_min(0)).nonzero(as_tuple=True)
        self.pairs.append(ids[rows] * self.n_units + units)
        self.peaks.append(peak[rows, units])
        lab = torch.empty(len(ids), dtype=torch.int64, device=device)
        lab[inverse] = labels.to(device).long()
        self.segments.append(ids)
        self.labels.append(lab)

    def recall(self, n_concepts: int) -> Tensor:
        """(n_concepts, n_units) the fraction of each concept's segments in which each unit lights up."""
        device, U = self.running_max.device, self.n_units
        pairs, peaks = torch.cat(self.pairs), torch.cat(self.peaks)
        lit = torch.unique(pairs[peaks > self.fire * self.running_max.clamp_min(0)[pairs % U]])  # once per segment
        ids = torch.cat(self.segments)
        label = torch.full((int(ids.max()) + 1 if len(ids) else 0,), -1, dtype=torch.int64, device=device)
        label[ids] = torch.cat(self.labels)
        lab = label[lit // U]
        inside = (lab >= 0) & (lab < n_concepts)
        n_lit = torch.bincount(lab[inside] * U + lit[inside] % U, minlength=n_concepts * U).view(n_concepts, U)
        seg_lab = label[ids.unique()]  # each segment once, also one cut by a batch boundary
        n_segments = torch.bincount(seg_lab[(seg_lab >= 0) & (seg_lab < n_concepts)], minlength=n_concepts)
        return (n_lit.float() / n_segments[:, None].clamp_min(1)).cpu()


@dataclass
class Detectors:
    """share[c, j] and recall[c, j] of every unit j for every concept c (see the module docstring)."""

    share: Tensor  # (n_concepts, n_units) share of unit j's activation mass on concept c
    recall: Tensor  # (n_concepts, n_units) fraction of c's segments in which unit j lights up
    alive: Tensor  # (n_units,) bool: the unit has positive activation mass

    @classmethod
    def measure(cls, hist: ConceptHistogram, peaks: SegmentPeaks) -> "Detectors":
        n_concepts = hist.n_concepts
        total = hist.mass.sum(0).cpu()
        share = (hist.mass[:n_concepts].cpu() / total.clamp_min(1e-12)).float()
        return cls(share, peaks.recall(n_concepts), total > 0)

    def passes(self) -> Tensor:
        """(n_concepts, n_units) bool: unit j is a detector of concept c."""
        return (self.share >= DETECTOR_SHARE) & (self.recall >= DETECTOR_RECALL)

    def best(self, c: int, coverage: Tensor | None = None) -> dict:
        """Concept c's detector, or the unit closest to being one (`detector` says which).

        Among the units that pass, the one with the largest `coverage` (n_units,), for instance
        its token AUROC: a concept can have several detectors, from features that fire across
        the concept's text to one that fires only at the end of each of its sentences, and the
        one that covers the most of the concept's tokens is the one a reader (and steering)
        means by "the feature for c". Without `coverage`, or when no unit passes, the largest
        margin min(share / DETECTOR_SHARE, recall / DETECTOR_RECALL).
        """
        passing = self.passes()[c]
        margin = torch.minimum(self.share[c] / DETECTOR_SHARE, self.recall[c] / DETECTOR_RECALL)
        score = coverage.to(margin.dtype) if coverage is not None and passing.any() else margin
        j = int((score.where(passing, -torch.inf) if passing.any() else score).argmax())
        return {"unit": j, "share": self.share[c, j].item(), "segment_recall": self.recall[c, j].item(),
                "detector": bool(passing[j])}

    def top_share(self) -> Tensor:
        """(alive units,) share of each alive unit's activation mass on its top concept."""
        return self.share.max(0).values[self.alive]


# ----------------------------------------------------------------------------- the evaluator


class Active(NamedTuple):
    """The non-zero entries of a (N, d_sae) feature batch f, row by row: f[rows, cols] = vals. An
    L0 of 17 of 1,024 features is 1.7% of f; found once per batch (`held_out_batches`) and read
    by every accumulator that only needs what fired."""

    rows: Tensor
    cols: Tensor
    vals: Tensor

    @classmethod
    def of(cls, f: Tensor) -> "Active":
        rows, cols = f.detach().nonzero(as_tuple=True)
        return cls(rows, cols, f.detach()[rows, cols])


class HeldOutBatch(NamedTuple):
    """One batch of held-out windows, read by the model and encoded by the SAE."""

    ctx: Tensor  # (B, n_ctx) token windows, on the model's device
    cache: dict[str, Tensor]  # the site's (B, n_ctx, d_in) activations and what `GPT.forward_from` needs to resume there
    x: Tensor  # (N, d_in) activations at the site, positions >= drop_first, N = B·(n_ctx − drop_first)
    f: Tensor  # (N, d_sae) feature activations
    active: Active  # f's non-zero entries
    index: Tensor  # (N,) int64 index of each row's token in the token stream (on the CPU, to index arrays)
    labels: Tensor | None  # (N,) int64 concept of each row's token (−1: none), or None; on the model's device
    segments: Tensor | None  # (N,) int64 segment of each row's token (`label_segments`), or None; likewise
    first_window: int  # index of the batch's first window
    n_windows: int  # windows in the whole pass


def first_half_rows(b: HeldOutBatch) -> int:
    """How many of the batch's rows, from its first, lie in the first half of the pass's windows.

    The held-out pass's one split, for everything that is fitted and then scored (the evaluator's
    mean-difference probes, the k-sparse probes and their unit choice): fit on the first half of
    the windows, score on the second. Windows come in order and each gives the same number of
    rows, so the first half's rows are a prefix of every batch: `x[:k]` fits, `x[k:]` scores."""
    n_ctx_rows = len(b.x) // len(b.ctx)  # rows per window (n_ctx − drop_first)
    return n_ctx_rows * min(max(b.n_windows // 2 - b.first_window, 0), len(b.ctx))


@torch.no_grad()
def held_out_batches(model, sae, tokens: np.ndarray, labels: np.ndarray | None = None,
                     n_tokens: int = 200_000, batch_contexts: int = 32, drop_first: int = 1,
                     log: str = "") -> Iterator[HeldOutBatch]:
    """Cut `tokens` into consecutive n_ctx windows (at most `n_tokens` tokens), run each batch of
    windows through the model and the SAE, and yield it. The one pass that the evaluator
    (`Evaluator`) and the feature statistics (`sae.interpret.FeatureStatsBuilder`) both read.

    The site is `sae.cfg.site`; the model stops there, and whoever needs logits resumes from the
    batch's `cache` (`GPT.forward_from`). `log` names the pass in the progress lines (rate and ETA
    on stderr); "" is silent.
    """
    site = sae.cfg.site
    if not site:
        raise ValueError("the SAE does not name its hook site (SAEConfig.site): set it, e.g. "
                         "SAEConfig(..., site='blocks.0.mlp.hook_post')")
    device = next(model.parameters()).device
    n_ctx = model.cfg.n_ctx
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
            _, cache = model.run_with_cache(ctx, [site, *model.resume_sites(site)], stop_at=site)
            x = cache[site][:, drop_first:].reshape(-1, sae.cfg.d_in).float()  # (N, d_in)
            index = ((start + torch.arange(B))[:, None] * n_ctx + positions[None, :]).reshape(-1)  # (N,)
            on_device = index.to(device)
            f = sae.encode(x)
            yield HeldOutBatch(ctx, cache, x, f, Active.of(f), index, None if lab is None else lab[on_device],
                               None if seg is None else seg[on_device], start, n_windows)
            done = start + B
            if log and (done == n_windows or (start // batch_contexts) % 20 == 19):
                elapsed = time.perf_counter() - t0
                print(f"  {log}: {done * n_ctx:,}/{n_windows * n_ctx:,} tokens ({elapsed:.0f}s, "
                      f"{done * n_ctx / max(elapsed, 1e-9):,.0f} tok/s, ETA {elapsed / done * (n_windows - done):.0f}s)",
                      file=sys.stderr, flush=True)


@dataclass
class Evaluation:
    """Everything `Evaluator` measured (scalars in `metrics`, per-feature arrays alongside)."""

    metrics: dict
    fire_count: Tensor  # (d_sae,) tokens on which each feature fired
    max_act: Tensor  # (d_sae,) largest activation seen
    features: ConceptHistogram | None
    neurons: ConceptHistogram | None
    probe: MeanDiffProbe | None = None  # a mean-difference linear probe on the site's activations
    feature_detectors: Detectors | None = None
    neuron_detectors: Detectors | None = None


class Evaluator:
    """Streams `HeldOutBatch`es (`add`) into reconstruction, sparsity, CE and concept metrics (`result`).

    Sums are kept in float64 and turned into the module's formulas at the end: with
    S_e = Σ‖x − x̂‖², S_x = Σ‖x‖² and m = Σx / n, the centred sum is Σ‖x − m‖² = S_x − n‖m‖², so
    fvu = S_e / (S_x − n‖m‖²) and nmse = S_e / S_x over every token, exactly as `fvu` and `nmse`
    on the materialised activations (tested); l0 = Σ_i fire_i / n (each firing counted once per
    token and feature). `mean_act` (d_in,) is the mean-ablation baseline; if None it is the mean of
    the first batch. Everything accumulates on the SAE's device, and nothing returns to the host
    until `result()`. Memory: one batch, three buffers of logits kept from batch to batch (the
    logits and two sets of log-probabilities: each the whole batch's on a GPU, 200 MB in all for
    `base`; `CPU_LOGITS` each on a CPU, 48 MB), the two concept histograms
    (`ConceptHistogram`: 23 MiB for the default run, 290 MB for `base`'s 16,384 features), the
    kept segment peaks (`SegmentPeaks`: 22 MiB for the default run's 200k tokens; grows with the
    tokens) and the probe's (n, n_concepts) float32 scores (6 MiB).
    """

    def __init__(self, model, sae, n_concepts: int = 0, mean_act: Tensor | None = None,
                 neurons: bool = True, drop_first: int = 1):
        self.model, self.sae, self.drop_first, self.mean_act = model, sae, drop_first, mean_act
        d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
        dev = self.device = next(sae.parameters()).device
        self.fire = torch.zeros(d_sae, dtype=torch.int64, device=dev)
        self.max_act = torch.zeros(d_sae, device=dev)
        self.features = ConceptHistogram(d_sae, n_concepts, device=dev) if n_concepts else None
        self.neurons = ConceptHistogram(d_in, n_concepts, device=dev) if n_concepts and neurons else None
        self.probe = MeanDiffProbe(d_in, n_concepts, device=dev) if n_concepts else None
        self.feature_peaks = SegmentPeaks(d_sae, device=dev) if n_concepts else None
        self.neuron_peaks = SegmentPeaks(d_in, device=dev) if n_concepts and neurons else None
        self.x_sum = torch.zeros(d_in, dtype=torch.float64, device=dev)
        # running sums as float64 tensors on the device: a .item() per batch would wait for the GPU
        self.sums = {k: torch.zeros((), dtype=torch.float64, device=dev)
                     for k in ("sq_err", "sq_x", "l1", "ce_clean", "ce_sae", "ce_zero", "ce_mean", "kl")}
        self.n = self.n_pred = 0
        self.scratch = None  # the logits' buffers of `_add_losses`

    # logits computed at once on a CPU: 16 MB of float32, about a last-level cache; fewer rows run the
    # unembedding matmul slower. `python -m benchmarks.bench_evaluate` times the pass: measure
    # 2**21 and 2**23 against it before changing this
    CPU_LOGITS = 2 ** 22

    def _add_losses(self, b: HeldOutBatch, x_hat: Tensor) -> None:
        """Next-token losses with the site's activations at positions >= d = drop_first clean,
        replaced by the SAE's reconstruction, by zeros and by the mean activation, each summed over
        the predictions those positions make (a 1-layer model's MLP at position p only affects the
        prediction made at p), and KL(clean ‖ SAE). The model resumes at the site from the batch's
        cache (`GPT.forward_from`: what runs before the site runs once for all four), a few contexts
        at a time on a CPU (`CPU_LOGITS`)."""
        s, d, site = self.sums, self.drop_first, self.sae.cfg.site
        B, T = b.ctx.shape
        clean = b.cache[site]
        shape = (B, T - d, clean.shape[-1])
        replacements = {"ce_clean": None, "ce_sae": x_hat.reshape(shape), "ce_zero": clean.new_zeros(()).expand(shape),
                        "ce_mean": self.mean_act.expand(shape)}
        V = self.model.cfg.vocab_size
        step = B if clean.is_cuda else max(1, self.CPU_LOGITS // ((T - d - 1) * V))
        if self.scratch is None or self.scratch[0].shape[0] < step or self.scratch[0].shape[1:] != (T - d - 1, V):
            # the logits and the two log-softmaxes of a chunk, reused from chunk to chunk and batch to
            # batch: on a CPU a fresh 16 MB tensor is 4,000 page faults
            self.scratch = (torch.empty(step, T - d - 1, V, dtype=clean.dtype, device=clean.device),
                            *torch.empty(2, step, T - d - 1, V, device=clean.device))
        for i in range(0, B, step):
            rows = slice(i, i + step)
            cache = {k: v[rows] for k, v in b.cache.items()}
            tgt = b.ctx[rows, d + 1:, None]  # (b, T − d − 1, 1)
            out, *lp_out = (t[:len(tgt)] for t in self.scratch)
            lp = {}
            for key, r in replacements.items():
                a = clean[rows]
                if r is not None:
                    a = a.clone()
                    a[:, d:] = r[rows].to(a.dtype)
                logits = self.model.forward_from(site, a, cache, positions=slice(d, -1), out=out).float()  # (b, T − d − 1, V)
                if key in ("ce_clean", "ce_sae"):  # KL needs the log-probabilities
                    lp[key] = torch.log_softmax(logits, -1, out=lp_out[len(lp)])
                    s[key] -= lp[key].gather(-1, tgt).sum(dtype=torch.float64)
                else:  # the same loss, logsumexp − the target's logit, in the logits' own memory (torch.logsumexp's
                    # steps, without its (b, T − d − 1, V) temporary)
                    target, m = logits.gather(-1, tgt), logits.amax(-1, keepdim=True)
                    lse = logits.sub_(m).exp_().sum(-1, keepdim=True).log_().add_(m)
                    s[key] += (lse - target).sum(dtype=torch.float64)
            # Σ p_clean · (log p_clean − log p_sae), in place
            diff = torch.sub(lp["ce_clean"], lp["ce_sae"], out=lp["ce_sae"])
            s["kl"] += diff.mul_(lp["ce_clean"].exp_()).sum(dtype=torch.float64)
            self.n_pred += tgt.numel()

    @torch.no_grad()
    def add(self, b: HeldOutBatch) -> None:
        s, x, f = self.sums, b.x, b.f
        if self.mean_act is None:
            self.mean_act = x.mean(0)
        x_hat = self.sae.decode(f, b.active).float()
        self._add_losses(b, x_hat)
        err, xd = (x - x_hat).double(), x.to(torch.float64, copy=True)  # a float32's square is exact in float64
        s["sq_err"] += err.mul_(err).sum()
        s["sq_x"] += xd.mul_(xd).sum()
        self.x_sum += x.sum(0, dtype=torch.float64)
        a = b.active
        s["l1"] += a.vals.abs().sum(dtype=torch.float64)
        self.n += len(x)
        self.fire += torch.bincount(a.cols[a.vals > 0], minlength=len(self.fire))
        self.max_act.scatter_reduce_(0, a.cols, a.vals.float(), "amax")  # (from 0, as the zeros would)
        if self.features is not None:
            self.features.add(f, b.labels, a)
            self.feature_peaks.add(f, b.labels, b.segments)
            if self.neurons is not None:
                self.neurons.add(x, b.labels)
                self.neuron_peaks.add(x, b.labels, b.segments)
            k = first_half_rows(b)  # fit the probe on the first half of the windows, score it on the second
            self.probe.fit(x[:k], b.labels[:k])
            if k < len(x):
                self.probe.score(x[k:], b.labels[k:])

    def result(self) -> Evaluation:
        s = {k: v.item() for k, v in self.sums.items()}
        n, n_pred = self.n, self.n_pred
        if n == 0:
            raise ValueError("the evaluator saw no tokens: add() at least one batch")
        fire, x_sum = self.fire.cpu(), self.x_sum.cpu()
        centred = s["sq_x"] - x_sum.pow(2).sum().item() / n  # Σ‖x − mean‖²
        ce_clean, ce_sae = s["ce_clean"] / n_pred, s["ce_sae"] / n_pred
        ce_zero, ce_mean = s["ce_zero"] / n_pred, s["ce_mean"] / n_pred
        m = {
            "n_tokens": n,
            "mse": s["sq_err"] / n,
            "fvu": s["sq_err"] / centred,
            "explained_variance": 1 - s["sq_err"] / centred,
            "nmse": s["sq_err"] / s["sq_x"],
            "l0": fire.sum().item() / n,
            "l1": s["l1"] / n,
            **density_summary(fire, n),
            "ce_clean": ce_clean,
            "ce_sae": ce_sae,
            "ce_zero_ablation": ce_zero,
            "ce_mean_ablation": ce_mean,
            "ce_recovered_zero": ce_recovered(ce_clean, ce_sae, ce_zero),
            "ce_recovered_mean": ce_recovered(ce_clean, ce_sae, ce_mean),
            "ce_added_nats": ce_sae - ce_clean,
            "kl": s["kl"] / n_pred,
        }
        probe = self.probe if self.probe is not None and self.probe.scores else None
        fd = Detectors.measure(self.features, self.feature_peaks) if self.features is not None else None
        nd = Detectors.measure(self.neurons, self.neuron_peaks) if self.neurons is not None else None
        hists = [h.cpu() if h is not None else None for h in (self.features, self.neurons)]
        return Evaluation(m, fire, self.max_act.cpu(), *hists, probe, fd, nd)


def evaluate_sae(model, sae, tokens: np.ndarray, labels: np.ndarray | None = None, n_concepts: int = 0,
                 n_tokens: int = 200_000, batch_contexts: int = 32, drop_first: int = 1,
                 mean_act: Tensor | None = None, neurons: bool = True, log: bool = True) -> Evaluation:
    """Stream `n_tokens` tokens of held-out text (consecutive n_ctx windows) through the model and
    the SAE (at `sae.cfg.site`); return reconstruction, sparsity, CE and, with labels, concept
    metrics. One `Evaluator` over `held_out_batches`."""
    ev = Evaluator(model, sae, n_concepts if labels is not None else 0, mean_act, neurons, drop_first)
    with torch.no_grad():
        for b in held_out_batches(model, sae, tokens, labels, n_tokens, batch_contexts, drop_first,
                                  log="evaluate" if log else ""):
            ev.add(b)
    return ev.result()


def concept_table(ev: Evaluation, names: list[str]) -> dict:
    """Per concept, first its detectors (`Detectors`): `detector` {feature, share, segment_recall}
    (of the passing features, the one with the highest token AUROC) and `neuron_detector`
    {neuron, ...}, None where no unit passes, with the closest unit in `closest_feature` /
    `closest_neuron` then; `detector_features`: every passing feature, highest AUROC first, and
    `n_detector_neurons`. After them, the absorption diagnostic: the best
    feature by token AUROC, its AUROC, precision/recall/F1 at its best threshold and its mass
    share on the concept; the best neuron's AUROC and a mean-difference linear probe's
    (`MeanDiffProbe`) beside them."""
    out = {}
    fa = ev.features.auroc()
    na = ev.neurons.auroc() if ev.neurons is not None else None
    pa = ev.probe.auroc() if ev.probe is not None else None
    for c, name in enumerate(names):
        row = {}
        for d, aur, key, unit in [(ev.feature_detectors, fa, "detector", "feature"),
                                  (ev.neuron_detectors, na, "neuron_detector", "neuron")]:
            if d is None:
                continue
            b = d.best(c, aur[c])
            entry = {unit: b["unit"], "share": b["share"], "segment_recall": b["segment_recall"]}
            row[key] = entry if b["detector"] else None
            if not b["detector"]:
                row[f"closest_{unit}"] = entry
            passing = d.passes()[c].nonzero().squeeze(1)
            if unit == "feature":
                row["detector_features"] = passing[aur[c, passing].argsort(descending=True)].tolist()
            else:
                row["n_detector_neurons"] = len(passing)
        j = int(fa[c].argmax())
        row.update({"feature": j, "auroc": fa[c, j].item(), **ev.features.best_f1(c, j),
                    "mass_share": (ev.features.mass[c, j] / ev.features.mass[:, j].sum().clamp_min(1e-12)).item(),
                    "density": ev.fire_count[j].item() / ev.metrics["n_tokens"]})
        if na is not None:
            k = int(na[c].argmax())
            row.update(neuron=k, neuron_auroc=na[c, k].item())
        if pa is not None and not np.isnan(pa[c]):
            row["probe_auroc"] = float(pa[c])
        out[name] = row
    return out


def share_summary(d: Detectors) -> dict:
    """The distribution of top-concept share over a set of units' alive units."""
    share = d.top_share().numpy()
    return {"n_alive": len(share), "mean_top_concept_share": float(share.mean()) if len(share) else float("nan"),
            "median_top_concept_share": float(np.median(share)) if len(share) else float("nan"),
            "fraction_above_detector_share": float((share >= DETECTOR_SHARE).mean()) if len(share) else 0.0,
            "share_histogram": np.histogram(share, bins=10, range=(0, 1))[0].tolist()}


def detector_summary(ev: Evaluation) -> dict:
    """`detectors`: how many concepts have a detector feature / neuron, with the thresholds; and
    `monosemanticity`: top-concept share of alive features against alive neurons."""
    out = {"detectors": {"features": int(ev.feature_detectors.passes().any(1).sum()), "of": ev.features.n_concepts,
                         "share_threshold": DETECTOR_SHARE, "fire_threshold": DETECTOR_FIRE,
                         "recall_threshold": DETECTOR_RECALL},
           "monosemanticity": {"features": share_summary(ev.feature_detectors)}}
    if ev.neuron_detectors is not None:
        out["detectors"]["neurons"] = int(ev.neuron_detectors.passes().any(1).sum())
        out["monosemanticity"]["neurons"] = share_summary(ev.neuron_detectors)
    return out
