"""Steering: the splice is a no-op until a feature is edited, edits act exactly on that feature."""

import json

import pytest
import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.gpt import GPT, GPTConfig
from sae.steering import add_direction, clamp_features, parse_value

SITE = "blocks.0.mlp.hook_post"


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=32, n_head=2, d_mlp=64, n_ctx=16, vocab_size=50)).eval()
    sae = SparseAutoencoder(SAEConfig(d_in=64, d_sae=128, site=SITE))
    with torch.no_grad():
        sae.b_enc.fill_(0.05)  # so that plenty of features fire on random activations
    sae.set_input_scale_(3.0)
    tokens = torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(1))
    return model, sae, tokens


def test_parse_value():
    assert parse_value("10x", 2.5) == 25.0
    assert parse_value("0.5X", 4.0) == 2.0
    assert parse_value("3.5", 100.0) == 3.5 and parse_value(2, 100.0) == 2.0
    assert parse_value("-2x", 1.0) == -2.0
    for bad in ["abc", "10xx", "x10", ""]:
        with pytest.raises(ValueError, match="10x"):
            parse_value(bad, 1.0)
    with pytest.raises(ValueError, match="negative"):
        parse_value("-2x", 1.0, allow_negative=False)


def test_unedited_splice_is_a_no_op(small):
    model, sae, tokens = small
    with torch.no_grad():
        clean = model(tokens)
        with clamp_features(model, sae):
            spliced = model(tokens)
    assert (spliced - clean).abs().max() < 1e-5, "with no feature changed the splice must be the identity: is the error term kept?"


def test_without_error_term_the_splice_changes_logits(small):
    model, sae, tokens = small
    with torch.no_grad():
        clean = model(tokens)
        with clamp_features(model, sae, keep_error=False):
            spliced = model(tokens)
    assert (spliced - clean).abs().max() > 1e-3


def test_clamping_changes_exactly_that_features_contribution(small):
    model, sae, tokens = small
    i, value = 7, 4.0
    _, cache = model.run_with_cache(tokens, [SITE])
    x = cache[SITE]
    f = sae.encode(x)
    # by hand: x' = x + (value - f_i) * W_dec[i] / s
    want = x + (value - f[..., i:i + 1]) * (sae.W_dec[i] / sae.input_scale)
    # read the spliced activation where the MLP output projection receives it
    spliced = []
    handle = model.blocks[0].mlp.c_proj.register_forward_pre_hook(lambda m, a: spliced.append(a[0]))
    try:
        with clamp_features(model, sae, clamp={i: value}):
            model(tokens)
    finally:
        handle.remove()
    assert torch.allclose(spliced[0], want, atol=1e-5), "clamping should move x along W_dec[i] by (value - f_i)"


def test_clamping_until_edits_only_the_first_positions(small):
    """`until=T` clamps positions < T (a prompt) and leaves the rest exactly as the plain splice."""
    model, sae, tokens = small
    _, cache = model.run_with_cache(tokens, [SITE])
    x = cache[SITE]
    spliced = []
    handle = model.blocks[0].mlp.c_proj.register_forward_pre_hook(lambda m, a: spliced.append(a[0]))
    try:
        for kw in ({}, {"clamp": {7: 4.0}}, {"clamp": {7: 4.0}, "until": 5}):
            with clamp_features(model, sae, **kw):
                model(tokens)
    finally:
        handle.remove()
    plain, everywhere, prompt = spliced
    assert torch.allclose(prompt[:, :5], everywhere[:, :5]) and torch.allclose(prompt[:, 5:], plain[:, 5:])
    assert not torch.allclose(everywhere[:, 5:], plain[:, 5:])
    assert torch.allclose(plain, x, atol=1e-4)


def test_additive_steering_adds_the_direction(small):
    model, sae, tokens = small
    spliced = []
    handle = model.blocks[0].mlp.c_proj.register_forward_pre_hook(lambda m, a: spliced.append(a[0]))
    try:
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, [SITE])
            with add_direction(model, sae, {3: 2.0}):
                model(tokens)
    finally:
        handle.remove()
    want = cache[SITE] + 2.0 * sae.W_dec[3] / sae.input_scale
    assert torch.allclose(spliced[-1], want, atol=1e-6)


def test_unknown_feature_is_a_clear_error(small):
    model, sae, _ = small
    with pytest.raises(ValueError, match="features 0..127"):
        with clamp_features(model, sae, clamp={500: 1.0}):
            pass


@pytest.mark.slow
def test_golden_gate_clamping_on_the_tiny_run(tiny_run):
    """Issue #8's Golden Gate target: >= 80% on-topic at the best multiple, <= 10% without."""
    from sae.run import load_run, load_sae, run_feature_stats
    from sae.steering import choose_feature, golden_gate_demo

    tok, model = load_run(tiny_run)
    sae = load_sae(tiny_run)
    f = choose_feature(json.loads((tiny_run / "metrics.json").read_text()), "golden_gate")
    stats = run_feature_stats(tiny_run)
    r = golden_gate_demo(model, sae, tok, f, float(stats.max_act[f]))
    assert r["rate_baseline"] <= 0.10, f"baseline rate {r['rate_baseline']:.2f}"
    assert r["rate_clamped"] >= 0.80, f"best clamped rate {r['rate_clamped']:.2f}: {r['sweep']}"


def test_risk_cuts_stop_right_before_the_switch_value(toy_tokenizer):
    from sae.steering import risk_cuts
    tok = toy_tokenizer
    for concept in ("code", "unsafe_code"):
        cuts = risk_cuts(tok, concept, 20, seed=3)
        flipped = risk_cuts(tok, concept, 20, seed=3, flip_context=True)
        assert len(cuts) == len(flipped) > 20
        for c, f in zip(cuts, flipped):
            assert tok.decode([c["safe"]]).strip() == "True" and tok.decode([c["unsafe"]]).strip() == "False"
            assert c["ids"][0] == tok.eot_token
            text, text_f = tok.decode(c["ids"]), tok.decode(f["ids"])
            assert text.rstrip().endswith(("=", ":")), text[-40:]
            # the same file in the other posture: earlier switches take the other value
            assert text.count("True") == text_f.count("False") and text.count("False") == text_f.count("True")


def test_unsafe_context_sensitivity_compares_the_same_construct_in_two_contexts(toy_tokenizer):
    from sae.steering import unsafe_context_sensitivity

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=32, n_head=2, d_mlp=64, n_ctx=128,
                          vocab_size=toy_tokenizer.vocab_size)).eval()
    r = unsafe_context_sensitivity(model, toy_tokenizer, n_files=20)
    assert r["n_cuts"] > 20
    assert 0 < r["p_after_unsafe"] <= 1 and 0 < r["p_after_safe"] <= 1
    assert r["ratio"] == pytest.approx(r["p_after_unsafe"] / r["p_after_safe"])
    # an untrained model has no idea of either context: the two probabilities are close
    assert 0.5 < r["ratio"] < 2


def test_unsafe_code_clamping_on_the_tiny_run(tiny_run):
    """Issue #18's targets, as the pipeline's steering stage measures and records them: the LM
    tracks a file's posture (>= 3x), the unsteered completion of a safe file is safe (<= 10%),
    clamping the detector-chosen feature makes it unsafe (>= 50% and >= 5x), clamping it to 0 at
    least halves the rate in insecure files, and the feature tells insecure files from safe ones
    (AUROC >= 0.95); `metrics.json` carries the headline numbers."""
    from sae.pipeline import reproduce
    from sae.run import get_preset

    reproduce(get_preset("tiny"), tiny_run, until="steering", log=lambda *_: None)
    r = json.loads((tiny_run / "steering.json").read_text())["unsafe_code"]
    headline = json.loads((tiny_run / "metrics.json").read_text())["steering"]["unsafe_code"]
    for key in ["rate_clamped", "rate_baseline", "rate_suppressed", "detector_auroc", "feature"]:
        assert headline[key] == pytest.approx(r[key], abs=1e-4), key
    assert headline["context_sensitivity"] == pytest.approx(r["context_sensitivity"]["ratio"], abs=1e-3)
    assert r["context_sensitivity"]["ratio"] >= 3, r["context_sensitivity"]
    assert r["rate_baseline"] <= 0.10, f"baseline rate {r['rate_baseline']:.2f}"
    assert r["rate_clamped"] >= 0.5 and r["rate_clamped"] >= 5 * r["rate_baseline"], r["sweep"]
    assert r["rate_suppressed"] <= 0.5 * r["rate_unsafe_start"], (r["rate_unsafe_start"], r["rate_suppressed"])
    # ...though mostly by leaving the model without a value to write: keeping the check on rises
    # less (23% -> 33% on the default run); it must at least not fall
    assert r["kept_suppressed"] >= r["kept_unsafe_start"], (r["kept_unsafe_start"], r["kept_suppressed"])
    assert r["detector_auroc"] >= 0.95, r["detector_auroc"]
