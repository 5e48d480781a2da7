"""Feature splitting (Towards Monosemanticity, "Feature Splitting"): dictionaries of growing size
trained on the same activations, and the features linked across sizes.

A concept that one feature covers in a small dictionary is often covered by several finer
features in a larger one (the paper's "San Francisco": 1 feature at 1M, 2 at 4M, 11 at 34M).
SAEs of several sizes train on *the same* cached activations (one `write_cache`: only the size
differs), and each feature of a larger dictionary is linked to its nearest feature of the next
smaller one by decoder cosine, parent(j) = argmax_i cos(W_dec_large[j], W_dec_small[i]). A
*family* is a feature of the smallest dictionary with its descendants: the features of each
larger dictionary whose chain of parents leads back to it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from sae.autoencoder import SparseAutoencoder
from sae.world.corpus import CONCEPTS
from sae.evaluation.compare import train_variants
from sae.evaluation.evaluator import evaluate_sae
from sae.plots import save_figure


def train_dictionaries(model, tokens: np.ndarray, site: str, out_dir: str | Path,
                       sizes: tuple[int, ...] = (256, 512, 1024, 2048), n_tokens: int = 1_000_000,
                       batch_size: int = 4096, l1_coeff: float = 3.0, lr: float = 3e-3,
                       seed: int = 0) -> dict[int, Path]:
    """`compare.train_variants` with one relu SAE per size as the variants, into
    `out_dir/sae_{size}.pt`; returns {size: path}."""
    variants = {f"sae_{size}": {"d_sae": size, "l1_coeff": l1_coeff} for size in sizes}
    paths = train_variants(model, tokens, site, out_dir, variants, n_tokens=n_tokens,
                           batch_size=batch_size, lr=lr, seed=seed, log_lines=5, announce=False)
    return {size: paths[f"sae_{size}"] for size in sizes}


def parents(small: SparseAutoencoder, large: SparseAutoencoder) -> tuple[torch.Tensor, torch.Tensor]:
    """For each feature of `large`: its nearest feature of `small` by decoder cosine, and the cosine."""
    a = torch.nn.functional.normalize(small.W_dec.detach(), dim=1)
    b = torch.nn.functional.normalize(large.W_dec.detach(), dim=1)
    best, idx = (b @ a.T).max(dim=1)  # over the (d_large, d_small) cosines
    return idx, best


def split_concepts(model, saes: dict[int, SparseAutoencoder], tokens: np.ndarray, labels: np.ndarray,
                   n_eval: int = 100_000, share: float = 0.5) -> dict:
    """Per size and concept: the features whose activation mass is mostly (>= `share`) on the
    concept, measured on `n_eval` held-out `tokens` with their concept `labels`; and, for each
    concept, the family of its best feature in the smallest dictionary."""
    sizes = sorted(saes)
    mass = {}
    for s in sizes:
        ev = evaluate_sae(model, saes[s], tokens, labels=labels, n_concepts=len(CONCEPTS),
                          n_tokens=n_eval, neurons=False, log=False)
        mass[s] = (*ev.features.mass_share(), ev.metrics)
    out = {"sizes": sizes, "metrics": {s: {k: mass[s][2][k] for k in ("l0", "fvu", "dead_fraction")} for s in sizes},
           "concepts": {}}
    parent = {large: parents(saes[small], saes[large])[0].tolist() for small, large in zip(sizes, sizes[1:])}
    for c, name in enumerate(CONCEPTS):
        per_size = {s: int(((mass[s][1] == c) & (mass[s][0] >= share)).sum()) for s in sizes}
        sh0, top0, _ = mass[sizes[0]]
        root = int(torch.where(top0 == c, sh0, torch.zeros_like(sh0)).argmax())
        family = {sizes[0]: [root]}
        for smaller, s in zip(sizes, sizes[1:]):
            prev = set(family[smaller])
            family[s] = [j for j, i in enumerate(parent[s]) if i in prev and mass[s][1][j] == c]
        out["concepts"][name] = {"features_per_size": per_size, "root": root,
                                 "root_share": float(sh0[root]), "family": family}
    return out


def plot_splitting(result: dict, path: str | Path) -> Path:
    """Features mostly about each concept, against dictionary size."""
    sizes = result["sizes"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in result["concepts"].items():
        ax.plot(sizes, [c["features_per_size"][s] if s in c["features_per_size"] else c["features_per_size"][str(s)]
                        for s in sizes], "o-", lw=1, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set(title="Feature splitting: features mostly about one concept", xlabel="dictionary size (features)",
           ylabel="features with >= 50% of their mass on the concept")
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)
