"""Chapter 1's exercise: does an SAE still recover the true dictionary when features fire together?"""

from __future__ import annotations

from dataclasses import replace

import torch

from exercises import open_exercise, verdict
from sae.autoencoder import SparseAutoencoder
from sae.toy import SyntheticActivations, SyntheticConfig, mmcs

CORRELATION = 0.5


def check_correlated(sae, world: SyntheticConfig, uncorrelated: float, correlation: float = CORRELATION) -> bool | None:
    """`sae`: a ReLU SAE with the chapter's largest dictionary (2 × world.n_features features),
    trained on `SyntheticActivations(replace(world, correlation=0.5))`. Recomputes its MMCS against
    the true dictionary (correlation changes when features fire, not their directions) and compares
    it with `uncorrelated`, the chapter's MMCS for the same SAE trained on uncorrelated data."""
    if open_exercise(sae, "01_superposition"):
        return None
    if not isinstance(sae, SparseAutoencoder):
        return verdict(False, f"return the trained SparseAutoencoder, not a {type(sae).__name__}")
    want = (world.d, 2 * world.n_features)
    if (sae.cfg.d_in, sae.cfg.d_sae) != want:
        return verdict(False, f"the SAE has d_in={sae.cfg.d_in}, d_sae={sae.cfg.d_sae}; the largest dictionary of "
                              f"the chapter has d_in={want[0]}, d_sae={want[1]} (twice the true features)")
    data = SyntheticActivations(replace(world, correlation=correlation))
    x = data.sample(4096, torch.Generator().manual_seed(12345))[0]
    with torch.no_grad():
        x_hat = sae.decode(sae.encode(x))
    fvu = ((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    if fvu > 0.5:
        return verdict(False, f"the SAE reconstructs correlated activations poorly (FVU {fvu:.2f} > 0.5): "
                              "has it been trained?")
    score = mmcs(sae.W_dec, data.dictionary)
    print(f"MMCS with correlation {correlation}: {score:.4f}; without: {uncorrelated:.4f} "
          f"({score - uncorrelated:+.4f}); FVU on correlated samples {fvu:.3f}")
    return verdict(True, f"a trained {want[1]}-feature SAE: its MMCS on correlated features "
                         f"{'stays above' if score > 0.9 else 'falls below'} 0.9 ({score:.3f})")
