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
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter


def save_figure(fig, path: str | Path) -> Path:
    """Lay out `fig`, write it to `path` (making its folder) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(lm_history: list[dict], sae_history: list[dict], path: str | Path) -> Path:
    """LM loss, SAE reconstruction error, L0 and dead fraction against training step, as a 2×2
    grid with fonts large enough to read when the report scales the figure to its page width.

    The dead-fraction panel keeps a y-axis of at least 0 to 0.05 (a line at exactly 0 would sit on
    the axis and the panel would look empty) and says so in words when no feature was ever dead."""
    with plt.rc_context({"font.size": 13, "axes.titlesize": 15, "legend.fontsize": 12}):
        fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
        ax = axes[0, 0]
        ax.plot([h["step"] for h in lm_history], [h["loss"] for h in lm_history], lw=0.6, label="train batch")
        ev = [h for h in lm_history if "val_loss" in h]
        ax.plot([h["step"] for h in ev], [h["val_loss"] for h in ev], "o-", label="validation")
        ax.set(title="Language model", xlabel="step", ylabel="cross-entropy (nats/token)")
        ax.legend()
        steps = [h["step"] for h in sae_history]
        resamples = [h["step"] for h in sae_history if h.get("resample", {}).get("n_resampled")]
        for ax, key, title, ylabel in [
            (axes[0, 1], "fvu", "SAE reconstruction", "FVU (training batch)"),
            (axes[1, 0], "l0", "SAE sparsity", "L0 (active features / token)"),
            (axes[1, 1], "dead_frac", "Dead features", "fraction not fired in the window"),
        ]:
            ax.plot(steps, [h[key] for h in sae_history], lw=1.2)
            for i, s in enumerate(resamples):
                ax.axvline(s, color="red", ls=":", lw=1, label="resampling" if i == 0 else None)
            ax.set(title=title, xlabel="SAE step", ylabel=ylabel)
        axes[1, 0].set_yscale("log")  # labelled 10, 20, 50, 100 (at a glance), not 10^1, 2x10^1
        axes[1, 0].yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axes[1, 0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axes[1, 0].yaxis.set_minor_formatter(NullFormatter())
        ax, top = axes[1, 1], max((h["dead_frac"] for h in sae_history), default=0.0)
        ax.set_ylim(-0.002, max(0.05, 1.1 * top))
        if top == 0:
            ax.text(0.5, 0.55, "no dead features at any step", transform=ax.transAxes, ha="center",
                    va="center", color="0.35", fontsize=14)
        if resamples:
            ax.legend(loc="upper right")
        return save_figure(fig, path)


def log_density_histogram(fire_counts, n_tokens: int, path: str | Path) -> Path:
    """Histogram of log10(feature density); dead features are counted in the title."""
    counts = np.asarray(fire_counts, dtype=np.float64)
    dead = int((counts == 0).sum())
    d = np.log10(counts[counts > 0] / n_tokens)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.hist(d, bins=40, range=(np.log10(1 / n_tokens), 0), color="tab:blue")
    for x, name in [(-5, " ultralow"), (-1, " dense")]:
        ax.axvline(x, color="gray", ls=":", lw=1)
        ax.text(x, ax.get_ylim()[1] * 0.9, name, fontsize=10)
    ax.set(title=f"Feature density on {n_tokens:,} held-out tokens ({dead} dead)",
           xlabel="log10(fraction of tokens a feature fires on)", ylabel="features")
    return save_figure(fig, path)


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
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=9)
    return save_figure(fig, path)


def concept_detectors(concepts: dict[str, dict], monosemanticity: dict, thresholds: dict, path: str | Path) -> Path:
    """Towards Monosemanticity's comparison, features against neurons, in two panels: per concept,
    the activation-mass share of its detector (or closest) feature and neuron, filled where the
    unit is a detector (share and segment recall both pass); and the distribution of
    top-concept share over all alive features and neurons."""
    names = list(concepts)
    y = np.arange(len(names))
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(13, 0.38 * len(names) + 2.2), gridspec_kw={"width_ratios": [1.1, 1]})
    ax.axvline(thresholds["share_threshold"], color="gray", ls=":", lw=1)
    shares = {}
    for key, unit, marker, color, label in [("detector", "feature", "o", "tab:blue", "SAE feature"),
                                            ("neuron_detector", "neuron", "s", "tab:orange", "MLP neuron")]:
        entries = [concepts[n].get(key) or concepts[n].get(f"closest_{unit}") for n in names]
        share = [e["share"] if e else np.nan for e in entries]
        found = [bool(concepts[n].get(key)) for n in names]
        ax.scatter(share, y, marker=marker, s=55, zorder=3, edgecolors=color, linewidths=1.5,
                   facecolors=[color if f else "white" for f in found],
                   label=f"{label}: a detector for {sum(found)} of {len(names)}")
        shares[unit] = share
    for yi, a, b in zip(y, shares["feature"], shares["neuron"]):
        ax.plot([a, b], [yi, yi], color="0.8", lw=1, zorder=1)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.02), title="Features vs neurons, per concept (filled: a detector)",
           xlabel="share of the unit's activation mass on the concept")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=10,
              title=f"detector: >= {thresholds['share_threshold']:.0%} of its mass on the concept, lights up in "
                    f">= {thresholds['recall_threshold']:.0%} of its segments", title_fontsize=10)
    edges = np.linspace(0, 1, 11)
    for key, color, label in [("features", "tab:blue", "SAE features"), ("neurons", "tab:orange", "MLP neurons")]:
        m = monosemanticity.get(key)
        if m:
            frac = np.asarray(m["share_histogram"], dtype=float) / max(m["n_alive"], 1)
            hx.stairs(frac, edges, color=color, lw=2,
                      label=f"{label} ({m['n_alive']} alive, mean {m['mean_top_concept_share']:.2f})")
    hx.axvline(thresholds["share_threshold"], color="gray", ls=":", lw=1)
    hx.set(title="How monosemantic is each unit?", xlabel="share of its activation mass on its top concept",
           ylabel="fraction of alive units")
    hx.legend(fontsize=10)
    return save_figure(fig, path)


def steering_pareto(curves: dict[str, dict[str, list[dict]]], methods: dict[str, str], fluent_ce: float,
                    path: str | Path) -> Path:
    """Per concept, each method's validation curve across its strengths: the concept score against
    the clean model's CE of the continuations (up and to the left is better; dotted: the fluency
    bound `fluent_ce`), one panel per concept."""
    names = list(curves)
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows + 0.6), squeeze=False)
    colors = dict(zip(methods, plt.cm.tab10(np.linspace(0, 1, 10))))
    for ax, c in zip(axes.flat, names):
        for m, pts in curves[c].items():
            ax.plot([p["ce"] for p in pts], [p["concept"] for p in pts], "o-", ms=3, lw=1, color=colors[m], label=m)
        ax.axvline(fluent_ce, color="gray", ls=":", lw=1)
        ax.set(title=c, xlabel="CE of the continuation (nats/token)", ylabel="concept score", ylim=(-0.05, 1.05))
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="lower center", ncol=len(methods), fontsize=8)
    fig.suptitle("Steering: concept score against fluency across strengths (validation prompts)")
    fig.subplots_adjust(bottom=0.12)
    return save_figure(fig, path)
