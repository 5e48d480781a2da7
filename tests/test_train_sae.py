"""The SAE trainer (sae/train_sae.py): resampling, schedules, checkpoints, and quality on data with a known answer."""

import itertools

import pytest
import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder, input_scale_for
from sae.world.toy import SyntheticActivations, SyntheticConfig, max_cosine, mmcs
from sae.train_sae import TrainSAEConfig, l1_coeff_at, lr_at, make_optimizer, resample_dead_, train_sae

# the synthetic world of Sharkey et al.: 512 true unit directions in 256 dimensions, p_i ∝ 0.99^i, ~5 active
DATA = SyntheticActivations(SyntheticConfig(n_features=512, d=256, seed=0))


def small_stream(n_batches=None, batch=64, seed=0, d=16):
    data = SyntheticActivations(SyntheticConfig(n_features=32, d=d, mean_active=3, seed=1))
    return data.batches(batch, seed=seed, n_batches=n_batches)


def small_sae(arch="relu", **kw):
    return SparseAutoencoder(SAEConfig(d_in=16, d_sae=48, arch=arch, k=4, **kw), generator=torch.Generator().manual_seed(0))


def test_schedules():
    cfg = TrainSAEConfig(n_steps=100, lr=1.0, l1_coeff=2.0, l1_warmup_frac=0.1, lr_decay_frac=0.2)
    assert l1_coeff_at(0, cfg) == pytest.approx(0.2) and l1_coeff_at(9, cfg) == 2.0, "λ warms up over 10 steps"
    assert l1_coeff_at(50, cfg) == 2.0
    assert lr_at(0, cfg) == 1.0 and lr_at(79, cfg) == 1.0, "the learning rate is constant before the last 20%"
    assert lr_at(90, cfg) == pytest.approx(0.5) and lr_at(99, cfg) == pytest.approx(0.05), "then decays linearly to 0"
    short = TrainSAEConfig(n_steps=10, lr=1.0, lr_warmup_frac=0.05)  # a warm-up of half a step
    assert lr_at(0, short) == 1.0, "a warm-up shorter than a step must not double the rate at step 0"


def test_history_and_progress_line(capsys):
    sae = small_sae()
    hist = train_sae(sae, small_stream(), TrainSAEConfig(n_steps=20, lr=1e-2, l1_coeff=0.5, log_every=10))
    assert len(hist) == 20 and hist[-1]["step"] == 20
    assert {"loss", "mse", "l1", "l0", "fvu", "dead_frac", "lr", "l1_coeff", "elapsed_s"} <= set(hist[0])
    assert hist[-1]["loss"] < hist[0]["loss"], "20 Adam steps should lower the loss"
    line = capsys.readouterr().out.splitlines()[-1]
    for word in ("step", "loss", "mse", "L0", "dead", "tok/s", "ETA"):
        assert word in line, f"the progress line should show {word}: {line!r}"


def _trained_sae_and_opt():
    sae = small_sae()
    cfg = TrainSAEConfig(n_steps=5, lr=1e-2, l1_coeff=0.5, log_every=0)
    train_sae(sae, small_stream(), cfg)
    opt = make_optimizer(sae, cfg)  # fresh optimizer with some state, so moments are non-zero
    for x in itertools.islice(small_stream(seed=5), 3):
        opt.zero_grad()
        sae(x, l1_coeff=0.5).loss.backward()
        opt.step()
    return sae, opt


def test_resampling_changes_exactly_the_dead_features_and_their_adam_moments():
    sae, opt = _trained_sae_and_opt()
    dead = torch.zeros(48, dtype=torch.bool)
    dead[[3, 10, 11, 40]] = True
    alive = ~dead
    params = {n: p.detach().clone() for n, p in sae.named_parameters()}
    moments = {n: {k: opt.state[p][k].clone() for k in ("exp_avg", "exp_avg_sq")} for n, p in sae.named_parameters()}
    sample = torch.cat(list(small_stream(n_batches=8, seed=9)))
    alive_enc_norm = sae.W_enc[:, alive].norm(dim=0).mean()

    info = resample_dead_(sae, opt, dead, sample, torch.Generator().manual_seed(0), encoder_scale=0.2)
    assert info["n_resampled"] == 4

    assert torch.equal(sae.W_dec[alive], params["W_dec"][alive]), "alive decoder rows must be untouched"
    assert torch.equal(sae.W_enc[:, alive], params["W_enc"][:, alive]), "alive encoder columns must be untouched"
    assert torch.equal(sae.b_enc[alive], params["b_enc"][alive]) and torch.equal(sae.b_dec, params["b_dec"])
    assert not torch.equal(sae.W_dec[dead], params["W_dec"][dead]), "dead decoder rows must get new directions"
    assert torch.allclose(sae.W_dec[dead].norm(dim=1), torch.ones(4), atol=1e-5), "new decoder rows are unit norm"
    enc_norms = sae.W_enc[:, dead].norm(dim=0)
    assert torch.allclose(enc_norms, 0.2 * alive_enc_norm.expand(4), rtol=1e-4), (
        "new encoder columns = direction × 0.2 × the mean norm of alive encoder columns"
    )
    cos = torch.nn.functional.cosine_similarity(sae.W_enc[:, dead].T, sae.W_dec[dead], dim=1)
    assert (cos > 0.9999).all(), "the encoder column points along the new decoder row"
    assert (sae.b_enc[dead] <= 0).all()

    rows = {"W_dec": (dead,), "W_enc": (slice(None), dead), "b_enc": (dead,), "b_dec": None}
    keep = {"W_dec": (alive,), "W_enc": (slice(None), alive), "b_enc": (alive,), "b_dec": (slice(None),)}
    for name, p in sae.named_parameters():
        for k in ("exp_avg", "exp_avg_sq"):
            now = opt.state[p][k]
            assert torch.equal(now[keep[name]], moments[name][k][keep[name]]), (
                f"Adam {k} of {name} changed outside the dead features: reset moments by parameter "
                "(opt.state[p]) and by the dead indices only"
            )
            if rows[name] is not None:
                assert (now[rows[name]] == 0).all(), f"Adam {k} of the resampled part of {name} must be zeroed"


def test_resampled_features_start_quiet():
    """Right after a resample, each new feature fires on a small fraction of inputs: with b_enc = 0 they
    fire on ~half (or, once b_dec has drifted off the data, nearly all) and hundreds at once blow the loss up."""
    sae, opt = _trained_sae_and_opt()
    dead = torch.zeros(48, dtype=torch.bool)
    dead[:20] = True
    sample = torch.cat(list(small_stream(n_batches=16, seed=9)))
    info = resample_dead_(sae, opt, dead, sample, torch.Generator().manual_seed(0), fire_frac=0.02)
    assert info["fire_frac_max"] <= 0.03, f"resampled features fire on {info['fire_frac_max']:.1%} of inputs"
    sae0, opt0 = _trained_sae_and_opt()
    loud = resample_dead_(sae0, opt0, dead, sample, torch.Generator().manual_seed(0), fire_frac=0.0)
    assert loud["fire_frac_mean"] > 0.2, "with Anthropic's b_enc = 0 they fire on a large fraction"


def test_resume_equals_uninterrupted(tmp_path):
    cfg = TrainSAEConfig(n_steps=30, lr=2e-2, l1_coeff=3.0, log_every=0, checkpoint_every=10, dead_window=4,
                         resample_steps=(8, 16, 24), resample_inputs=200, l1_warmup_frac=0.1)
    full = small_sae()
    hist_full = train_sae(full, small_stream(), cfg, checkpoint_path=tmp_path / "a.pt")
    assert any("resample" in h and h["resample"]["n_resampled"] > 0 for h in hist_full), "the test needs a resample"

    def interrupted(stream, after):
        for i, x in enumerate(stream):
            if i == after:
                raise KeyboardInterrupt
            yield x

    part = small_sae()
    with pytest.raises(KeyboardInterrupt):
        train_sae(part, interrupted(small_stream(), 30), cfg, checkpoint_path=tmp_path / "b.pt")
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 20
    resumed = small_sae()
    hist = train_sae(resumed, small_stream(), cfg, checkpoint_path=tmp_path / "b.pt", resume=True)
    for name, p in full.state_dict().items():
        assert torch.equal(p, resumed.state_dict()[name]), (
            f"{name} differs after resuming: the checkpoint must hold Adam's state, the fire counters, "
            "the resampling generator and the number of batches drawn"
        )
    strip = lambda hs: [{k: v for k, v in h.items() if k != "elapsed_s"} for h in hs]
    assert strip(hist) == strip(hist_full), "the resumed history must equal the uninterrupted one"


def test_nan_guard_keeps_last_good_checkpoint(tmp_path):
    def poisoned():
        for i, x in enumerate(small_stream()):
            yield torch.full_like(x, float("nan")) if i == 7 else x

    sae = small_sae()
    cfg = TrainSAEConfig(n_steps=20, lr=1e-2, l1_coeff=0.5, log_every=0, checkpoint_every=5, init_b_dec=False)
    with pytest.raises(FloatingPointError, match="step 7"):
        train_sae(sae, poisoned(), cfg, checkpoint_path=tmp_path / "c.pt")
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    assert ckpt["step"] == 5, "the checkpoint from before the NaN must be kept"
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())


def test_iterator_running_out_is_a_clear_error():
    with pytest.raises(ValueError, match="ran out"):
        train_sae(small_sae(), small_stream(n_batches=3), TrainSAEConfig(n_steps=10, l1_coeff=0.5, log_every=0))


def test_batch_width_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="d_in=16"):
        train_sae(small_sae(), iter([torch.randn(8, 12)] * 4), TrainSAEConfig(n_steps=2, l1_coeff=0.5, log_every=0))


# ---------------------------------------------------------------------------------------------
# Quality on synthetic data with a known dictionary (fixed seeds; a few seconds each)
# ---------------------------------------------------------------------------------------------
def _scaled_sae(arch, **kw):
    sae = SparseAutoencoder(SAEConfig(d_in=256, d_sae=1024, arch=arch, **kw), generator=torch.Generator().manual_seed(0))
    sae.set_input_scale_(input_scale_for(DATA.sample(4096, torch.Generator().manual_seed(99))[0]))
    return sae


def _recovered(sae) -> tuple[float, float]:
    """(mean best cosine over the more common half of the true features, MMCS over all of them).
    A few hundred steps see the rarest features (p ∝ 0.99^i) only a few dozen times, so the
    common half is what these short runs must get right; the rare half needs longer training."""
    best = max_cosine(sae.W_dec, DATA.dictionary)
    return best[DATA.probs >= DATA.probs.median()].mean().item(), best.mean().item()


def test_relu_sae_recovers_the_true_features():
    """The ReLU recipe: rows of norm 0.1 at the start (W_enc = W_dec.T), so features grow from
    quiet; from unit rows this run ends at MMCS 0.74 instead of 0.83 (bench_recovery: 0.45 vs 0.99)."""
    sae = _scaled_sae("relu", decoder_init_norm=0.1)
    hist = train_sae(sae, DATA.batches(256, seed=1), TrainSAEConfig(n_steps=800, lr=3e-3, l1_coeff=2.0, log_every=0))
    common, score = _recovered(sae)
    assert common >= 0.99 and score >= 0.8, (
        f"mean best cosine {common:.4f} on the common half (want >= 0.99), MMCS {score:.4f} (want >= 0.8), "
        f"L0 {hist[-1]['l0']:.1f} (true ~5): check the L1 coefficient, the input scale and that W_dec rows "
        "(not W_enc columns) are compared"
    )
    assert hist[-1]["fvu"] < 0.1


def test_topk_sae_recovers_the_true_features():
    sae = _scaled_sae("topk", k=8)
    hist = train_sae(sae, DATA.batches(512, seed=1), TrainSAEConfig(n_steps=400, lr=3e-3, log_every=0))
    common, score = _recovered(sae)
    assert common >= 0.99 and score >= 0.75, \
        f"TopK: mean best cosine {common:.4f} on the common half, MMCS {score:.4f} (FVU {hist[-1]['fvu']:.3f})"
    assert hist[-1]["l0"] <= 8


def test_resampling_cuts_dead_features_at_a_high_learning_rate():
    """lr 2e-2 on unscaled inputs (|x| ≈ 1.2, so each Adam step moves a bias by a lot) kills features in
    bursts. Without resampling, a third to half of the dictionary is dead at any time after step 100;
    resampling at steps 100, 150 and 200 brings that down several-fold, without loss spikes."""
    def run(resample_steps):
        sae = SparseAutoencoder(SAEConfig(d_in=256, d_sae=1024), generator=torch.Generator().manual_seed(0))
        cfg = TrainSAEConfig(n_steps=300, lr=2e-2, l1_coeff=0.17, dead_window=50, resample_steps=resample_steps,
                             resample_inputs=8192, log_every=0)
        return train_sae(sae, DATA.batches(256, seed=1), cfg)

    without, with_ = run(()), run((100, 150, 200))
    dead_without = sum(h["dead_frac"] for h in without[100:]) / 200
    dead_with = sum(h["dead_frac"] for h in with_[100:]) / 200
    assert dead_without > 0.1, f"the high learning rate should kill features (mean dead fraction {dead_without:.1%})"
    assert dead_with * 2.5 <= dead_without, (
        f"resampling should cut the dead fraction at least 2.5×: {dead_without:.1%} without, {dead_with:.1%} with"
    )
    for h in with_:
        if h.get("resample", {}).get("n_resampled", 0) > 0:
            before = with_[h["step"] - 2]["loss"]
            assert h["loss"] < 2 * before, (
                f"the loss jumped from {before:.3g} to {h['loss']:.3g} after resampling at step {h['step'] - 1}: "
                "check the 0.2 encoder factor, the b_dec subtraction and the new biases"
            )


def test_a_resampling_step_with_no_dead_feature_draws_no_inputs():
    """Resampling looks for dead features before it draws its inputs: with none dead, the step
    draws just its training batch (16,384 inputs were once drawn for nothing)."""
    drawn = []

    def counted(stream):
        for x in stream:
            drawn.append(len(x))
            yield x

    cfg = TrainSAEConfig(n_steps=6, log_every=0, dead_window=100, resample_steps=(3,), resample_inputs=10_000,
                         init_b_dec=False)
    hist = train_sae(small_sae(), counted(small_stream()), cfg)
    assert len(drawn) == 6, f"6 steps should draw 6 batches, drew {len(drawn)}"
    assert not any("resample" in h for h in hist)


@pytest.mark.parametrize("arch", ["relu", "topk"])
def test_bfloat16_training_matches_float32_quality_and_keeps_float32_state(arch):
    """precision="bf16" (the CUDA default) runs here under CPU autocast: the same steps, products in
    bfloat16, parameters and gradients (so Adam's state) in float32, and the same quality."""
    results = {}
    for precision in ("fp32", "bf16"):
        sae = small_sae(arch)
        cfg = TrainSAEConfig(n_steps=300, lr=3e-3, l1_coeff=0.5, log_every=0, precision=precision)
        results[precision] = train_sae(sae, small_stream(), cfg)[-1]
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in sae.parameters())
    assert results["bf16"]["fvu"] == pytest.approx(results["fp32"]["fvu"], rel=0.05, abs=0.01)
    assert results["bf16"]["l0"] == pytest.approx(results["fp32"]["l0"], rel=0.1)
    assert not torch.backends.cuda.matmul.allow_tf32, "TF32 is switched back off after the forward pass"


def test_an_unknown_precision_is_refused_when_configured():
    from sae.train_lm import TrainLMConfig

    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32"):
        TrainSAEConfig(precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32"):
        TrainLMConfig(precision="half")
