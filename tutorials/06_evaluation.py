# %% [markdown]
# # Chapter 6 — Evaluating a dictionary
#
# **Goal.** Measure how good the SAE of chapter 5 is, with the metrics the papers report, and
# learn what a bad value looks like.
#
# Three questions, three families of metrics (formulas in `sae/evaluation/formulas.py`):
# 1. *Does it reconstruct?* MSE, FVU (fraction of variance unexplained), and, more to the point,
#    how much of the model's loss survives when the SAE's reconstruction replaces the activations
#    (CE loss recovered).
# 2. *Is it sparse, and healthy?* L0 (active features per token), dead, ultralow-density and
#    dense features, the log-density histogram.
# 3. *Are the features interpretable?* On the toy world we know each token's concept, so we can
#    ask whether a feature is about one concept and shows up wherever it is (a *detector*), and
#    compare with the model's own neurons, as Towards Monosemanticity does.

# %%
import json

import matplotlib.pyplot as plt
import torch

from sae import evaluation as M
from sae.interpret import FeatureStats
from sae.run import reproduce
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
# ### Exercise: CE loss recovered, from the logits
# **Difficulty** ●●○○○ **Importance** ●●●●○ — the number every SAE paper reports, and its details
# decide it.
#
# Write `ce_loss_recovered(tokens, clean_logits, sae_logits, ablated_logits)`. `tokens` (B, T) are
# token windows; each `*_logits` (B, T, vocab) holds the model's logits on them: clean, with the
# SAE's reconstruction spliced in at the site, and with the site ablated. The logits at position t
# predict token t + 1. Return `(ce_clean, ce_sae, ce_ablated, recovered)` as Python floats:
#
#     CE        = mean over the predictions (b, t < T − 1) of  −log softmax(logits[b, t])[tokens[b, t + 1]]   (nats)
#     recovered = (CE_ablated − CE_sae) / (CE_ablated − CE_clean)
#
# The check names the mistake it finds (it knows seven). Below, the chapter computes the three sets
# of logits on the first windows of the held-out text and calls your function once per ablation,
# zero and mean, beside the library's `evaluate_sae` on the same windows and `metrics.json` on all
# of the held-out text.
#
# *Hint:* `torch.nn.functional.cross_entropy` takes (N, vocab) logits and (N,) targets: drop the
# last position of the logits and the first of the tokens, then flatten both.

# %%
import numpy as np

import exercises.ch06
from sae.run import corpus_tokens, load_run, load_sae


def ce_loss_recovered(tokens, clean_logits, sae_logits, ablated_logits):
    """Your code here: return (ce_clean, ce_sae, ce_ablated, recovered) as floats."""
    return None


exercises.ch06.CE_RECOVERED.check(ce_loss_recovered)

# %%
tok, model = load_run(RUN)
dictionary = load_sae(RUN)
tokens, labels = corpus_tokens(PRESET, tok, "val", PRESET.eval_tokens + model.cfg.n_ctx)
n_windows, n_ctx, site = 32, model.cfg.n_ctx, dictionary.cfg.site
ctx = torch.from_numpy(np.asarray(tokens[: n_windows * n_ctx], dtype=np.int64)).view(n_windows, n_ctx)


def logits_with(replace):
    """The logits with the site's activations a replaced by replace(a) from position 1 on (the SAE
    never saw position 0, so the library leaves it alone)."""
    def hook(a):
        a = a.clone()
        a[:, 1:] = replace(a[:, 1:])
        return a

    with torch.no_grad(), model.hooks({site: hook}):
        return model(ctx)


with torch.no_grad():
    clean, cache = model.run_with_cache(ctx, [site])
mean_act = cache[site][:, 1:].reshape(-1, dictionary.cfg.d_in).mean(0)  # the mean-ablation baseline
spliced = logits_with(lambda a: dictionary(a).x_hat)
library = M.evaluate_sae(model, dictionary, tokens, n_tokens=n_windows * n_ctx, log=False).metrics
ablations = {"zero": logits_with(torch.zeros_like), "mean": logits_with(lambda a: mean_act.expand_as(a))}
for ablation, ablated in ablations.items():
    # from position 1 on, as the library: the prediction at position 0 saw no spliced activation
    yours = ce_loss_recovered(ctx[:, 1:], clean[:, 1:], spliced[:, 1:], ablated[:, 1:])
    print(f"CE recovered vs {ablation}-ablation, first {n_windows} windows: the library's "
          f"{library[f'ce_recovered_{ablation}']:.4f}, " + ("yours: not written yet" if yours is None else
                                                           f"yours {yours[3]:.4f}")
          + f"; all {s['n_tokens']:,} held-out tokens (metrics.json): {s[f'ce_recovered_{ablation}']:.4f}")

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
# ## 3. Concepts: features against neurons
# Towards Monosemanticity's claim is that a dictionary's features are *specific* where the model's
# neurons are polysemantic: its Arabic feature puts 81% of its activation on Arabic text, and it
# fires across Arabic text. We measure exactly that. A unit is a *detector* of concept c when
# - at least 80% of its activation mass on held-out text falls on c's tokens (specific), and
# - it fires above 10% of its maximum in at least 90% of c's held-out segments (a segment is a
#   run of tokens of one concept), so it lights up across the concept, not on one sub-case of it.
# The same test is run on the SAE's features and on the MLP's neurons, in the same pass
# (`Detectors` in `sae/evaluation/detectors.py`).

# %%
d, mono = m["concepts"]["detectors"], m["concepts"]["monosemanticity"]
print(f"{d['features']} of {d['of']} concepts have a detector feature, {d['neurons']} a detector neuron")
print(f"{'concept':<13}{'feature':>8}{'share':>7}{'recall':>7} |{'neuron':>7}{'share':>7}{'recall':>7}")
for name, c in m["concepts"]["rows"].items():
    cells = ""
    for key, unit in [("detector", "feature"), ("neuron_detector", "neuron")]:
        e = c[key] or c[f"closest_{unit}"]  # the closest unit when none passes (marked ~)
        cells += f"{('' if c[key] else '~') + str(e[unit]):>7}{e['share']:>7.2f}{e['segment_recall']:>7.2f} |"
    print(f"{name:<13} {cells}")
for key in ("features", "neurons"):
    print(f"{key:<9} mean top-concept share {mono[key]['mean_top_concept_share']:.2f}, "
          f"{mono[key]['fraction_above_detector_share']:.1%} of alive units above 0.8")

# %% [markdown]
# The run's figure `figures/concept_detectors.png` (in the report too) shows both sides. Left: per concept,
# the mass share of its detector feature and of its best neuron (filled when it is a detector).
# The neurons do light up across each concept (their segment recall is near 1), but they are
# dense and fire for many concepts, so their mass share stays far below the bar: polysemantic
# (the range is printed below). Only the character-level concepts (DNA, base64) tend to have
# neurons of their own. Right: over *all* alive units, the share of activation mass on the unit's
# top concept; a unit spread evenly over the 14 concepts would sit at 1/14.
#
# A concept can miss a detector feature in two ways, and the cell below says which for this run.
# Too little share: `unsafe_code` (a line that turns a security check off, with its comment) has
# specific features, but each fires at one position of the line (on the comment, at the `=`
# before the value, or on `False` itself), and the rest of the line's mass goes elsewhere. Too
# little recall: `code` can have a pure code feature that misses the bar on segments, because an
# insecure line cuts a file into shorter code segments.

# %%
shares = [c["closest_neuron"]["share"] for c in m["concepts"]["rows"].values() if not c["neuron_detector"] and c["closest_neuron"]]
if shares:
    print(f"best neuron's mass share, concepts without a detector neuron: {min(shares):.2f}-{max(shares):.2f}")
for name, c in m["concepts"]["rows"].items():
    if c["detector"] is None:
        e = c["closest_feature"]
        why = " and ".join(w for w, short in (("share", e["share"] < 0.8), ("segment recall", e["segment_recall"] < 0.9)) if short)
        print(f"{name}: no detector feature; the closest, {e['feature']}, has share {e['share']:.2f} and segment "
              f"recall {e['segment_recall']:.2f}: too little {why}")
detected = sum(c["detector"] is not None for c in m["concepts"]["rows"].values())
assert detected == d["features"]
if not FAST:
    assert d["features"] >= 12 and d["features"] - d["neurons"] >= 8, d
    assert mono["features"]["mean_top_concept_share"] > mono["neurons"]["mean_top_concept_share"]
fig, ax = plt.subplots(figsize=(6, 3.2))
edges = torch.linspace(0, 1, 11)
for key in ("features", "neurons"):
    hist = torch.tensor(mono[key]["share_histogram"], dtype=torch.float) / mono[key]["n_alive"]
    ax.stairs(hist.numpy(), edges.numpy(), label=key, lw=2)
ax.set(xlabel="share of activation mass on the top concept", ylabel="fraction of alive units",
       title="Features are more monosemantic than neurons")
ax.legend(); fig.tight_layout(); fig.savefig(FIG / "monosemanticity.png", dpi=110)

# %% [markdown]
# ## 4. The absorption diagnostic: token-level AUROC
# A different question: how well does *one* unit separate a concept's tokens from all others,
# token by token (AUROC, with precision and recall at the best threshold)? This is the metric that
# feature absorption (Chanin et al. 2024) punishes, so read it as a diagnostic, not as the paper's
# claim.

# %%
print(f"{'concept':<13}{'feature':>8}{'AUROC':>7}{'prec':>6}{'rec':>6}{'mass':>6} | {'neuron':>6}{'AUROC':>7} | {'probe':>6}")
for name, c in m["concepts"]["rows"].items():
    print(f"{name:<13}{c['feature']:>8}{c['auroc']:>7.3f}{c['precision']:>6.2f}{c['recall']:>6.2f}"
          f"{c['mass_share']:>6.2f} | {c['neuron']:>6}{c['neuron_auroc']:>7.3f} | {c.get('probe_auroc', float('nan')):>6.3f}")

# %% [markdown]
# **What this shows.** At the token level a single sparse feature is a weak detector of a whole
# concept: a concept's detector lights up in every segment, but on a subset of its tokens (the
# word "fog", the digits of a year...), so its token recall, and with it its AUROC, stays well
# below 1, while a dense neuron that leans towards a topic on every token can score a higher AUROC
# without being monosemantic. AUROC rewards token coverage; the detector test above asks what the
# paper asks: is the unit about one thing, and does it show up wherever that thing is?
#
# **Is the concept a direction?** The last column is a linear probe: the difference between the
# mean activation on the concept's tokens and on all other tokens, fitted on one half of the
# held-out tokens and scored on the other; its range over the concepts is printed below. High on
# every concept means the topic *is* a direction in the MLP activations. The dictionary does not make it
# one token-covering feature because sparsity pays for narrower ones: a word that only occurs in
# one topic ("fog", "oven") gets a feature whose decoder row already contains the topic's
# direction, so a separate topic feature need not fire on that word, and its token recall (and
# AUROC) drops. This is *feature absorption* (Chanin et al. 2024). It grows with training: with
# the same recipe, the median best-feature AUROC falls steadily as the SAE trains on more tokens
# (0.5M to 6M, in a study on an earlier version of the toy world), while its features get
# narrower and purer. Try it: `--set train_sae.n_steps=...` on `python -m sae train-sae`.

# %%
probe = [c["probe_auroc"] for c in m["concepts"]["rows"].values() if "probe_auroc" in c]
aurocs = sorted(c["auroc"] for c in m["concepts"]["rows"].values())
print(f"best single feature's token AUROC: median {aurocs[len(aurocs) // 2]:.3f}"
      + (f"; linear probe AUROC over the concepts: {min(probe):.3f}-{max(probe):.3f}" if probe else ""))
assert 0 <= s["fvu"] < 1 and s["l0"] > 0
if not FAST:
    assert all(c["probe_auroc"] > c["auroc"] for c in m["concepts"]["rows"].values()), "the probe is told the concept"

# %% [markdown]
# ## Exercise 1: move the bars
# Are the 80% and 90% bars doing the work? Write `count_detectors(d, share_bar, recall_bar)`: the
# number of concepts c for which some unit j has `d.share[c, j] >= share_bar` and
# `d.recall[c, j] >= recall_bar` (`d` is a `Detectors`; both tensors are (concepts, units)). The
# check runs it on the features and on the neurons for several bars and prints the table.
# **What to look for:** does the features' count move much as the share bar rises from 0.5 to
# 0.9, and the neurons'? A large gap that closes as the bar falls is specificity: neurons light up
# across every concept's text, but never for it alone.

# %%
from sae.world.corpus import CONCEPTS

ev = M.evaluate_sae(model, dictionary, tokens, labels, n_concepts=len(CONCEPTS), n_tokens=PRESET.eval_tokens)


def count_detectors(d: M.Detectors, share_bar: float, recall_bar: float) -> int:
    """Your code here."""
    return None


exercises.ch06.check_bars(count_detectors, ev)

# %% [markdown]
# ## Exercise 2: where does the topic live as a sparse feature?
# Train a small SAE on the attention output, which in a one-layer model is a weighted average of
# what the earlier tokens wrote, and evaluate it:
# `python -m sae train-sae --run runs/tiny --set sae.site=blocks.0.attn.hook_out --set
# sae.d_sae=64 --set train_sae.n_steps=244 --name attn64` (1M tokens, about a minute), then
# `python -m sae evaluate --run runs/tiny --sae attn64`. Count the concepts whose best feature
# reaches token AUROC 0.9 (`runs/tiny/attn64_metrics.json`) and compare with the MLP dictionary
# above (section 4's table); the check prints what the 64 features cost in loss recovered.
# Attention-layer dictionaries carry context features, as Kissane et al. 2024 found on GPT-2;
# train the attention SAE longer and watch its topic features split too.

# %%
attention_count = None  # your answer: a number of concepts

exercises.ch06.check_attention(attention_count, RUN)
