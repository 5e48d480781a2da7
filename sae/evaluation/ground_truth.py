"""Metrics only known labels allow: feature absorption and k-sparse probing, per concept.

Large-model benchmarks estimate both from proxies (SAEBench's absorption uses first-letter probes
and is "not recommended below 1B-parameter models or 16k latents"); in the toy world every token's
concept is known, so here they are exact counts on held-out text.

Absorption (after Chanin et al. 2024, "A is for Absorption", with labels in place of probes).
For concept c, let j* be its detector feature (`detectors.Detectors.best`; the closest feature
when none passes) and A_c the other features specific to c (share_j(c) >= DETECTOR_SHARE,
j ≠ j*). Over c's tokens t:

    silent(c)     = #{t ∈ c : f_j*(t) = 0} / #{t ∈ c}
    absorbed(c)   = #{t ∈ c : f_j*(t) = 0 and ∃ j ∈ A_c : f_j(t) > 0} / #{t ∈ c}

`absorbed`: c's tokens that its own feature leaves to a narrower feature of c, which has absorbed
it; `silent − absorbed`: what nothing specific to c covers (left to broad features).

k-sparse probing (SAEBench's sparse_probing after Gao et al. 2024, section 4.5), k = 1, 2, 5, on
the pass's one split (`held_out.first_half_rows`). For concept c: the k units with the largest
mean(a_j | c) − mean(a_j | not c) on the first half, a Fisher probe on them fitted there,
w = (Σ_c + Σ_¬c + εI)⁻¹ (μ_c − μ_¬c), and its score a_S · w on the second half graded by AUROC
(threshold-free like the other concept metrics; SAEBench fits a logistic regression and reports
accuracy). SAE features against MLP neurons: a concept that k features carry and k neurons do
not is one the dictionary made readable.

Both need the detectors, known only after `evaluator.Evaluator`'s pass, so they take a second pass
over the same tokens (`measure`: the model stops at the site, no logits). The class means that
choose the probes' units (`detectors.MeanDiffProbe.fit`, features and neurons) ride on the first pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch import Tensor

from sae.evaluation.detectors import DETECTOR_SHARE, Detectors, MeanDiffProbe, concept_aurocs
from sae.evaluation.held_out import Active, HeldOutBatch, first_half_rows, held_out_batches
from sae.markdown import Headline, num, pct, text

PROBE_KS = (1, 2, 5)


def top_units(means: MeanDiffProbe, k: int) -> Tensor:
    """(n_concepts, k) the units with the largest mean difference mean(a | c) − mean(a | not c) over
    what `means` was fitted on (the first half), largest first: the k-sparse probes' unit choice."""
    d = means.difference()
    return d.topk(min(k, d.shape[1]), dim=1).indices


class SparseProbes:
    """Fisher probes on each concept's chosen units (`units`, (n_concepts, k_max), best first), for
    every k in `ks`: `fit` accumulates per-class moments of the chosen units, `score` projects and
    keeps (n, n_concepts) scores per k; `auroc()` grades them. Memory: the moments, and
    len(ks) × n_scored × n_concepts float32 scores."""

    def __init__(self, units: Tensor, ks: tuple[int, ...] = PROBE_KS):
        self.units, self.ks = units, tuple(k for k in ks if k <= units.shape[1])
        C, K = units.shape
        dev = units.device
        self.n = torch.zeros(2, C, dtype=torch.float64, device=dev)  # [inside, all]
        self.s1 = torch.zeros(2, C, K, dtype=torch.float64, device=dev)
        self.s2 = torch.zeros(2, C, K, K, dtype=torch.float64, device=dev)
        self.w: dict[int, Tensor] = {}
        self.scores: dict[int, list[Tensor]] = {k: [] for k in self.ks}
        self.labels: list[Tensor] = []

    def _gather(self, acts: Tensor) -> Tensor:
        return acts.detach()[:, self.units.to(acts.device)].to(self.units.device).double()  # (n, C, K)

    def fit(self, acts: Tensor, labels: Tensor) -> None:
        g = self._gather(acts)
        inside = (labels.to(g.device).long()[:, None] == torch.arange(g.shape[1], device=g.device)).double()
        self.n += torch.stack([inside.sum(0), torch.full_like(inside[0], len(g))])
        self.s1 += torch.stack([torch.einsum("nc,nck->ck", inside, g), g.sum(0)])
        self.s2 += torch.stack([torch.einsum("nc,nck,ncl->ckl", inside, g, g), torch.einsum("nck,ncl->ckl", g, g)])

    def _solve(self) -> None:
        n_in, n_out = self.n[0], self.n[1] - self.n[0]  # (C,)
        s1_in, s1_out = self.s1[0], self.s1[1] - self.s1[0]
        s2_in, s2_out = self.s2[0], self.s2[1] - self.s2[0]
        mu_in, mu_out = s1_in / n_in.clamp_min(1)[:, None], s1_out / n_out.clamp_min(1)[:, None]
        cov = (s2_in - n_in[:, None, None] * mu_in[:, :, None] * mu_in[:, None, :]
               + s2_out - n_out[:, None, None] * mu_out[:, :, None] * mu_out[:, None, :]) \
            / (n_in + n_out - 2).clamp_min(1)[:, None, None]
        for k in self.ks:
            c, d = cov[:, :k, :k], (mu_in - mu_out)[:, :k]
            ridge = 1e-6 * c.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)[:, None, None]
            self.w[k] = torch.linalg.solve(c + ridge * torch.eye(k, dtype=c.dtype, device=c.device), d)  # (C, k)

    def score(self, acts: Tensor, labels: Tensor) -> None:
        if not self.w:
            self._solve()
        g = self._gather(acts)
        for k in self.ks:
            self.scores[k].append(torch.einsum("nck,ck->nc", g[:, :, :k], self.w[k]).float())
        self.labels.append(labels.long().to(self.units.device))

    def auroc(self) -> dict[int, np.ndarray]:
        """{k: (n_concepts,) AUROC on the scored tokens (nan: the concept is absent from either half)}."""
        if not self.labels:  # nothing scored (fewer than two windows)
            return {k: np.full(self.units.shape[0], np.nan) for k in self.ks}
        lab = torch.cat(self.labels).cpu().numpy()
        return {k: concept_aurocs(torch.cat(scores).cpu().numpy(), lab, self.n[0])
                for k, scores in self.scores.items()}


class Absorption:
    """Counts, per concept, its tokens, those on which its detector `detector[c]` is silent, and
    those on which it is silent while a feature in `specific[c]` (bool (n_concepts, d_sae), the
    detector excluded) fires: `silent` and `absorbed` in the module docstring."""

    def __init__(self, detector: Tensor, specific: Tensor):
        self.detector, self.specific = detector, specific
        C = len(detector)
        self.counts = torch.zeros(3, C, dtype=torch.int64, device=detector.device)  # tokens, silent, absorbed

    def add(self, active: Active, labels: Tensor) -> None:
        """`active`: the batch's fired features (`held_out.Active`), `labels` (n,) its rows' concepts."""
        dev = self.detector.device
        lab = labels.to(dev).long()
        rows, cols, vals = (t.to(dev) for t in active)
        fired = (vals > 0) & (lab[rows] >= 0)
        rows, cols, c = rows[fired], cols[fired], lab[rows[fired]]
        n = len(lab)
        silent = torch.bincount(rows[cols == self.detector[c]], minlength=n) == 0  # (n,) its detector did not fire
        other = torch.bincount(rows[self.specific[c, cols]], minlength=n) > 0  # a specific feature of its concept did
        keep = lab >= 0
        for row, mask in enumerate((keep, keep & silent, keep & silent & other)):
            self.counts[row] += torch.bincount(lab[mask], minlength=self.counts.shape[1])

    def result(self) -> list[dict]:
        n, silent, absorbed = self.counts.cpu().tolist()
        return [{"tokens": t, "silent": s / max(t, 1), "absorbed": a / max(t, 1)} for t, s, a in zip(n, silent, absorbed)]


def detectors_and_specific(d: Detectors, coverage: Tensor) -> tuple[Tensor, Tensor]:
    """Each concept's detector feature (`Detectors.best` with `coverage`, e.g. token AUROC,
    (n_concepts, d_sae)) and the mask of its other specific features (share >= DETECTOR_SHARE)."""
    detector = torch.tensor([d.best(c, coverage[c])["unit"] for c in range(len(d.share))])
    specific = (d.share >= DETECTOR_SHARE) & d.alive[None, :]
    specific[torch.arange(len(detector)), detector] = False
    return detector, specific


@torch.no_grad()
def measure(batches: Iterable[HeldOutBatch], detector: Tensor, specific: Tensor, feature_means: MeanDiffProbe,
            neuron_means: MeanDiffProbe | None, names: list[str]) -> dict:
    """The second pass: absorption over every token, and the k-sparse probes fitted on the first
    half of the windows and scored on the second, features (and neurons, with `neuron_means`).
    `batches`: `held_out.held_out_batches(...)` over the same tokens as the first pass.
    Returns {concept: {"absorption": {...}, "sparse_probing": {"features": {k: AUROC}, "neurons": ...}}}.
    Memory: the probes' scores (`SparseProbes`) and a batch's (n, n_concepts, 5) gathered units."""
    absorption, probes = None, {}
    for b in batches:
        if absorption is None:
            absorption = Absorption(detector.to(b.f.device), specific.to(b.f.device))
            probes["features"] = SparseProbes(top_units(feature_means, max(PROBE_KS)))
            if neuron_means is not None:
                probes["neurons"] = SparseProbes(top_units(neuron_means, max(PROBE_KS)))
        absorption.add(b.active, b.labels)
        k = first_half_rows(b)  # the pass's one split (`held_out.first_half_rows`)
        for kind, p in probes.items():
            acts = b.f if kind == "features" else b.units
            if k > 0:
                p.fit(acts[:k], b.labels[:k])
            if k < len(acts):
                p.score(acts[k:], b.labels[k:])
    if absorption is None:
        raise ValueError("the ground-truth pass saw no tokens")
    scores = {kind: p.auroc() for kind, p in probes.items()}
    out = {}
    for c, (name, a) in enumerate(zip(names, absorption.result())):
        out[name] = {"absorption": {**a, "feature": int(detector[c]), "n_specific": int(specific[c].sum())},
                     "sparse_probing": {kind: {str(k): (None if np.isnan(v[c]) else float(v[c])) for k, v in s.items()}
                                        for kind, s in scores.items()}}
    return out


def summary(per_concept: dict) -> dict:
    """Means over concepts: absorbed and silent shares, and each k's probe AUROC, features and neurons."""
    rows = list(per_concept.values())
    out = {"absorbed": float(np.mean([r["absorption"]["absorbed"] for r in rows])),
           "silent": float(np.mean([r["absorption"]["silent"] for r in rows])), "sparse_probing": {}}
    for kind in rows[0]["sparse_probing"]:
        out["sparse_probing"][kind] = {k: float(np.nanmean([np.nan if r["sparse_probing"][kind][k] is None
                                                             else r["sparse_probing"][kind][k] for r in rows]))
                                       for k in rows[0]["sparse_probing"][kind]}
    return out


# ----------------------------------------------------------------------------- the analysis
NAME = "ground_truth"


@dataclass
class Result:
    absorbed: float  # mean over concepts of `absorbed(c)`
    silent: float  # mean over concepts of `silent(c)`
    sparse_probing: dict  # {"features"/"neurons": {k: mean AUROC over concepts}}
    rows: dict  # {concept: {"absorption": {...}, "sparse_probing": {...}}} (`measure`)


def run(p) -> Result | None:
    """Absorption and k-sparse probing over a second pass of the held-out pass `p`'s tokens (None on
    unlabelled text). Each concept's detector is the concepts analysis's choice (token AUROC breaks ties)."""
    if p.labels is None:
        return None
    ev = p.evaluation
    detector, specific = detectors_and_specific(ev.feature_detectors, ev.features.auroc())
    batches = held_out_batches(p.model, p.sae, p.tokens, p.labels, p.n_tokens,
                               log="absorption and k-sparse probes" if p.log else "")
    rows = measure(batches, detector, specific, p.feature_means, ev.probe, p.names)
    return Result(**summary(rows), rows=rows)


def headline(r: Result) -> list[Headline]:
    return [Headline("absorbed", "concept tokens absorbed (its detector silent, a narrower feature of it firing)",
                     r.absorbed, ".1%")]


def section(r: Result, page) -> list[str]:
    probing = r.sparse_probing
    ks = list(probing["features"])
    kinds = [k for k in ("features", "neurons") if k in probing]
    out = ["## Ground truth: absorption and k-sparse probing", "",
           f"Every token's concept is known, so both are exact counts on the held-out text. **Absorption:** on "
           f"{pct(r.silent)} of a concept's tokens (mean over concepts) its detector feature is silent, and on "
           f"{pct(r.absorbed)} it is silent while another feature specific to the concept (share >= "
           f"{DETECTOR_SHARE:.0%}) fires instead: the concept is there, absorbed by a narrower feature (Chanin et al. "
           "2024, with labels in place of probes). **k-sparse probing:** the k units with the largest class-mean "
           "difference on the first half of the held-out windows, combined by Fisher's discriminant fitted there, "
           "scored as AUROC on the second half (SAEBench's sparse probing). Mean AUROC: "
           + "; ".join(f"{kind} " + ", ".join(f"k={k} {probing[kind][k]:.3f}" for k in ks) for kind in kinds) + ". "
           "A sparse feature fires on a part of its concept's tokens and ranks the rest with every other token, so "
           "few features can rank a concept worse than few dense neurons: absorption again, seen from the probe's side.",
           "",
           "| concept | detector feature | silent | absorbed | specific features | "
           + " | ".join(f"{kind[:-1]}s k={k}" for kind in kinds for k in ks) + " |",
           "|---|---|---:|---:|---:|" + "---:|" * (len(kinds) * len(ks))]
    for name, c in r.rows.items():
        a, sp = c["absorption"], c["sparse_probing"]
        cells = [num(sp.get(kind, {}).get(k)) for kind in kinds for k in ks]
        out.append(f"| {text(name)} | {page.feature(a['feature'])} | {pct(a['silent'])} | {pct(a['absorbed'])} | "
                   f"{a['n_specific']} | " + " | ".join(cells) + " |")
    return out + [""]
