"""Towards Monosemanticity's claim, measured: which concepts have a detector feature, against a detector neuron.

The evaluation analysis of a labelled run (the toy world), from the held-out pass's concept
statistics (`sae.evaluation.detectors`): per concept its detector feature and neuron (or the
closest unit), how monosemantic the alive units are, and the absorption diagnostic (the best
single unit's token AUROC, and a linear probe's beside it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sae.evaluation.detectors import DETECTOR_FIRE, DETECTOR_RECALL, DETECTOR_SHARE, Detectors
from sae.evaluation.evaluator import Evaluation
from sae.markdown import Headline, num, text

NAME = "concepts"

# What every seed of the default run must show (the README states it).
TARGETS = {">= 12 of 14 concepts with a detector feature, >= 8 more than neurons":
           lambda h: h["detector_features"] >= 12 and h["detector_features"] - h["detector_neurons"] >= 8}


@dataclass
class Result:
    detectors: dict  # {features, neurons: how many concepts have a detector unit; of; the three thresholds}
    monosemanticity: dict  # {features, neurons: `share_summary`}
    rows: dict  # {concept: `concept_table`'s row}


def run(p) -> Result | None:
    """The concept table of the held-out pass `p` (None on unlabelled text)."""
    if p.labels is None:
        return None
    ev = p.evaluation
    fd, nd = ev.feature_detectors, ev.neuron_detectors
    detectors = {"features": int(fd.passes().any(1).sum()), "of": ev.features.n_concepts,
                 "share_threshold": DETECTOR_SHARE, "fire_threshold": DETECTOR_FIRE,
                 "recall_threshold": DETECTOR_RECALL}
    mono = {"features": share_summary(fd)}
    if nd is not None:
        detectors["neurons"] = int(nd.passes().any(1).sum())
        mono["neurons"] = share_summary(nd)
    return Result(detectors, mono, concept_table(ev, p.names))


def detector_features(r: Result) -> dict[int, str]:
    """{feature: concept} for every concept-detector feature, each concept's chosen detector first."""
    return {f: name for name, c in r.rows.items() for f in c.get("detector_features", [])}


def choose_feature(r: Result, concept: str) -> int:
    """The feature to steer `concept` with, from held-out detection alone: its detector feature (of
    those that pass, the one with the highest token AUROC), else the feature with the highest token AUROC."""
    if concept not in r.rows:
        raise ValueError(f"no concept {concept!r} in the run's metrics; known: {', '.join(r.rows) or 'none'}")
    c = r.rows[concept]
    return int(c["detector"]["feature"] if c.get("detector") else c["feature"])


def concept_table(ev: Evaluation, names: list[str]) -> dict:
    """Per concept: `detector` {feature, share, segment_recall} (of the passing features, the one
    with the highest token AUROC) and `neuron_detector` {neuron, ...}, None where no unit passes,
    with the closest unit in `closest_feature` / `closest_neuron` then; `detector_features` (every
    passing feature, highest AUROC first) and `n_detector_neurons`. Then the absorption diagnostic:
    the best feature by token AUROC, its AUROC, precision/recall/F1 at its best threshold, mass
    share on the concept and density; the best neuron's AUROC and the `MeanDiffProbe`'s."""
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


def headline(r: Result) -> list[Headline]:
    d = r.detectors
    label = "concepts with a detector {} (Towards Monosemanticity's claim: features, not neurons)"
    return [Headline("detector_features", label.format(f"feature, of {d['of']}"), d["features"], "d",
                     "A/1's Arabic, DNA and base64 features"),
            Headline("detector_neurons", label.format(f"neuron, of {d['of']}"), d.get("neurons"), "d",
                     "A/1's neurons polysemantic")]


def section(r: Result, page) -> list[str]:
    d, mono = r.detectors, r.monosemanticity
    out = ["## Concept detectors: features against neurons", "",
           f"**{d['features']} of {d['of']} concepts have a detector feature; {d.get('neurons', '—')} of {d['of']} have a "
           f"detector neuron.** A unit detects a concept when at least {d['share_threshold']:.0%} of its activation mass "
           f"on held-out text falls on the concept (Towards Monosemanticity's Arabic feature: 81%) and it fires above "
           f"{d['fire_threshold']:.0%} of its maximum in at least {d['recall_threshold']:.0%} of the concept's held-out "
           f"segments. Mean top-concept share of alive units: features {mono['features']['mean_top_concept_share']:.2f}"
           + (f", neurons {mono['neurons']['mean_top_concept_share']:.2f}" if "neurons" in mono else "") + ". "
           "Each row shows the concept's detector in bold, or the closest unit when none passes.", "",
           "| concept | feature | share | segment recall | neuron | share | segment recall |",
           "|---|---|---|---|---|---|---|"]
    for name, c in r.rows.items():
        cells = []
        for key, unit in [("detector", "feature"), ("neuron_detector", "neuron")]:
            e = c.get(key) or c.get(f"closest_{unit}")
            if not e:
                cells += ["—"] * 3
                continue
            label = page.feature(e[unit]) if unit == "feature" else str(int(e[unit]))
            cells += [f"**{label}**" if c.get(key) else f"none (closest: {label})",
                      f"{e['share']:.2f}", f"{e['segment_recall']:.2f}"]
        out.append(f"| {text(name)} | " + " | ".join(cells) + " |")
    out += [""] + page.figure("concept_detectors.png")
    out += ["## Absorption diagnostic: token AUROC of the best single unit", "",
            "Token-level AUROC of the best single unit at detecting each concept's tokens. It punishes a dictionary "
            "that splits a concept into narrower features (absorption), so read it beside the detectors above, not "
            "instead of them. The feature's precision/recall at its best threshold and the share of its activation "
            "mass on the concept (Towards Monosemanticity's Arabic feature: 81%). The last column is a linear probe on "
            "the same activations (difference of class means, fitted and scored on disjoint halves of the held-out "
            "tokens): what one direction can do when it is *told* the concept.", "",
            "| concept | feature | AUROC | precision | recall | mass share | neuron | neuron AUROC | probe AUROC |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, c in r.rows.items():
        out.append(f"| {text(name)} | {page.feature(c['feature'])} | {c['auroc']:.3f} | {c['precision']:.2f} | "
                   f"{c['recall']:.2f} | {c['mass_share']:.2f} | {num(c.get('neuron', ''))} | "
                   f"{num(c.get('neuron_auroc'))} | {num(c.get('probe_auroc'))} |")
    return out + [""]
