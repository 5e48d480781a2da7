"""Feature splitting: linking features across dictionary sizes by decoder cosine."""

import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.evaluation.splitting import parents


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
