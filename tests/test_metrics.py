"""Each metric against a hand computation or an invariant."""

import numpy as np
import pytest
import torch

from sae import evaluation as M


def auroc_bruteforce(scores: np.ndarray, positive: np.ndarray) -> float:
    """AUROC by counting every (positive, negative) pair, ties ½: the definition, O(n²)."""
    pos, neg = scores[positive], scores[~positive]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def test_reconstruction_metrics_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x_hat = torch.tensor([[1.0, 1.0], [3.0, 5.0]])
    assert M.mse(x, x_hat) == pytest.approx((1 + 1) / 2)
    # mean = (2, 3); Σ‖x − mean‖² = (1+1) + (1+1) = 4; Σ‖x − x̂‖² = 2
    assert M.fvu(x, x_hat) == pytest.approx(0.5)
    assert M.explained_variance(x, x_hat) == pytest.approx(0.5)
    assert M.nmse(x, x_hat) == pytest.approx(2 / 30)


def test_fvu_is_zero_for_perfect_and_one_for_the_mean():
    x = torch.randn(100, 8)
    assert M.fvu(x, x) == 0
    assert M.fvu(x, x.mean(0).expand_as(x)) == pytest.approx(1.0), "predicting the mean must give FVU 1"


def test_sparsity_and_density():
    f = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    assert M.l0(f) == 1.0 and M.l1(f) == 1.5
    counts = torch.tensor([0, 5, 200_000, 1])
    s = M.density_summary(counts, 1_000_000)
    assert s["dead_fraction"] == 0.25
    assert s["ultralow_fraction"] == 0.5  # 5e-6 and 1e-6 are below 1e-5
    assert s["dense_fraction"] == 0.25  # 20% > 10%
    hist, edges = M.log_density_histogram(counts, 1_000_000)
    assert hist.sum() == 3, "dead features are not part of the log-density histogram"


def test_ce_recovered_endpoints():
    assert M.ce_recovered(2.0, 2.0, 5.0) == 1.0, "a perfect splice recovers everything"
    assert M.ce_recovered(2.0, 5.0, 5.0) == 0.0, "a splice as bad as the ablation recovers nothing"
    assert M.ce_recovered(2.0, 2.3, 5.0) == pytest.approx(0.9)


def test_histogram_auroc_matches_bruteforce_pair_count():
    rng = np.random.default_rng(0)
    n, units, concepts = 600, 5, 3
    labels = rng.integers(-1, concepts, size=n)
    acts = rng.exponential(1.0, size=(n, units)) * (rng.random((n, units)) < 0.3)  # sparse, with ties at 0
    acts[:, 0] += (labels == 1) * 2.0  # unit 0 detects concept 1
    acts[:, 4] = rng.normal(size=n)  # a dense unit with negative values (like a GELU neuron)
    h = M.ConceptHistogram(units, concepts, n_bins=4096, lo=1e-4, hi=1e2)
    h.add(torch.tensor(acts[:300], dtype=torch.float32), torch.tensor(labels[:300]))
    h.add(torch.tensor(acts[300:], dtype=torch.float32), torch.tensor(labels[300:]))
    got = h.auroc()
    for c in range(concepts):
        for j in range(units - 1):
            want = auroc_bruteforce(acts[:, j], labels == c)
            assert got[c, j].item() == pytest.approx(want, abs=2e-3), f"AUROC of unit {j} for concept {c}"
    assert got[1, 0] > 0.95
    share, top = h.mass_share()
    assert int(top[0]) == 1, "unit 0's activation mass is mostly on concept 1"


def test_best_f1_on_a_perfect_detector():
    h = M.ConceptHistogram(1, 2)
    acts = torch.tensor([[0.0], [0.0], [3.0], [3.0]])
    h.add(acts, torch.tensor([0, -1, 1, 1]))
    r = h.best_f1(1, 0)
    assert r["precision"] == 1.0 and r["recall"] == 1.0


def test_detector_definition_on_a_case_computed_by_hand():
    # one stream, two concepts; segments are runs of one label, end-of-text (-1) separates documents
    labels = torch.tensor([0, 0, -1, 0, 0, 1, 1, 0, -1, 1])
    segments = torch.from_numpy(M.label_segments(labels.numpy()))
    assert segments.tolist() == [0, 0, 1, 2, 2, 3, 3, 4, 5, 6]
    acts = torch.zeros(10, 3)
    # unit 0: concept 0 in all three of its segments (peaks 2, 1, 0.5 > 0.1·2) and 0.5 of concept 1
    #   share = 3.5 / 4 = 0.875, recall 3/3: a detector of concept 0
    acts[[0, 4, 7, 5], 0] = torch.tensor([2.0, 1.0, 0.5, 0.5])
    # unit 1: only concept 0 (share 1) but lights up in one segment of three: 0.3 < 0.1·4 does not
    #   count (recall 1/3): specific and narrow, an absorbed sub-feature, not a detector
    acts[[0, 1, 3], 1] = torch.tensor([4.0, 4.0, 0.3])
    # unit 2: both concept-1 segments (recall 2/2) but also an end-of-text token: share 2/3, not a detector
    acts[[5, 9, 2], 2] = torch.tensor([1.0, 1.0, 1.0])
    acts[6, 2] = -0.5  # negative activations carry no mass and do not light up
    hist, peaks = M.ConceptHistogram(3, 2), M.SegmentPeaks(3)
    for rows in (slice(0, 4), slice(4, 10)):  # segment 2 is cut by the batch boundary
        hist.add(acts[rows], labels[rows])
        peaks.add(acts[rows], labels[rows], segments[rows])
    d = M.Detectors.measure(hist, peaks)
    torch.testing.assert_close(d.share, torch.tensor([[0.875, 1.0, 0.0], [0.125, 0.0, 2 / 3]]))
    torch.testing.assert_close(d.recall, torch.tensor([[1.0, 1 / 3, 0.0], [0.5, 0.0, 1.0]]))
    assert d.passes().tolist() == [[True, False, False], [False, False, False]]
    assert d.best(0) == {"unit": 0, "share": 0.875, "segment_recall": 1.0, "detector": True}
    assert d.best(0, coverage=torch.tensor([0.0, 5.0, 9.0]))["unit"] == 0, "coverage ranks only the passing units"
    closest = d.best(1)  # no detector; the closest unit is the least short of both thresholds
    assert closest["unit"] == 2 and not closest["detector"]
    assert d.top_share().tolist() == pytest.approx([0.875, 1.0, 2 / 3])


def test_rank_auroc_matches_bruteforce_with_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, 400).astype(float)  # many ties
    pos = rng.random(400) < 0.3
    assert M.auroc(scores, pos) == pytest.approx(auroc_bruteforce(scores, pos), abs=1e-12)
    with pytest.raises(ValueError, match="positives and negatives"):
        M.auroc(scores, np.zeros(400, bool))


def test_mean_difference_probe_finds_a_planted_concept_and_not_noise():
    g = torch.Generator().manual_seed(0)
    n, d = 4000, 32
    labels = torch.randint(-1, 3, (n,), generator=g)  # concepts 0..2, -1: none
    noise = torch.randn(n, d, generator=g)
    x = noise.clone()
    x[labels == 0, 5] += 2.0  # concept 0 shifts one coordinate

    def fitted(x):
        probe = M.MeanDiffProbe(d, 3)
        probe.fit(x[: n // 2], labels[: n // 2])
        probe.score(x[n // 2:], labels[n // 2:])
        return probe.auroc()

    assert fitted(x)[0] > 0.9  # the planted shift: AUROC of N(2,1) vs N(0,1) is 0.92
    assert np.abs(fitted(noise) - 0.5).max() < 0.05  # nothing planted: chance, out of sample


# ----------------------------------------------------------------------------- the streaming evaluator

SITE = "blocks.0.mlp.hook_post"


def _small_model_and_tokens():
    from sae.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=32, n_head=2, d_mlp=64, n_ctx=16, vocab_size=50)).eval()
    tokens = np.random.default_rng(0).integers(0, 50, 16 * 20).astype(np.int64)
    return model, tokens


def test_an_identity_sae_has_fvu_0_and_recovers_all_the_loss():
    """f = [ReLU(x), ReLU(−x)], x̂ = ReLU(x) − ReLU(−x) = x: a perfect dictionary of 2·d_in features."""
    from sae.autoencoder import SAEConfig, SparseAutoencoder

    model, tokens = _small_model_and_tokens()
    sae = SparseAutoencoder(SAEConfig(d_in=64, d_sae=128, site=SITE))
    eye = torch.eye(64)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    m = M.evaluate_sae(model, sae, tokens, n_tokens=len(tokens), batch_contexts=3, log=False).metrics
    assert m["fvu"] == pytest.approx(0.0, abs=1e-9) and m["mse"] == pytest.approx(0.0, abs=1e-9)
    assert m["ce_recovered_zero"] == pytest.approx(1.0, abs=1e-6), "a perfect splice recovers all the loss"
    assert m["ce_recovered_mean"] == pytest.approx(1.0, abs=1e-6)
    assert m["kl"] == pytest.approx(0.0, abs=1e-6) and m["ce_added_nats"] == pytest.approx(0.0, abs=1e-6)


def test_streamed_metrics_equal_the_small_functions_on_materialised_activations():
    from sae.autoencoder import SAEConfig, SparseAutoencoder

    model, tokens = _small_model_and_tokens()
    sae = SparseAutoencoder(SAEConfig(d_in=64, d_sae=48, site=SITE), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        sae.b_enc.fill_(0.02)
        sae.set_input_scale_(3.0)
    # batches of 3 windows: the 20 windows take 7 batches, the last one short
    m = M.evaluate_sae(model, sae, tokens, n_tokens=len(tokens), batch_contexts=3, log=False).metrics
    ctx = torch.from_numpy(tokens).view(20, 16)
    with torch.no_grad():
        logits, cache = model.run_with_cache(ctx, [SITE])
        x = cache[SITE][:, 1:].reshape(-1, 64)  # position 0 is never encoded (drop_first=1)
        f = sae.encode(x)
        x_hat = sae.decode(f)
    assert m["n_tokens"] == len(x)
    for name, want in [("mse", M.mse(x, x_hat)), ("fvu", M.fvu(x, x_hat)), ("nmse", M.nmse(x, x_hat)),
                       ("explained_variance", M.explained_variance(x, x_hat)), ("l0", M.l0(f)), ("l1", M.l1(f))]:
        assert m[name] == pytest.approx(want, rel=1e-5), f"streamed {name} {m[name]} != {want} on all the tokens at once"
    fires = (f > 0).sum(0)
    assert m["dead_fraction"] == M.density_summary(fires, len(x))["dead_fraction"]
    ce_clean = torch.nn.functional.cross_entropy(logits[:, 1:-1].reshape(-1, 50), ctx[:, 2:].reshape(-1)).item()
    assert m["ce_clean"] == pytest.approx(ce_clean, rel=1e-5), "CE counts the predictions made at positions >= 1"


def test_streamed_detectors_equal_a_direct_count_on_materialised_activations():
    from sae.autoencoder import SAEConfig, SparseAutoencoder

    model, tokens = _small_model_and_tokens()
    sae = SparseAutoencoder(SAEConfig(d_in=64, d_sae=48, site=SITE), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        sae.b_enc.fill_(0.02)
    rng = np.random.default_rng(0)  # runs of 1-9 tokens of concepts 0..2 and end-of-text
    labels = np.repeat(rng.integers(-1, 3, 80), rng.integers(1, 10, 80))[: len(tokens)]
    ev = M.evaluate_sae(model, sae, tokens, labels, n_concepts=3, n_tokens=len(tokens), batch_contexts=3, log=False)
    ctx = torch.from_numpy(tokens).view(20, 16)
    with torch.no_grad():
        _, cache = model.run_with_cache(ctx, [SITE])
        f = sae.encode(cache[SITE][:, 1:].reshape(-1, 64)).numpy()
    keep = (np.arange(len(tokens)) % 16) != 0  # the rows the evaluator encodes
    lab, seg = labels[keep], M.label_segments(labels)[keep]
    for c in range(3):
        segs = np.unique(seg[lab == c])
        peaks = np.stack([f[seg == s].max(0) for s in segs])
        recall = (peaks > M.DETECTOR_FIRE * f.max(0)).mean(0)
        share = np.maximum(f[lab == c], 0).sum(0) / np.maximum(np.maximum(f, 0).sum(0), 1e-12)
        np.testing.assert_allclose(ev.feature_detectors.recall[c].numpy(), recall, atol=1e-6)
        np.testing.assert_allclose(ev.feature_detectors.share[c].numpy(), share, rtol=1e-5, atol=1e-7)
