"""The figures a reader of a run wants, written as PNG files under `runs/NAME/figures/`.

Each function takes plain data (histories, metrics dicts, counts) and a path, draws one figure
with a title and labelled axes (units included), saves it and closes it. No backend is forced:
without a display matplotlib falls back to its file-only Agg backend, and in a notebook the
figures a chapter draws itself still show inline.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(lm_history: list[dict], sae_history: list[dict], path: str | Path) -> Path:
    """LM loss, SAE reconstruction error, L0 and dead fraction against training step."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    ax = axes[0]
    ax.plot([h["step"] for h in lm_history], [h["loss"] for h in lm_history], lw=0.6, label="train batch")
    ev = [h for h in lm_history if "val_loss" in h]
    ax.plot([h["step"] for h in ev], [h["val_loss"] for h in ev], "o-", label="validation")
    ax.set(title="Language model", xlabel="step", ylabel="cross-entropy (nats/token)")
    ax.legend()
    steps = [h["step"] for h in sae_history]
    resamples = [h["step"] for h in sae_history if h.get("resample", {}).get("n_resampled")]
    for ax, key, title, ylabel in [
        (axes[1], "fvu", "SAE reconstruction", "FVU (training batch)"),
        (axes[2], "l0", "SAE sparsity", "L0 (active features / token)"),
        (axes[3], "dead_frac", "Dead features", "fraction not fired in the window"),
    ]:
        ax.plot(steps, [h[key] for h in sae_history], lw=0.8)
        for s in resamples:
            ax.axvline(s, color="red", ls=":", lw=0.8)
        ax.set(title=title, xlabel="SAE step", ylabel=ylabel)
    axes[2].set_yscale("log")
    axes[3].set_ylim(bottom=0)
    return _save(fig, path)


def log_density_histogram(fire_counts, n_tokens: int, path: str | Path) -> Path:
    """Histogram of log10(feature density); dead features are counted in the title."""
    counts = np.asarray(fire_counts, dtype=np.float64)
    dead = int((counts == 0).sum())
    d = np.log10(counts[counts > 0] / n_tokens)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.hist(d, bins=40, range=(np.log10(1 / n_tokens), 0), color="tab:blue")
    ax.axvline(-5, color="gray", ls=":", lw=1)
    ax.axvline(-1, color="gray", ls=":", lw=1)
    ax.text(-5, ax.get_ylim()[1] * 0.9, " ultralow", fontsize=8)
    ax.text(-1, ax.get_ylim()[1] * 0.9, " dense", fontsize=8)
    ax.set(title=f"Feature density on {n_tokens:,} held-out tokens ({dead} dead)",
           xlabel="log10(fraction of tokens a feature fires on)", ylabel="features")
    return _save(fig, path)


def concept_auroc(concepts: dict[str, dict], path: str | Path) -> Path:
    """Best single feature vs best single neuron vs a linear probe, AUROC per concept (grouped bars)."""
    names = list(concepts)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5))
    ax.barh(y - 0.27, [concepts[n]["auroc"] for n in names], 0.27, label="best SAE feature")
    ax.barh(y, [concepts[n].get("neuron_auroc", np.nan) for n in names], 0.27, label="best MLP neuron")
    ax.barh(y + 0.27, [concepts[n].get("probe_auroc", np.nan) for n in names], 0.27,
            label="linear probe (mean difference)", color="0.6")
    ax.axvline(0.9, color="gray", ls=":", lw=1)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0.5, 1.0)
    ax.set(title="Detecting each concept's tokens with one unit", xlabel="token-level AUROC")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8)
    return _save(fig, path)
