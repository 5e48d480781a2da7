"""Which unit stands for which concept: streaming accumulators over labelled tokens (toy world).

Units are SAE features or, to test the paper's claim that features are more monosemantic than
neurons, the MLP neurons themselves. Per concept c and unit j, AUROC_j(c) = P(a_j(t⁺) > a_j(t⁻))
+ ½ P(a_j(t⁺) = a_j(t⁻)) over tokens t⁺ of c and t⁻ of other concepts (the best unit's, with its
precision/recall at the best-F1 threshold). Monosemanticity of j: the largest share of its
activation mass Σ_t max(a_j(t), 0) on one concept, compared over features and neurons.
A concept's *detector* (the papers' sense of "a feature for X"): a unit j with
    share_j(c)  = Σ_{t ∈ c} max(a_j(t), 0) / Σ_t max(a_j(t), 0)      >= DETECTOR_SHARE (0.8)
    recall_j(c) = #{segments s of c : max_{t ∈ s} a_j(t) > DETECTOR_FIRE · max_t a_j(t)} / #{segments of c}
                                                                      >= DETECTOR_RECALL (0.9)
where a segment is a maximal run of tokens with the same label (documents are separated by
end-of-text, label −1): specific to c, and lit across c's text, not one narrow sub-case of it.
Token AUROC punishes a dictionary that splits a concept into narrow features (absorption); this
definition does not.
A linear probe on the raw activations (`MeanDiffProbe`) shows what one direction can do: a concept
the probe detects and no feature does is in the activations, not the dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sae.evaluation.formulas import auroc
from sae.evaluation.held_out import Active

DETECTOR_SHARE = 0.8  # Towards Monosemanticity's Arabic feature puts 81% of its activation mass on Arabic text
DETECTOR_FIRE = 0.1  # "lights up": above a tenth of the unit's largest activation, not a faint echo
DETECTOR_RECALL = 0.9  # across the concept's text: in at least 9 of every 10 of its segments


class ConceptHistogram:
    """Streaming per-(concept, unit) histograms of activations, for AUROC and best-F1 thresholds.

    Bins: negative values (GELU neurons dip below zero), exact zeros (most SAE features on most
    tokens), then positive values on a log scale between `lo` and `hi`. Two tokens in the same bin
    count as a tie, so the AUROC is exact up to the bin width (~5% of the value). Tokens with label
    −1 (end-of-text) count as negatives for every concept. Lives on the activations' `device`
    (nothing goes back to the host per batch). Memory: (n_concepts + 1) × n_units ×
    ((n_bins + 2) int32 + 1 float64), whatever the number of tokens (270 MB for `base`'s SAE)."""

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
            flat = torch.bucketize(acts, self.boundaries)
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
        bins = torch.bucketize(vals, self.boundaries)
        counts.index_add_(0, pair * B + bins, self._ones(len(pair)))
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
            out[c] = (pos * (neg_below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1)).clamp_min(1)
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


def concept_aurocs(scores: np.ndarray, labels: np.ndarray, fitted: Tensor) -> np.ndarray:
    """(n_concepts,) AUROC of scores[:, c] for concept c (nan: c absent, or `fitted[c]` 0)."""
    out = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        pos = labels == c
        if 0 < pos.sum() < len(pos) and fitted[c] > 0:
            out[c] = auroc(scores[:, c], pos)
    return out


class MeanDiffProbe:
    """A linear probe per concept c, the direction d_c = mean(x | c) − mean(x | not c).

    Streaming in two phases: `fit(x, labels)` accumulates class sums (call it on the first part
    of the data); `score(x, labels)` projects later data on the fitted directions and keeps only
    the (n, n_concepts) scores, so memory is small. `auroc()` is then exact per concept."""

    def __init__(self, d: int, n_concepts: int, device: str | torch.device = "cpu"):
        self.sums = torch.zeros(n_concepts + 1, d, dtype=torch.float64, device=device)  # last row: no concept
        self.counts = torch.zeros(n_concepts + 1, dtype=torch.float64, device=device)
        self.directions: Tensor | None = None
        self.scores, self.labels = [], []  # per scored batch: (n, n_concepts) scores, (n,) labels

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
        return concept_aurocs(s, lab, self.counts)


class SegmentPeaks:
    """Streaming "lights up" counts: for every unit j and concept c, the number of c's segments s
    whose peak max_{t ∈ s} a_j(t) exceeds DETECTOR_FIRE · M_j, with M_j = max_t a_j(t) over the
    whole pass (clamped at 0), which is known only at the end.

    Exact, keeping only peaks that can still matter: the running maximum never exceeds the final
    one, so a peak at or below DETECTOR_FIRE × the running maximum can never light up and is
    dropped as its batch is added. Kept: (segment · n_units + unit, peak) for the others, 12 bytes
    each (a dense record takes 4 bytes for every pair: this pays for wide dictionaries, whose
    features are dark in most segments), plus one label per segment. Rows may arrive in any
    batches; a segment cut by a batch boundary is counted once. Lives on the activations' device."""

    def __init__(self, n_units: int, fire: float = DETECTOR_FIRE, device: str | torch.device = "cpu"):
        self.n_units, self.fire = n_units, fire
        self.running_max = torch.full((n_units,), -torch.inf, device=device)
        self.pairs, self.peaks = [], []  # per batch: the kept peaks' segment · n_units + unit, peak
        self.segments, self.labels = [], []  # per batch: every segment seen, and its label

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

        Among the units that pass, the one with the largest `coverage` (n_units,), e.g. token
        AUROC: of a concept's several detectors (one may fire only at the end of its sentences),
        the one covering most of its tokens is what a reader (and steering) means by "the feature
        for c". Without `coverage`, or when no unit passes, the largest margin
        min(share / DETECTOR_SHARE, recall / DETECTOR_RECALL)."""
        passing = self.passes()[c]
        margin = torch.minimum(self.share[c] / DETECTOR_SHARE, self.recall[c] / DETECTOR_RECALL)
        score = coverage.to(margin.dtype) if coverage is not None and passing.any() else margin
        j = int((score.where(passing, -torch.inf) if passing.any() else score).argmax())
        return {"unit": j, "share": self.share[c, j].item(), "segment_recall": self.recall[c, j].item(),
                "detector": bool(passing[j])}

    def top_share(self) -> Tensor:
        """(alive units,) share of each alive unit's activation mass on its top concept."""
        return self.share.max(0).values[self.alive]
