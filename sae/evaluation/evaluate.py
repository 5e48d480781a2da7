"""The evaluation: one held-out pass that every evaluation analysis reads.

`held_out_pass` streams the held-out text once through the model and the SAE (`held_out_batches`)
into the `Evaluator` (reconstruction, sparsity, CE, concept statistics), the class means that
choose the k-sparse probes' units, and any `also` listener (the feature statistics:
`sae.interpret.FeatureStatsBuilder`). `evaluate` then runs a list of analyses over the pass, in
order, each a module with `NAME` and `run(pass) -> Result | None` (None: it does not apply, e.g.
concepts on unlabelled text); a later analysis reads an earlier one's result from `pass.results`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from sae.evaluation.detectors import MeanDiffProbe
from sae.evaluation.evaluator import Evaluation, Evaluator
from sae.evaluation.held_out import first_half_rows, held_out_batches


@dataclass
class Pass:
    """What the held-out pass gives every evaluation analysis."""

    model: object
    sae: object
    tokens: np.ndarray  # the held-out tokens the pass read (a second pass reads the same)
    labels: np.ndarray | None  # their concepts (−1: none), or None on unlabelled text
    n_tokens: int
    names: list[str]  # the concepts' names (empty without labels)
    evaluation: Evaluation
    feature_means: MeanDiffProbe | None  # the features' class means on the first half of the windows
    log: bool = True
    results: dict = field(default_factory=dict)  # {analysis NAME: its result}, filled in order by `evaluate`


def held_out_pass(model, sae, tokens, labels, n_tokens: int, names: list[str], also=None, log: bool = True) -> Pass:
    """Stream `n_tokens` held-out tokens once through the model and the SAE (see the module docstring)."""
    labelled = labels is not None
    ev = Evaluator(model, sae, n_concepts=len(names) if labelled else 0)
    feature_means = MeanDiffProbe(sae.cfg.d_sae, len(names), next(sae.parameters()).device) if labelled else None
    with torch.no_grad():
        for b in held_out_batches(model, sae, tokens, labels, n_tokens, log="evaluate" if log else ""):
            ev.add(b)
            if also is not None:
                also.add(b)
            if labelled:
                k = first_half_rows(b)
                feature_means.fit(b.f[:k], b.labels[:k])
    return Pass(model, sae, tokens, labels, n_tokens, list(names) if labelled else [],
                ev.result(), feature_means, log)


def evaluate(p: Pass, analyses) -> dict:
    """{NAME: result} of each analysis (a module with `NAME` and `run`) that applies, run in order over the pass."""
    for a in analyses:
        r = a.run(p)
        if r is not None:
            p.results[a.NAME] = r
    return p.results
