"""Steering: the splice is a no-op until a feature is edited, edits act exactly on that feature."""

import pytest
import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.gpt import GPT, GPTConfig
from sae.steering.clamp import add_direction, clamp_features, parse_value

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


def test_adding_no_direction_leaves_the_model_unchanged(small):
    model, sae, tokens = small
    with torch.no_grad():
        plain = model(tokens)
        with add_direction(model, sae, {}), clamp_features(model, sae, {}):
            assert torch.equal(model(tokens), plain)


def test_steer_samples_past_the_context_slide_and_a_prompt_only_clamp_says_how_many_tokens_fit(small):
    from sae.steering.clamp import steer_samples

    model, sae, _ = small

    class Tok:
        eot_token = 0

        def encode(self, text):
            return [1, 2, 3]

    n_ctx = model.cfg.n_ctx
    ids, ((plain, steered),) = steer_samples(model, sae, Tok(), "x", 3, 2.0, n=1, max_new_tokens=n_ctx + 4)
    assert ids == [0, 1, 2, 3] and len(plain) == len(steered) == n_ctx + 4
    with pytest.raises(ValueError, match=f"fewer than {n_ctx} new tokens"):
        steer_samples(model, sae, Tok(), "x", 3, 2.0, n=1, max_new_tokens=n_ctx, prompt_only=True)


def test_unknown_feature_is_a_clear_error(small):
    model, sae, _ = small
    with pytest.raises(ValueError, match="features 0..127"):
        with clamp_features(model, sae, clamp={500: 1.0}):
            pass
