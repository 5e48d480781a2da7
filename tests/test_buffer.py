"""The activation buffer serves real, shuffled, non-repeated activations; the cache is safe."""

import numpy as np
import pytest
import torch

from sae.buffer import ActivationBuffer, CachedActivations, harvest, model_fingerprint, write_cache
from sae.gpt import GPT, GPTConfig

SITE = "blocks.0.mlp.hook_post"


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=32, n_head=2, d_mlp=64, n_ctx=16, vocab_size=97))
    tokens = np.random.default_rng(0).integers(0, 97, size=16 * 40).astype(np.int32)
    return model, tokens


def _dist(x, rows):
    """Max-abs distance from each row of x to its nearest row of `rows` (exact, unlike cdist)."""
    return (x[:, None, :] - rows[None, :, :]).abs().amax(dim=-1).min(dim=1).values


def _all_rows(model, tokens, drop_first=1):
    ctx = torch.from_numpy(tokens.astype(np.int64)).view(-1, model.cfg.n_ctx)
    return harvest(model, ctx, SITE, drop_first=drop_first)


def test_served_rows_are_real_activations_and_never_position_zero(small):
    model, tokens = small
    real = _all_rows(model, tokens)  # every (context, position >= 1) activation
    pos0 = _all_rows(model, tokens, drop_first=0).view(-1, 16, 64)[:, 0]
    buf = ActivationBuffer(model, tokens, SITE, buffer_tokens=256, batch_size=32, model_batch=4)
    for _ in range(20):
        x = buf.next_batch()
        assert (_dist(x, real) < 1e-6).all(), "a served row is not an activation of the site for any (context, position)"
        assert (_dist(x, pos0) > 1e-4).all(), "position 0 must be dropped"
    # and the same thing checked against run_with_cache directly, for one context
    _, cache = model.run_with_cache(torch.from_numpy(tokens[:16].astype(np.int64))[None], [SITE])
    assert torch.allclose(cache[SITE][0, 1:], real[:15], atol=1e-6)


def test_no_row_served_twice_between_refills(small):
    model, tokens = small
    buf = ActivationBuffer(model, tokens, SITE, buffer_tokens=256, batch_size=32, model_batch=4)
    served = []
    refills = buf.refills
    while buf.refills == refills:
        idx_before = buf.pos
        buf.next_batch()
        if buf.refills != refills:
            break
        served.append(buf.perm[idx_before:buf.pos])
    ids = torch.cat(served)
    assert len(ids) == len(set(ids.tolist())), "a buffer row was served twice before the refill"
    assert len(ids) <= 128, "the buffer must refill once half of it has been served"


def test_batches_mix_many_contexts(small):
    model, tokens = small
    buf = ActivationBuffer(model, tokens, SITE, buffer_tokens=480, batch_size=60, model_batch=8)
    real = _all_rows(model, tokens).view(-1, 15, 64)
    x = buf.next_batch()
    ctx_of_row = torch.cdist(x, real.reshape(-1, 64)).argmin(dim=1) // 15
    assert len(set(ctx_of_row.tolist())) >= 15, "a shuffled batch should draw rows from many contexts"


def test_scale_makes_mean_norm_sqrt_d(small):
    model, tokens = small
    buf = ActivationBuffer(model, tokens, SITE, buffer_tokens=512, batch_size=64, model_batch=8)
    s = buf.estimate_scale()
    norms = torch.cat([buf.next_batch() for _ in range(8)]).norm(dim=1) * s
    assert abs(norms.mean().item() / 64 ** 0.5 - 1) < 0.02


def test_cache_round_trip_and_mismatch(small, tmp_path):
    model, tokens = small
    path = write_cache(tmp_path / "acts.npy", model, tokens, SITE, n_tokens=300, model_batch=4, log=False)
    cache = CachedActivations(path, model, SITE, batch_size=50)
    real = _all_rows(model, tokens)
    x = next(iter(cache))
    assert x.shape == (50, 64)
    assert (_dist(x, real) < 1e-6).all(), "cached rows must be the model's activations"
    other = GPT(GPTConfig(n_layer=1, d_model=32, n_head=2, d_mlp=64, n_ctx=16, vocab_size=97))
    assert model_fingerprint(other) != model_fingerprint(model)
    with pytest.raises(ValueError, match="not model"):
        CachedActivations(path, other, SITE)
    with pytest.raises(ValueError, match="site"):
        CachedActivations(path, model, "blocks.0.hook_resid_post")
    with pytest.raises(FileNotFoundError, match="write_cache"):
        CachedActivations(tmp_path / "none.npy", model, SITE)


def test_a_crash_between_a_caches_data_and_its_header_leaves_no_header_that_lies(small, tmp_path, monkeypatch):
    """Rewriting a cache for another model and crashing after the data file is in place but before
    the header: the old header must not stay beside the new data (either model would then read
    rows it did not make), so the cache is refused until it is written again."""
    import sae.buffer

    model, tokens = small
    path = write_cache(tmp_path / "acts.npy", model, tokens, SITE, n_tokens=300, model_batch=4, log=False)
    other = GPT(GPTConfig(n_layer=1, d_model=32, n_head=2, d_mlp=64, n_ctx=16, vocab_size=97))

    def crash(*_, **__):
        raise KeyboardInterrupt("killed between the data and its header")

    with monkeypatch.context() as m:
        m.setattr(sae.buffer, "atomic_write_json", crash)
        with pytest.raises(KeyboardInterrupt):
            write_cache(path, other, tokens, SITE, n_tokens=200, model_batch=4, log=False)
    assert np.load(path, mmap_mode="r").shape[0] == 200, "the crash must come after the new data is in place"
    for m in (model, other):
        with pytest.raises(FileNotFoundError, match="incomplete activation cache"):
            CachedActivations(path, m, SITE)
    write_cache(path, other, tokens, SITE, n_tokens=200, model_batch=4, log=False)
    assert next(iter(CachedActivations(path, other, SITE, batch_size=50))).shape == (50, 64)


def test_bad_arguments(small):
    model, tokens = small
    with pytest.raises(ValueError, match="valid sites"):
        ActivationBuffer(model, tokens, "blocks.0.mlp.neurons")
    with pytest.raises(ValueError, match="half"):
        ActivationBuffer(model, tokens, SITE, buffer_tokens=100, batch_size=80)
