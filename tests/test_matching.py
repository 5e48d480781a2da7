"""One-to-one recovery measures against a known dictionary (sae/evaluation/matching.py)."""

import itertools

import numpy as np
import pytest
import torch

from sae.evaluation.matching import assign, cosines, one_to_one, recovery


def test_assign_finds_the_least_total_cost_against_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 6))
        m = int(rng.integers(n, 8))
        cost = rng.normal(size=(n, m)) if trial % 2 else rng.integers(0, 3, size=(n, m)).astype(float)  # ties too
        col = assign(cost)
        assert len(set(col.tolist())) == n, "two rows got the same column"
        best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        assert cost[np.arange(n), col].sum() == pytest.approx(best)
    with pytest.raises(ValueError, match="transpose"):
        assign(np.zeros((3, 2)))


def test_one_to_one_differs_from_max_cosine_where_one_latent_serves_two_features():
    """Two true features at 60 degrees; one latent halfway gets cos 0.87 with both, which MMCS
    counts twice. One to one, the second feature gets the other latent (cos 0)."""
    truth = torch.tensor([[1.0, 0.0, 0.0], [0.5, 3 ** 0.5 / 2, 0.0]])
    decoder = torch.tensor([[3 ** 0.5 / 2, 0.5, 0.0], [0.0, 0.0, 1.0]])
    m, cos = one_to_one(cosines(decoder, truth))
    assert sorted(m.tolist()) == [0, 1] and sorted(cos.tolist()) == pytest.approx([0.0, 3 ** 0.5 / 2], abs=1e-6)
    with pytest.raises(ValueError, match="d_sae"):
        one_to_one(cosines(decoder[:1], truth))
    with pytest.raises(ValueError, match="not W_enc"):
        cosines(decoder.T, truth)


def _truth(n=6, d=8):
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(0)), dim=1)


def test_recovery_of_the_true_dictionary_itself_is_perfect_and_a_duplicate_lowers_uniqueness():
    D = _truth()
    c = (torch.rand(2000, 6, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])  # latent j is true feature perm[j]
    decoder, f = D[perm], c[:, perm]
    r = recovery(decoder, D, f, c, torch.full((6,), 0.3))
    assert r["mcc"] == pytest.approx(1.0) and r["uniqueness"] == 1.0
    assert r["precision"] == r["recall"] == 1.0 and r["mcc_thirds"] == pytest.approx([1.0] * 3)
    # a seventh latent copying feature 3, firing half of its rows: uniqueness 6/7, the match unchanged
    extra = torch.cat([decoder, D[3:4]])
    f7 = torch.cat([f, c[:, 3:4] * (torch.arange(2000) % 2 == 0)[:, None]], 1)
    r7 = recovery(extra, D, f7, c, torch.full((6,), 0.3))
    assert r7["uniqueness"] == pytest.approx(6 / 7) and r7["mcc"] == pytest.approx(1.0)


def test_precision_and_recall_count_firing_against_the_truth():
    D = _truth(2, 4)
    c = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 0]])
    f = torch.tensor([[1.0, 0], [0, 0], [1, 1], [0, 0]])  # latent 0 misses row 1, fires wrongly on row 2
    r = recovery(D, D, f, c, torch.tensor([0.5, 0.25]))
    assert r["recall"] == pytest.approx((1 / 2 + 1) / 2) and r["precision"] == pytest.approx((1 / 2 + 1) / 2)


def test_absorption_counts_a_child_latent_that_took_its_parents_rows_and_direction():
    """Parent 0 with children 1 and 2. Child 1's latent is 'parent + child' and fires instead of
    the parent's on child 1's rows: absorbed. Child 2 is clean: both latents fire."""
    D = _truth(3, 8)
    parents = torch.tensor([-1, 0, 0])
    c = torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 0]])
    absorbed_child = torch.nn.functional.normalize(D[0] + D[1], dim=0)
    decoder = torch.stack([D[0], absorbed_child, D[2]])
    f = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 0]])
    r = recovery(decoder, D, f, c, torch.tensor([0.9, 0.3, 0.3]), parents)
    assert r["absorbed"] == pytest.approx((1.0 + 0.0) / 2)
    cos_parent = float(absorbed_child @ D[0])
    assert r["parent_cos"] == pytest.approx((cos_parent + float(D[2] @ D[0])) / 2, abs=1e-5)
    assert "absorbed" not in recovery(decoder, D, f, c, torch.tensor([0.9, 0.3, 0.3]))
