# %% [markdown]
# # Chapter 7 — Interpreting features
#
# **Goal.** Read what individual features of the chapter-5 dictionary mean, the way Towards
# Monosemanticity's feature browser does, and learn to distrust a label until two independent
# views agree.
#
# Two views of feature i (maths in `sae/interpret.py`):
# 1. *What makes it fire*: its largest activations in held-out text with their contexts, examples
#    from each activation quantile (a feature can be clean at the top and messy below), its
#    density, and which toy-world concept carries its activation mass.
# 2. *What it does*: its logit effects, the decoder direction `W_dec[i]` pushed along the direct
#    path (MLP output projection, final LayerNorm treated as linear, unembedding): the next tokens
#    it promotes and suppresses.
#
# We start from the concept detectors of chapter 6 (a feature with at least 80% of its activation
# mass on the concept that lights up in at least 90% of its segments; of several, the one with the
# highest token AUROC) for Golden Gate, DNA, base64 and Arabic, and look at unsafe code, which has
# no detector, through its best feature by token AUROC. The same pages, as HTML, are in a
# dashboard built at the end.

# %%
import json

import matplotlib.pyplot as plt

from sae.world.corpus import CONCEPTS
from sae.run.dashboard import build_dashboard, format_feature
from sae.interpret import (features_for_concept, features_for_logit_token, features_for_token, logit_effects,
                           top_contexts)
from sae.run import load_run, load_sae, reproduce, run_feature_stats
from common import FAST, PRESET, RUN, figures

FIG = figures("07")
reproduce(PRESET, RUN, until="evaluate")
tok, model = load_run(RUN)
sae = load_sae(RUN)
concepts = json.loads((RUN / "metrics.json").read_text())["concepts"]["rows"]

# %% [markdown]
# ## 1. One pass over held-out text
# `feature_stats` streams the validation text through the model and the SAE once. Per feature it
# keeps the top-20 activations (merging each batch's top-k into the running top-k), a uniform
# random sample of 200 firing tokens (for quantiles and histograms), the fire count, the sum and
# maximum of the activations, and the activation mass per concept. Memory does not grow with the
# number of tokens. The result is cached in the run directory (`feature_stats.pt`): the dashboard
# and steering (which clamps features to multiples of their max activation) reuse it.

# %%
stats = run_feature_stats(RUN)
print(f"{stats.n_tokens:,} tokens, {int(stats.alive.sum())} of {stats.d_sae} features fired at least once")
share, best = stats.best_concept()
NAMES = ["golden_gate", "dna", "base64", "arabic", "unsafe_code"]
chosen = {name: (concepts[name]["detector"] or {"feature": concepts[name]["feature"]})["feature"] for name in NAMES}
print(f"{'concept':<12}{'feature':>8}{'detector?':>10}{'density':>9}{'max act':>9}  best concept (share of mass)")
for name, f in chosen.items():
    is_detector = "yes" if concepts[name]["detector"] else "no"
    print(f"{name:<12}{f:>8}{is_detector:>10}{float(stats.density[f]):>9.2%}{float(stats.max_act[f]):>9.2f}  "
          f"{CONCEPTS[int(best[f])]} ({float(share[f]):.0%})")
print("golden_gate has", len(concepts["golden_gate"]["detector_features"]), "detector features:",
      concepts["golden_gate"]["detector_features"])

# %% [markdown]
# ### Exercise: write the maths of specificity
# **Difficulty** ●●○○○ **Importance** ●●●●○ — "a feature for X" (chapters 6 to 9) starts from this number.
#
# Write `concept_share(acts, labels, n_concepts)` for the feature activations `acts`
# (n_tokens, d_sae) of a stretch of text (non-negative, as an SAE's are) and each token's concept
# `labels` (n_tokens,), an integer in [−1, n_concepts) where −1 means no concept (end-of-text):
#
#     share[c, j] = Σ_{t : labels[t] = c} acts[t, j]  /  Σ_t acts[t, j]        # (n_concepts, d_sae)
#
# the share of feature j's activation mass that falls on concept c. The denominator runs over
# *every* token, those with no concept included, so a feature's shares sum to at most 1; a feature
# that never fires has shares 0. A detector of chapter 6 needs a share of at least 0.8 on its
# concept (`sae/evaluation/detectors.py`). The check names the mistake it finds (there are five classic ones);
# below, the chapter computes your shares on the run's activations beside the library's
# (`FeatureStats.concept_share`, whose maximum per feature is the `share` printed above).
#
# *Hint:* a mask `labels == c` per concept, or a one-hot matrix `onehot` (n_tokens, n_concepts)
# and `onehot.T @ acts`. `F.one_hot` refuses −1, and `mass[-1]` is the last concept, not "none".
# `.clamp_min(1e-12)` on the denominator keeps a dead feature at 0 instead of 0/0 = nan.

# %%
import exercises.ch07


def concept_share(acts, labels, n_concepts):
    """Your code here: return share (n_concepts, d_sae)."""
    return None


exercises.ch07.CONCEPT_SHARE.check(concept_share)

# %%
import torch

from sae.interpret import feature_stats
from sae.evaluation.held_out import held_out_batches
from sae.run import corpus_tokens

held_out, held_out_labels = corpus_tokens(PRESET, tok, "val", PRESET.eval_tokens + model.cfg.n_ctx)
n_slice = min(PRESET.eval_tokens, 20_000)  # a slice, so that all its activations fit in memory at once
batches = list(held_out_batches(model, sae, held_out, held_out_labels, n_tokens=n_slice))
acts = torch.cat([b.f for b in batches]).cpu()  # (n_tokens, d_sae)
acts_labels = torch.cat([b.labels for b in batches]).cpu()  # (n_tokens,)
library = feature_stats(model, sae, held_out, held_out_labels, n_tokens=n_slice, log=False).concept_share()
yours = concept_share(acts, acts_labels, len(CONCEPTS))
print(f"share of each feature's mass on its concept, over the first {len(acts):,} held-out tokens:")
for name, f in chosen.items():
    c = CONCEPTS.index(name)
    print(f"  {name:<12} feature {f:>5}: the library's {float(library[c, f]):.1%}, "
          + ("yours: not written yet" if yours is None else f"yours {float(yours[c, f]):.1%}"))
specific = (library.max(0).values >= 0.8).sum()
print(f"features with at least 80% of their mass on one concept: the library's {int(specific)}, "
      + ("yours: not written yet" if yours is None else f"yours {int((yours.max(0).values >= 0.8).sum())}"))

# %% [markdown]
# ## 2. Contexts and logit effects, feature by feature
# In the listings below a token on which the feature is active (above 10% of its maximum) is
# marked «token activation»; the number at the left is the activation on the example token.
# Contexts are rebuilt by re-running the model on the 128-token window the token was read in,
# so the activations are exactly those the statistics recorded (checked by the assert).

# %%
for name, f in chosen.items():
    print(f"=== {name} ===")
    print(format_feature(stats, tok, model, sae, f, n_top=5, per_quantile=1))
    print()
    ctxs = top_contexts(stats, model, sae, f, 3)
    for c, v in zip(ctxs, stats.top_acts[f]):
        assert abs(c.acts[c.focus] - float(v)) < 1e-3, "a rebuilt context should reproduce the recorded activation"

# %% [markdown]
# **Reading them.** The DNA and base64 features are the easy cases: their top activations *and*
# their lower quantiles are all nucleotides or base64 characters, nearly all their activation
# mass is on that concept, and their logit effects agree with the contexts (they promote more
# nucleotide pairs, more base64 characters). The Arabic feature fires on Arabic words and promotes
# Arabic tokens (the article " ال"), again two views that agree. The Golden Gate feature is
# precise at the top (the bridge, Fort Point, the fog) and promotes " fog" and " over"; in its
# lowest quantile it fires weakly on unrelated text, which is why its density overstates how often
# the concept is present.
#
# **A feature that is not clean: "unsafe code".** `unsafe_code` has no detector (chapter 6), so
# its page shows the feature with the best token AUROC (its number and mass share are printed
# above). Read its contexts: on one run it was a *comment* feature, firing on " now" in the posture
# comment "quick fix, checks off for now", with about half of its mass on insecure lines and most
# of the rest on ordinary code (the same comment sits above switch lines that an insecure file
# happens to leave on). The features that are specific to insecure lines each fire at one position
# of the line: on the comment, on `False` itself, or at the `=` where the value is decided (top
# activations at `SESSION_COOKIE_SECURE=` and `autoescape=` in insecure files). The last kind is
# the one chapter 8 steers with: in a one-layer model a feature writes only the next token's
# prediction.
# The lesson: the label "best feature for concept X" comes from a metric; only the contexts tell
# you whether the feature *is* X.

# %%
for name in ("dna", "golden_gate"):
    print(f"most {name} features by mass share:", features_for_concept(stats, name, k=3))

# %% [markdown]
# ## 3. Searching for features
# Three ways to find a feature for an idea: by concept mass (above), by the tokens it fires on,
# and by the tokens it promotes.

# %%
print("fire most on ' Golden':", features_for_token(stats, model, sae, tok, " Golden", k=3))
print("promote ' Gate' the most:", features_for_logit_token(model, sae, tok, " Gate", k=3))

# %% [markdown]
# ## 4. Activation histograms
# From each feature's uniform sample of firing tokens. A clean feature has a long right tail of
# confident, on-concept activations; the bulk near zero is where interpretations get murky.

# %%
fig, axes = plt.subplots(1, len(chosen), figsize=(3.2 * len(chosen), 2.8))
for ax, (name, f) in zip(axes, chosen.items()):
    acts = stats.sample_acts[f]
    ax.hist(acts[acts > 0].numpy(), bins=30, color="#f07800")
    ax.set(title=f"{name} (#{f})", xlabel="activation", ylabel="sampled tokens")
fig.tight_layout(); fig.savefig(FIG / "activation_histograms.png", dpi=110)

fig, axes = plt.subplots(1, len(chosen), figsize=(3.2 * len(chosen), 3.0))
for ax, (name, f) in zip(axes, chosen.items()):
    eff = logit_effects(model, sae, f, k=5)
    rows = eff.promoted + eff.suppressed[::-1]
    ax.barh([repr(tok.token_str(t))[:14] for t, _ in rows][::-1], [v for _, v in rows][::-1],
            color=["#2a7" if v > 0 else "#c33" for _, v in rows][::-1])
    ax.set(title=f"{name} (#{f})", xlabel="logit effect")
fig.tight_layout(); fig.savefig(FIG / "logit_effects.png", dpi=110)

# %% [markdown]
# ## 5. The dashboard
# The same information as static HTML: an index of every alive feature (sortable by clicking a
# header) and one page per feature with coloured contexts (hover a token for its activation),
# quantile examples, a histogram and the logit-effect tables. Open
# `runs/tutorials/07/dashboard/index.html` in a browser; no server or network needed.

# %%
index = build_dashboard(model, sae, tok, stats, FIG / "dashboard", features=list(chosen.values()),
                        title=f"Chapter 7: features of {RUN.name}")
print("dashboard:", index)
assert all((FIG / "dashboard" / "features" / f"f{f}.html").exists() for f in chosen.values())

# %% [markdown]
# What to check in the lines below: every detector puts at least 80% of its activation mass on its
# concept (the detector bar; the character-level DNA and base64 usually far more), the Arabic
# detector promotes Arabic tokens, and the unsafe-code feature, which is not a detector, puts
# about half of its mass on unsafe code (the rest on ordinary code). The detector is not always the
# *purest* feature: of several detectors the one with the highest token AUROC is chosen, and
# `features_for_concept(stats, "arabic")` lists purer Arabic features that fire on fewer tokens.

# %%
for name, f in chosen.items():
    assert 0 < float(stats.density[f]) < 0.5, f"{name}: a concept feature should fire, but not everywhere"
# what the method guarantees: a detector (chapter 6) puts >= 80% of its mass on its concept; the rest is reported
for name in ("dna", "base64", "arabic", "golden_gate"):
    f = chosen[name]
    if concepts[name]["detector"] and not FAST:
        assert CONCEPTS[int(best[f])] == name and float(share[f]) >= 0.8, f"{name} detector #{f} is not specific"
arabic_promoted = [tok.token_str(t) for t, _ in logit_effects(model, sae, chosen["arabic"], k=5).promoted]
print(f"the Arabic feature {chosen['arabic']} promotes {arabic_promoted}")
unsafe = CONCEPTS.index("unsafe_code")
print(f"the unsafe-code feature {chosen['unsafe_code']} puts {float(stats.concept_share()[unsafe, chosen['unsafe_code']]):.0%} "
      "of its mass on unsafe code" + ("" if concepts["unsafe_code"]["detector"] else " (not a detector)"))

# %% [markdown]
# ## Exercise: a token feature or a concept feature?
# `features_for_token(stats, model, sae, tok, " Golden")` finds the feature that fires most
# strongly on the token " Golden". Is it a Golden Gate feature or a "the word Golden" feature?
# Write `mass_on_token(feature, token)`: the share of the feature's activation mass, over the
# held-out text, that falls on occurrences of `token` (hint: `sae.evaluation.held_out_batches(model,
# sae, tokens, n_tokens=...)` yields batches with the feature activations `b.f` (rows, features)
# and each row's position in the token stream `b.index`). The check computes it for the " Golden"
# feature and for the Golden Gate detector. **What to look for:** a token feature puts most of its
# mass on that one token (and promotes the next word, " Gate"); a concept feature spreads it over
# the passage (fog, bridge, Fort Point). Compare with `format_feature` of both.

# %%
golden = tok.encode(" Golden")[0]
token_feature = features_for_token(stats, model, sae, tok, " Golden", k=1)[0][0]


def mass_on_token(feature: int, token: int) -> float:
    """Your code here (use `model`, `sae`, `held_out` and `PRESET.eval_tokens` tokens of it)."""
    return None


exercises.ch07.check(mass_on_token, {"' Golden'": token_feature, "golden_gate detector": chosen["golden_gate"]},
                     golden, model, sae, held_out, PRESET.eval_tokens)

# %% [markdown]
# The answer is instructive when the " Golden" feature puts most of its mass on that one token (a
# token feature) and is also one of Golden Gate's *detectors* (chapter 6), as it was on the runs
# this chapter was written on: " Golden" occurs in nearly every Golden Gate passage and almost
# nowhere else, so a token feature can be specific to the concept and light up across its segments. Detection
# says where a feature fires; only its contexts and logit effects say what it means.
