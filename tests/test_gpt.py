"""Invariants of the tiny GPT: causality, hooks that do nothing change nothing, caches, save/load,
seeded sampling, and config errors that say how to fix them."""

import pytest
import torch
import torch.nn.functional as F

from sae.gpt import GPT, GPTConfig, HookPoint, cross_entropy

SMALL = dict(n_layer=2, d_model=32, n_head=4, d_mlp=64, n_ctx=16, vocab_size=50)


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**SMALL)).eval()


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, SMALL["vocab_size"], (3, SMALL["n_ctx"]), generator=torch.Generator().manual_seed(1))


def test_default_config_is_the_towards_monosemanticity_shape():
    cfg = GPTConfig()
    assert (cfg.n_layer, cfg.d_model, cfg.d_mlp, cfg.activation) == (1, 128, 512, "gelu")


def test_sites_are_named_per_block_in_execution_order(model):
    expected = []
    for i in range(SMALL["n_layer"]):
        expected += [
            f"blocks.{i}.hook_resid_pre",
            f"blocks.{i}.attn.hook_out",
            f"blocks.{i}.mlp.hook_in",
            f"blocks.{i}.mlp.hook_pre",
            f"blocks.{i}.mlp.hook_post",
            f"blocks.{i}.mlp.hook_out",
            f"blocks.{i}.hook_resid_post",
        ]
    assert model.sites == expected
    assert all(isinstance(model.get_submodule(s), HookPoint) for s in model.sites)


def test_logits_shape(model, tokens):
    assert model(tokens).shape == (3, SMALL["n_ctx"], SMALL["vocab_size"])


def test_causal_future_tokens_do_not_change_earlier_logits(model, tokens):
    t = 7
    changed = tokens.clone()
    changed[:, t:] = (changed[:, t:] + 1) % SMALL["vocab_size"]
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert torch.allclose(a[:, :t], b[:, :t], atol=1e-6), (
        "logits before position t changed when only tokens at >= t changed: the attention is not causal "
        "(is is_causal=True / the triangular mask applied?)"
    )
    assert not torch.allclose(a[:, t:], b[:, t:]), "logits at the changed positions should change"


def test_identity_hooks_leave_logits_bit_identical(model, tokens):
    with torch.no_grad():
        clean = model(tokens)
        with model.hooks({site: (lambda act: act) for site in model.sites}):
            hooked = model(tokens)
        with model.hooks({site: (lambda act: None) for site in model.sites}):
            read_only = model(tokens)
    assert torch.equal(clean, hooked), "a hook returning its input unchanged must not change the logits at all"
    assert torch.equal(clean, read_only), "a hook returning None must keep the activation"


def test_replacing_hook_changes_logits_and_is_removed_afterwards(model, tokens):
    with torch.no_grad():
        clean = model(tokens)
        with model.hooks({"blocks.0.mlp.hook_post": lambda act: torch.zeros_like(act)}):
            ablated = model(tokens)
        after = model(tokens)
    assert not torch.allclose(clean, ablated), "zero-ablating the MLP neurons should change the logits"
    assert torch.equal(clean, after), "hooks must be removed when the `with` block ends"


def test_hooks_are_removed_when_an_exception_escapes(model, tokens):
    with torch.no_grad():
        clean = model(tokens)
        with pytest.raises(RuntimeError, match="boom"):
            with model.hooks({"blocks.1.hook_resid_post": lambda act: act * 0}):
                raise RuntimeError("boom")
        assert torch.equal(model(tokens), clean), "a hook survived an exception: remove handles in `finally`"
    assert all(len(model.get_submodule(s)._forward_hooks) == 0 for s in model.sites)


def test_replacing_hook_must_keep_the_shape(model, tokens):
    with pytest.raises(ValueError, match="keep the shape"):
        with model.hooks({"blocks.0.mlp.hook_post": lambda act: act[..., :3]}):
            model(tokens)


def test_run_with_cache_shapes_and_values(model, tokens):
    B, T = tokens.shape
    d, m = SMALL["d_model"], SMALL["d_mlp"]
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    assert torch.equal(logits, model(tokens)), "caching must not change the logits"
    assert set(cache) == set(model.sites)
    for site, act in cache.items():
        expected = (B, T, m) if site.endswith("mlp.hook_pre") or site.endswith("mlp.hook_post") else (B, T, d)
        assert act.shape == expected, f"{site}: expected {expected}, got {tuple(act.shape)}"
    assert torch.equal(cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_pre"])
    assert torch.allclose(cache["blocks.0.mlp.hook_post"], F.gelu(cache["blocks.0.mlp.hook_pre"])), (
        "hook_post should be the GELU of hook_pre: are the two hooks on either side of the nonlinearity?"
    )
    assert (cache["blocks.0.mlp.hook_post"] >= -0.2).all(), "GELU outputs are never below about -0.17"
    block = model.blocks[0]  # the MLP's input and output: what a transcoder reads and predicts
    mid = cache["blocks.0.hook_resid_pre"] + cache["blocks.0.attn.hook_out"]
    assert torch.equal(cache["blocks.0.mlp.hook_in"], block.ln_2(mid))
    assert torch.equal(cache["blocks.0.hook_resid_post"], mid + cache["blocks.0.mlp.hook_out"])


def test_run_with_cache_stop_at_gives_the_same_activation_and_no_logits(model, tokens):
    site = "blocks.0.mlp.hook_post"
    with torch.no_grad():
        _, full = model.run_with_cache(tokens, [site])
        logits, early = model.run_with_cache(tokens, [site], stop_at=site)
        assert logits is None
        assert torch.equal(full[site], early[site])
        with pytest.raises(ValueError, match="never be cached"):
            model.run_with_cache(tokens, ["blocks.1.hook_resid_post"], stop_at=site)
        model(tokens)  # the stop hook must be gone
    assert all(len(model.get_submodule(s)._forward_hooks) == 0 for s in model.sites)


def test_cache_sees_a_replaced_activation_from_an_enclosing_hook(model, tokens):
    site = "blocks.0.mlp.hook_post"
    with torch.no_grad(), model.hooks({site: lambda act: act * 0}):
        _, cache = model.run_with_cache(tokens, [site])
    assert (cache[site] == 0).all()


@pytest.mark.parametrize("site", [f"blocks.{i}.{name}" for i in range(SMALL["n_layer"]) for name in
                                  ("hook_resid_pre", "attn.hook_out", "mlp.hook_in", "mlp.hook_pre", "mlp.hook_post",
                                   "mlp.hook_out", "hook_resid_post")])
def test_forward_from_a_site_equals_the_forward_pass_with_a_replacing_hook(model, tokens, site):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, [site, *model.resume_sites(site)], stop_at=site)
        act = cache[site] + torch.randn(cache[site].shape, generator=torch.Generator().manual_seed(2))
        with model.hooks({site: lambda a: act}):
            expected = model(tokens)
        assert torch.equal(model.forward_from(site, act, cache), expected)  # the same operations: the same bits
        assert torch.equal(model.forward_from(site, act, cache, positions=slice(1, -1)), expected[:, 1:-1])
        buffer = torch.full_like(expected[:, 1:-1], float("nan"))  # written into, the same bits
        assert model.forward_from(site, act, cache, positions=slice(1, -1), out=buffer) is buffer
        assert torch.equal(buffer, expected[:, 1:-1])
        with pytest.raises(ValueError, match="pass a buffer of that shape"):
            model.forward_from(site, act, cache, out=buffer)  # all positions: the wrong shape
        assert torch.equal(model.forward_from(site, cache[site], cache), model(tokens))
        later = f"blocks.{SMALL['n_layer'] - 1}.hook_resid_post"
        if later != site:  # hooks at later sites still apply
            with model.hooks({later: torch.zeros_like}):
                zeros = torch.zeros(*tokens.shape, SMALL["d_model"])
                assert torch.equal(model.forward_from(site, act, cache), model.lm_head(model.ln_f(zeros)))


def test_forward_from_says_which_activations_it_needs(model, tokens):
    site = "blocks.1.mlp.hook_post"
    assert model.resume_sites(site) == ["blocks.1.hook_resid_pre", "blocks.1.attn.hook_out"]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, [site], stop_at=site)
    with pytest.raises(ValueError, match=r"run_with_cache\(tokens, \['blocks.1.hook_resid_pre'"):
        model.forward_from(site, cache[site], cache)
    with pytest.raises(ValueError, match="valid sites"):
        model.resume_sites("blocks.1.mlp.hook_psot")


def test_unknown_site_lists_the_valid_ones(model, tokens):
    with pytest.raises(ValueError) as err:
        model.run_with_cache(tokens, ["blocks.0.mlp.hook_pots"])
    assert "blocks.0.mlp.hook_post" in str(err.value) and "blocks.1.hook_resid_pre" in str(err.value)
    with pytest.raises(ValueError, match="valid sites"):
        with model.hooks({"blocks.7.hook_resid_pre": lambda a: a}):
            pass


def test_save_load_round_trip(model, tokens, tmp_path):
    path = model.save(tmp_path / "lm.pt")
    ckpt = torch.load(path, weights_only=True)  # must load without unpickling arbitrary objects
    assert set(ckpt) == {"config", "state_dict"} and ckpt["config"] == dict(SMALL, activation="gelu")
    loaded = GPT.load(path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))
    assert loaded.sites == model.sites


def test_generate_is_deterministic_per_seed_and_leaves_global_rng_alone(model):
    prompt = [1, 2, 3]
    state = torch.get_rng_state()
    a = model.generate(prompt, 20, seed=0)
    assert torch.equal(torch.get_rng_state(), state), "generate should use its own generator"
    b = model.generate(prompt, 20, seed=0)
    c = model.generate(prompt, 20, seed=1)
    assert a.shape == (23,) and a[:3].tolist() == prompt
    assert torch.equal(a, b), "the same seed must give the same continuation"
    assert not torch.equal(a, c), "different seeds should give different samples"
    batch = model.generate(torch.tensor([prompt, prompt]), 5, temperature=0)
    assert batch.shape == (2, 8) and torch.equal(batch[0], batch[1]), "greedy decoding is deterministic"
    long = model.generate(list(range(30)), 3, top_k=1)  # a prompt longer than n_ctx is cropped
    assert long.shape == (33,)


def test_generate_under_a_steering_hook(model):
    # Overwrite the last residual stream with the unembedding direction of token 7: greedy decoding
    # must then produce only 7s, which shows the hook runs at every generation step.
    direction = model.lm_head.weight[7].detach() * 100
    site = f"blocks.{SMALL['n_layer'] - 1}.hook_resid_post"
    with model.hooks({site: lambda act: direction.expand_as(act)}):
        steered = model.generate([1, 2, 3], 10, temperature=0)
    assert steered[3:].tolist() == [7] * 10
    assert model.generate([1, 2, 3], 10, temperature=0)[3:].tolist() != [7] * 10


def test_forward_rejects_sequences_longer_than_the_context(model):
    with pytest.raises(ValueError, match="n_ctx"):
        model(torch.zeros(1, SMALL["n_ctx"] + 1, dtype=torch.long))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(d_model=30, n_head=4), "not divisible by n_head"),
        (dict(activation="tanh"), "'gelu' or 'relu'"),
        (dict(n_layer=0), "positive integer"),
        (dict(vocab_size=-5), "positive integer"),
    ],
)
def test_config_validation_names_the_fix(change, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**dict(SMALL, **change))


def test_relu_activation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**dict(SMALL, activation="relu")))
    _, cache = model.run_with_cache(torch.zeros(1, 4, dtype=torch.long), ["blocks.0.mlp.hook_post"])
    assert (cache["blocks.0.mlp.hook_post"] >= 0).all()


def test_cross_entropy_matches_torch(model, tokens):
    logits = model(tokens)
    ours = cross_entropy(logits[:, :-1], tokens[:, 1:])
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, SMALL["vocab_size"]), tokens[:, 1:].reshape(-1))
    assert torch.allclose(ours, ref)
    assert cross_entropy(logits[:, :-1], tokens[:, 1:], reduction="none").shape == (3, SMALL["n_ctx"] - 1)
