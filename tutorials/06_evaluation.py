# %% [markdown]
# # Chapter 6 — Evaluating a dictionary
#
# **Goal.** Measure how good the SAE of chapter 5 is, with the metrics the papers report, and
# learn what a bad value looks like.
#
# Three questions, three families of metrics (formulas in `sae/metrics.py`):
# 1. *Does it reconstruct?* MSE, FVU (fraction of variance unexplained), and, more to the point,
#    how much of the model's loss survives when the SAE's reconstruction replaces the activations
#    (CE loss recovered).
# 2. *Is it sparse, and healthy?* L0 (active features per token), dead, ultralow-density and
#    dense features, the log-density histogram.
# 3. *Are the features interpretable?* On the toy world we know each token's concept, so we can
#    ask how well one feature detects one concept (AUROC) and how much of a feature's activation
#    falls on a single concept, and compare with the model's own neurons.

# %%
import json

import matplotlib.pyplot as plt
import torch

from sae import metrics as M
from sae.interpret import FeatureStats
from sae.pipeline import reproduce
from common import FAST, PRESET, RUN, figures

FIG = figures("06")
reproduce(PRESET, RUN, until="evaluate")
m = json.loads((RUN / "metrics.json").read_text())
s = m["sae"]

# %% [markdown]
# ## 1. Reconstruction, and why "CE loss recovered" needs a baseline
# CE recovered = (CE_ablated − CE_sae) / (CE_ablated − CE_clean). The denominator is set by the
# baseline, not by the SAE: a catastrophic ablation makes any SAE look good. Most libraries ablate
# by *zeroing* the site; replacing it by its *mean* activation is the other common choice. Which
# is harsher depends on the model: on ours the mean is (a constant MLP output swamps the residual
# stream after the final LayerNorm). So we report both, and the added loss in nats, which needs
# no baseline at all.

# %%
print(f"CE clean {s['ce_clean']:.3f} | with SAE {s['ce_sae']:.3f} (+{s['ce_added_nats']:.3f} nats) | "
      f"zero-ablated {s['ce_zero_ablation']:.3f} | mean-ablated {s['ce_mean_ablation']:.3f}")
print(f"CE recovered: {s['ce_recovered_zero']:.3f} vs zero-ablation, {s['ce_recovered_mean']:.3f} vs mean-ablation")
print(f"FVU {s['fvu']:.3f} (explained variance {s['explained_variance']:.3f}), KL {s['kl']:.4f} nats/token")
print("Towards Monosemanticity A/1 (4,096 features): 79% loss recovered; "
      "April update 1L, λ=10: L0 20.1, NMSE 0.131, CE recovered 0.914")
# sanity checks a reader can verify by hand
x = torch.randn(1000, 16)
assert M.fvu(x, x) == 0 and abs(M.fvu(x, x.mean(0).expand_as(x)) - 1) < 1e-6
assert M.ce_recovered(2.0, 2.0, 4.0) == 1.0 and M.ce_recovered(2.0, 4.0, 4.0) == 0.0

# %% [markdown]
# ## 2. Sparsity and feature health
# Towards Monosemanticity's guidance: L0 below ~10-20; more than a few features with density above
# 1% means λ is too low; a bimodal log-density histogram (a cluster of ultralow-density features)
# signals trouble. Our dictionary is small for the model, so no feature starves: nothing is dead.

# %%
print(f"L0 {s['l0']:.1f} | dead {s['dead_fraction']:.1%} | ultralow {s['ultralow_fraction']:.1%} | "
      f"dense (>10%) {s['dense_fraction']:.1%}")
stats = FeatureStats.load(RUN / "feature_stats.pt")  # written by the same evaluation pass
density = stats.density
print("densest features:", [(int(i), round(float(density[i]), 3)) for i in density.argsort(descending=True)[:5]])

# %% [markdown]
# What a *bad* density histogram looks like: we take this run's fire counts and pretend that a
# third of the features had collapsed to an ultralow density (what happens without resampling
# at a too-high learning rate, chapter 5): a second mode appears far to the left.

# %%
bad = stats.fire_count.clone()
g = torch.Generator().manual_seed(0)
idx = torch.randperm(len(bad), generator=g)[: len(bad) // 3]
bad[idx] = torch.randint(1, 3, (len(idx),), generator=g)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), sharey=True)
for ax, counts, title in [(axes[0], stats.fire_count, "this run"), (axes[1], bad, "an unhealthy run (illustration)")]:
    hist, edges = M.log_density_histogram(counts, s["n_tokens"])
    ax.stairs(hist, edges, fill=True)
    ax.set(title=title, xlabel="log10(feature density)", ylabel="features")
fig.tight_layout(); fig.savefig(FIG / "density_healthy_vs_bimodal.png", dpi=110)

# %% [markdown]
# ## 3. Concepts: features vs neurons
# For each concept, the best single SAE feature and the best single MLP neuron as detectors of
# that concept's tokens (token-level AUROC), and the share of the feature's activation mass that
# falls on the concept (the paper's Arabic feature: 81% of its firing tokens were Arabic).

# %%
print(f"{'concept':<13}{'feature':>8}{'AUROC':>7}{'prec':>6}{'rec':>6}{'mass':>6} | {'neuron':>6}{'AUROC':>7} | {'probe':>6}")
for name, c in m["concepts"].items():
    print(f"{name:<13}{c['feature']:>8}{c['auroc']:>7.3f}{c['precision']:>6.2f}{c['recall']:>6.2f}"
          f"{c['mass_share']:>6.2f} | {c['neuron']:>6}{c['neuron_auroc']:>7.3f} | {c.get('probe_auroc', float('nan')):>6.3f}")
mono = m["monosemanticity"]
print(f"mean share of a feature's mass on its top concept: {mono['mean_top_concept_share']:.2f}")

# %% [markdown]
# **What this shows, honestly.** The best features are *precise*: most of their activation falls
# on one concept (high mass share). But at the token level a single sparse feature is a weak
# detector of a whole concept: each fires on a subset of the concept's tokens (the word "fog",
# the digits of a year...), so its recall, and with it its AUROC, stays well below 1, while a
# dense neuron that leans towards a topic on every token can score a higher AUROC without being
# monosemantic. AUROC rewards coverage; mass share rewards purity. The paper's claim is about
# purity (interpretability), and on that axis the features win: compare a neuron's mass share.
#
# **Is the concept even there?** The last column is a linear probe: the difference between the
# mean activation on the concept's tokens and on all other tokens, fitted on one half of the
# held-out tokens and scored on the other. On the default run it detects every concept with AUROC
# 0.93-0.99, so the topic *is* a direction in the MLP activations. The dictionary does not make it
# a feature because sparsity pays for narrower ones: a word that only occurs in one topic ("fog",
# "oven") gets a feature whose decoder row already contains the topic's direction, so a separate
# topic feature need not fire on that word, and its recall (and AUROC) drops. This is *feature
# absorption* (Chanin et al. 2024). It grows with training: the same recipe after 0.5M training
# tokens has median best-feature AUROC 0.78, after 1M 0.71, after 3M (the default) 0.62, after
# 6M 0.59, while its features get narrower and purer.

# %%
assert 0 <= s["fvu"] < 1 and s["l0"] > 0
shares = [c["mass_share"] for c in m["concepts"].values()]
if not FAST:
    assert sorted(shares)[len(shares) // 2] >= 0.7, "the typical concept's best feature should be mostly about it"
    assert all(c["probe_auroc"] > c["auroc"] for c in m["concepts"].values()), "the probe is told the concept"

# %% [markdown]
# ## Exercise
# Compute the activation-mass share of the best *neuron* for each concept (hint: `ConceptHistogram`
# in `sae/metrics.py` accumulates `mass` for any units; `evaluate_sae` fills one for the neurons,
# clamping negative activations at 0). **Check:** is the median neuron share below the median
# feature share?
#
# A second exercise: where *does* the topic live as a sparse feature? Train a small SAE on the
# attention output, which in a one-layer model is a weighted average of what the earlier tokens
# wrote (`python -m sae train-sae --run runs/tiny --set sae.site=blocks.0.attn.hook_out --set
# sae.d_sae=64 --set train_sae.n_steps=244 --name attn64`, 1M tokens, then `python -m sae evaluate --run runs/tiny --sae attn64`).
# **Check:** count the concepts whose best feature reaches AUROC 0.9 there and compare with the
# MLP dictionary above (we measured 11 of 14 against 0 of 14, at a price: 64 features recover
# only 76% of the loss). Attention-layer dictionaries carry context features, as Kissane et al.
# 2024 found on GPT-2; train the attention SAE longer and watch its topic features split too.
