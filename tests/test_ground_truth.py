"""sae/evaluation/ground_truth.py on hand-built cases: absorption counts, the k-sparse probes' unit choice,
their Fisher weights and AUROC, and the detector/specific split."""

import numpy as np
import pytest
import torch

from sae.evaluation.ground_truth import Absorption, SparseProbes, detectors_and_specific, summary, top_units
from sae.evaluation.detectors import Detectors, MeanDiffProbe
from sae.evaluation.held_out import Active


def test_absorption_counts_silent_and_absorbed_tokens_by_hand():
    """Concept 0: detector feature 0, feature 1 specific to it. Concept 1: detector 2, none specific.
    Concept-0 tokens: [det fires], [det silent, 1 fires] (absorbed), [all silent] (silent, not absorbed),
    [det silent, feature 3 (not specific) fires] (silent, not absorbed). Concept-1 tokens: [2 fires], [silent]."""
    detector = torch.tensor([0, 2])
    specific = torch.tensor([[False, True, False, False], [False, False, False, False]])
    f = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 3.0],
                      [0, 0, 1.0, 0], [0, 0, 0, 0], [5.0, 5.0, 5.0, 5.0]])
    labels = torch.tensor([0, 0, 0, 0, 1, 1, -1])  # the last token has no concept: ignored
    a = Absorption(detector, specific)
    a.add(Active.of(f[:3]), labels[:3])  # in two batches: the counts add up
    a.add(Active.of(f[3:]), labels[3:])
    r = a.result()
    assert r[0] == {"tokens": 4, "silent": 0.75, "absorbed": 0.25}
    assert r[1] == {"tokens": 2, "silent": 0.5, "absorbed": 0.0}


def test_detectors_and_specific_excludes_the_detector_and_dead_units():
    share = torch.tensor([[0.9, 0.85, 0.2, 0.95], [0.05, 0.1, 0.9, 0.0]])
    recall = torch.tensor([[0.95, 0.5, 0.1, 0.1], [0.0, 0.0, 0.95, 0.0]])
    alive = torch.tensor([True, True, True, False])
    d = Detectors(share, recall, alive)
    detector, specific = detectors_and_specific(d, torch.zeros(2, 4))
    assert detector.tolist() == [0, 2]
    assert specific.tolist() == [[False, True, False, False], [False, False, False, False]], \
        "specific: share >= 0.8, alive, not the detector itself"


def test_top_units_are_the_ones_that_separate_the_concept():
    m = MeanDiffProbe(4, 2)
    acts = torch.tensor([[1.0, 5.0, 0.0, 2.0], [1.0, 3.0, 0.0, 2.0], [1.0, 0.0, 4.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    m.fit(acts, torch.tensor([0, 0, 1, -1]))
    # concept 0: means inside [1, 4, 0, 2], outside [1, 0, 2, 0] -> differences [0, 4, -2, 2]
    assert top_units(m, 2).tolist()[0] == [1, 3]
    assert top_units(m, 1).tolist()[1] == [2]


def _two_unit_world(n, gen):
    """Concept tokens (label 0) shift two noisy units by +1 each; unit 2 is pure noise."""
    lab = (torch.rand(n, generator=gen) < 0.3).long()
    acts = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    acts[:, :2] += lab[:, None].double()
    return acts.float(), lab


def test_sparse_probes_fit_fisher_weights_and_grade_held_out_tokens():
    gen = torch.Generator().manual_seed(0)
    units = torch.tensor([[0, 1, 2]])  # one concept, three chosen units, best first
    p = SparseProbes(units, ks=(1, 2, 3))
    for _ in range(4):
        p.fit(*_two_unit_world(5000, gen))
    p._solve()
    # equal, independent unit-variance units shifted by 1: Fisher's w is ∝ (1, 1) on the first two, ~0 on noise
    w2 = p.w[2][0] / p.w[2][0, 0]
    assert torch.allclose(w2, torch.tensor([1.0, 1.0], dtype=w2.dtype), atol=0.05)
    assert abs(float(p.w[3][0, 2] / p.w[3][0, 0])) < 0.05
    p.score(*_two_unit_world(20000, gen))
    a = p.auroc()
    # AUROC of a unit-variance Gaussian shift d: Φ(d / √2); d = 1 for one unit, √2 for the sum of two
    from math import erf, sqrt
    phi = lambda z: 0.5 * (1 + erf(z / sqrt(2)))  # noqa: E731
    assert a[1][0] == pytest.approx(phi(1 / sqrt(2)), abs=0.01)
    assert a[2][0] == pytest.approx(phi(1.0), abs=0.01)
    assert a[3][0] == pytest.approx(a[2][0], abs=0.01), "a noise unit adds nothing"


def test_a_concept_absent_from_the_fit_half_gives_none_not_a_number():
    p = SparseProbes(torch.tensor([[0], [1]]), ks=(1,))
    p.fit(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, -1]))  # concept 1 never seen
    p.score(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]), torch.tensor([0, 1, -1]))
    a = p.auroc()[1]
    assert a[0] == 1.0 and np.isnan(a[1])


def test_summary_averages_over_concepts():
    per = {"a": {"absorption": {"absorbed": 0.2, "silent": 0.5}, "sparse_probing": {"features": {"1": 0.6, "5": 0.8}}},
           "b": {"absorption": {"absorbed": 0.4, "silent": 0.7}, "sparse_probing": {"features": {"1": None, "5": 0.9}}}}
    s = summary(per)
    assert s["absorbed"] == pytest.approx(0.3) and s["silent"] == pytest.approx(0.6)
    assert s["sparse_probing"]["features"] == {"1": pytest.approx(0.6), "5": pytest.approx(0.85)}


def test_the_evaluator_and_the_sparse_probes_fit_on_the_same_first_half_of_the_windows():
    """One split for the whole held-out pass (`metrics.first_half_rows`): with 10 windows read 3 at a
    time the middle falls inside the second batch, and the evaluator's probe, the k-sparse probes'
    unit choice and the k-sparse probes themselves each fit on exactly the first 5 windows' rows and
    score the other 5 (a split by batch fitted the evaluator's probe on 6)."""
    from sae.autoencoder import SAEConfig, SparseAutoencoder
    from sae.gpt import GPT, GPTConfig
    from sae.evaluation.ground_truth import measure
    from sae.evaluation.evaluator import Evaluator
    from sae.evaluation.held_out import first_half_rows, held_out_batches

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=16, n_head=2, d_mlp=32, n_ctx=8, vocab_size=50))
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, site="blocks.0.mlp.hook_post"))
    rng = np.random.default_rng(0)
    tokens, labels = rng.integers(0, 50, 80), rng.integers(-1, 3, 80)
    rows_per_window, n_concepts = 7, 3  # n_ctx − drop_first

    def batches():
        return held_out_batches(model, sae, tokens, labels, n_tokens=80, batch_contexts=3)

    ev = Evaluator(model, sae, n_concepts=n_concepts)
    feature_means = MeanDiffProbe(64, n_concepts)
    for b in batches():
        ev.add(b)
        feature_means.fit(b.f[:first_half_rows(b)], b.labels[:first_half_rows(b)])
    half = 5 * rows_per_window
    assert ev.probe.counts.sum() == feature_means.counts.sum() == half
    assert sum(len(s) for s in ev.probe.scores) == half
    fitted = []
    original = SparseProbes.fit

    def fit(self, acts, lab):
        fitted.append(len(acts))
        return original(self, acts, lab)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(SparseProbes, "fit", fit)
        measure(batches(), torch.zeros(n_concepts, dtype=torch.long), torch.zeros(n_concepts, 64, dtype=torch.bool),
                feature_means, ev.probe, ["a", "b", "c"])
    assert sum(fitted) == 2 * half, "features and neurons: each fitted on the first half's rows"
