"""Toy models of superposition and synthetic data with a known dictionary (sae/world/toy.py)."""

import math

import pytest
import torch

from sae.world.toy import SyntheticActivations, SyntheticConfig, ToyModel, ToyModelConfig, dimensions_per_feature, features_stored, max_cosine, mmcs, superposition, train_toy_model


def test_synthetic_data_is_deterministic_and_matches_its_spec():
    cfg = SyntheticConfig(n_features=512, d=256, decay=0.99, mean_active=5.0, seed=3)
    a, b = SyntheticActivations(cfg), SyntheticActivations(cfg)
    assert torch.equal(a.dictionary, b.dictionary), "same seed must give the same dictionary"
    xa, ca = a.sample(2000, torch.Generator().manual_seed(1))
    xb, cb = b.sample(2000, torch.Generator().manual_seed(1))
    assert torch.equal(xa, xb) and torch.equal(ca, cb), "same seeds must give the same samples"

    assert torch.allclose(a.dictionary.norm(dim=1), torch.ones(512), atol=1e-5), "true features must be unit directions"
    assert math.isclose(a.probs.sum().item(), 5.0, rel_tol=1e-4), "Σ p_i is the expected number of active features"
    ratio = a.probs[1:] / a.probs[:-1]
    assert torch.allclose(ratio, torch.full_like(ratio, 0.99), atol=1e-5), "p_i must decay as 0.99^i"
    assert ca.min() >= 0 and ca.max() <= 1, "magnitudes are uniform in [0, 1]"
    active = (ca > 0).sum(1).float().mean().item()
    assert 4.6 < active < 5.4, f"about 5 features should be active per sample, got {active:.2f}"
    assert torch.allclose(xa, ca @ a.dictionary, atol=1e-5), "x must be Σ_i c_i D_i"
    nz = ca[ca > 0]
    assert abs(nz.mean().item() - 0.5) < 0.02, "an active feature's magnitude should be U[0, 1] (mean 1/2)"


def test_correlated_variant_keeps_marginals_and_correlates():
    data = SyntheticActivations(SyntheticConfig(n_features=64, d=32, decay=0.97, mean_active=8, correlation=0.8, seed=0))
    _, c = data.sample(40_000, torch.Generator().manual_seed(0))
    fires = (c > 0).float()
    assert torch.allclose(fires.mean(0), data.probs, atol=0.015), "correlation must not change each p_i (Gaussian copula)"
    corr = torch.corrcoef(fires.T)
    off = corr[~torch.eye(64, dtype=torch.bool)]
    assert off.abs().mean() > 0.05, "with correlation=0.8 features sharing factors should fire together"
    indep = SyntheticActivations(SyntheticConfig(n_features=64, d=32, decay=0.97, mean_active=8, seed=0))
    f2 = (indep.sample(40_000, torch.Generator().manual_seed(0))[1] > 0).float()
    off2 = torch.corrcoef(f2.T)[~torch.eye(64, dtype=torch.bool)]
    assert off2.abs().mean() < off.abs().mean() / 3


def test_batches_iterator():
    data = SyntheticActivations(SyntheticConfig(n_features=16, d=8))
    batches = list(data.batches(10, seed=0, n_batches=3))
    assert len(batches) == 3 and batches[0].shape == (10, 8)
    again = list(data.batches(10, seed=0, n_batches=3))
    assert all(torch.equal(x, y) for x, y in zip(batches, again)), "batches must be deterministic from the seed"


def test_mmcs_hand_computed():
    true = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # a decoder with feature 0 exactly (scaled), and a row at 45 degrees: cos = 1 and 1/sqrt(2)
    dec = torch.tensor([[3.0, 0.0], [1.0, -1.0], [-1.0, 1.0]])
    assert torch.allclose(max_cosine(dec, true), torch.tensor([1.0, 1 / math.sqrt(2)]))
    assert math.isclose(mmcs(dec, true), (1 + 1 / math.sqrt(2)) / 2, rel_tol=1e-6)


def test_mmcs_invariances():
    data = SyntheticActivations(SyntheticConfig(n_features=50, d=20))
    D = data.dictionary
    perm = D[torch.randperm(50)] * torch.rand(50, 1).add(0.5)
    extra = torch.cat([perm, torch.randn(30, 20)])
    assert mmcs(extra, D) > 0.9999, "permuting, rescaling or adding rows must not lower MMCS below 1"
    assert mmcs(torch.randn(50, 20), D) < 0.8, "a random decoder should score well below 1"
    with pytest.raises(ValueError, match="W_dec"):
        mmcs(torch.randn(20, 50), D)


def test_superposition_appears_as_features_get_sparse():
    torch.manual_seed(0)
    cfg = ToyModelConfig(n_features=20, d_hidden=5, feature_probability=(1.0, 0.1, 0.03), importance_decay=0.7)
    model = ToyModel(cfg, generator=torch.Generator().manual_seed(0))
    losses = train_toy_model(model, n_steps=1500, batch_size=512, lr=3e-3, seed=0)
    assert losses[-1] < losses[0]
    stored = features_stored(model).tolist()
    dims = dimensions_per_feature(model).tolist()
    assert dims[0] > 0.9, (
        f"dense features (p=1) should be stored one per dimension, orthogonally (dims/feature≈1), got {dims[0]:.2f}"
    )
    assert stored[1] > cfg.d_hidden + 2 and stored[2] > cfg.d_hidden + 2, (
        f"sparse features should be stored in superposition (more than d_hidden={cfg.d_hidden}), got {stored}"
    )
    assert dims[2] < 0.65, f"at p=0.03 several features should share each dimension, got {dims[2]:.2f} dims/feature"
    inter = superposition(model)
    assert inter[2].sum() > inter[0].sum(), "sparse instances should have more interference between features"


def test_linear_model_never_superposes():
    cfg = ToyModelConfig(n_features=20, d_hidden=5, feature_probability=(0.03,), linear=True)
    model = ToyModel(cfg, generator=torch.Generator().manual_seed(0))
    train_toy_model(model, n_steps=800, batch_size=512, lr=3e-3, seed=0)
    assert features_stored(model).item() <= cfg.d_hidden, "without the ReLU, interference cannot be filtered out"


def test_the_task_does_not_share_its_random_stream_with_a_seeded_sae():
    """The dictionary is randn(n, d) normalised, as an SAE's decoder: drawn from the same seed it
    *was* the SAE's initial decoder (MMCS 1.0 before training). A fresh SAE of any small seed must
    start far from every task instance's answer (random directions in 128 dimensions: ~0.28)."""
    from sae.autoencoder import SAEConfig, SparseAutoencoder

    for task in range(5):
        data = SyntheticActivations(SyntheticConfig(n_features=512, d=128, seed=task))
        for seed in range(5):
            sae = SparseAutoencoder(SAEConfig(d_in=128, d_sae=1024), generator=torch.Generator().manual_seed(seed))
            assert mmcs(sae.W_dec, data.dictionary) < 0.35, f"SAE seed {seed} starts at task {task}'s answer"


def test_bounded_magnitudes_and_the_default_unchanged():
    base = SyntheticConfig(n_features=64, d=32, power=0.7, mean_active=6, seed=2)
    _, c = SyntheticActivations(base).sample(4000, torch.Generator().manual_seed(0))
    _, c_default = SyntheticActivations(SyntheticConfig(**{**base.__dict__, "magnitude": (0.0, 1.0)})).sample(
        4000, torch.Generator().manual_seed(0))
    assert torch.equal(c, c_default), "magnitude (0, 1) must be the task as it was, bit for bit"
    _, cb = SyntheticActivations(SyntheticConfig(**{**base.__dict__, "magnitude": (0.5, 1.5)})).sample(
        4000, torch.Generator().manual_seed(0))
    assert torch.equal(cb > 0, c > 0), "the magnitude range must not change which features fire"
    nz = cb[cb > 0]
    assert nz.min() >= 0.5 and nz.max() <= 1.5 and abs(nz.mean().item() - 1.0) < 0.02
    with pytest.raises(ValueError, match="0 <= lo <= hi"):
        SyntheticActivations(SyntheticConfig(magnitude=(1.0, -1.0)))


def test_hierarchy_children_fire_only_with_their_parent_and_one_at_a_time():
    cfg = SyntheticConfig(n_features=128, d=32, power=0.7, mean_active=8, n_parents=6, n_children=3,
                          child_rate=0.6, seed=1)
    data = SyntheticActivations(cfg)
    _, c = data.sample(60_000, torch.Generator().manual_seed(0))
    fires = c > 0
    kids = fires[:, 6:24].view(-1, 6, 3)
    assert not (kids.any(2) & ~fires[:, :6]).any(), "a child fired without its parent"
    assert (kids.sum(2) <= 1).all(), "a parent's children exclude each other"
    rate = kids.any(2)[fires[:, :6]].float().mean().item()
    assert abs(rate - 0.6) < 0.02, f"P(a child | parent) should be child_rate 0.6, got {rate:.3f}"
    assert torch.allclose(fires.float().mean(0), data.probs, atol=0.01), "probs must be each feature's marginal"
    assert data.parents[6:24].tolist() == [q for q in range(6) for _ in range(3)] and (data.parents[24:] == -1).all()
    with pytest.raises(ValueError, match="n_features"):
        SyntheticActivations(SyntheticConfig(n_features=10, d=8, n_parents=4, n_children=4))
