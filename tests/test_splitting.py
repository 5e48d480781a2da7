"""Feature splitting: linking features across dictionary sizes by decoder cosine."""

import numpy as np
import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.evaluation.splitting import parents, train_dictionaries
from sae.gpt import GPT, GPTConfig


def test_parents_find_the_nearest_smaller_feature():
    torch.manual_seed(0)
    small = SparseAutoencoder(SAEConfig(d_in=32, d_sae=8))
    large = SparseAutoencoder(SAEConfig(d_in=32, d_sae=24))
    # each large feature is a small feature, slightly perturbed (a "child")
    truth = torch.arange(24) % 8
    with torch.no_grad():
        large.W_dec.copy_(small.W_dec[truth] * 3.0 + 0.05 * torch.randn(24, 32))
    idx, cos = parents(small, large)
    assert torch.equal(idx, truth), "each child should link to the feature it was made from"
    assert (cos > 0.9).all() and (cos <= 1.0 + 1e-6).all(), "cosine ignores the decoder norm"


def test_train_dictionaries_rewrites_a_cache_cut_short_before_its_header(tmp_path):
    """Resumable means a run killed while writing `acts.npy` (data there, no header yet) starts that
    cache again, instead of stopping at "incomplete activation cache"."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=32, n_head=2, d_mlp=64, n_ctx=16, vocab_size=97))
    tokens = np.random.default_rng(0).integers(0, 97, size=16 * 40).astype(np.int32)
    np.save(tmp_path / "acts.npy", np.zeros((10, 64), dtype=np.float32))  # the data of a killed write
    paths = train_dictionaries(model, tokens, "blocks.0.mlp.hook_post", tmp_path, sizes=(16,), n_tokens=300,
                               batch_size=64)
    assert paths[16].exists() and np.load(tmp_path / "acts.npy", mmap_mode="r").shape == (300, 64)
