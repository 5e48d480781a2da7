# %% [markdown]
# # Chapter 8 — Steering by clamping a feature
#
# **Goal.** Reproduce Scaling Monosemanticity's "Golden Gate" demonstration on our model: clamp
# one feature to a multiple of its maximum activation and watch the model talk about the bridge,
# whatever the prompt. Then the "unsafe code" demonstration: clamp an insecure-code feature and
# watch the model turn security checks off in code that was keeping them on.
#
# The splice (maths in `sae/steering.py`): at the SAE's site, `x → decode(f') + (x − decode(f))`
# with `f'` the edited features. The second term is the SAE's *error*: keeping it makes the splice
# an exact no-op until a feature is edited, so every change in behaviour is the edited feature's.

# %%
import json

import matplotlib.pyplot as plt
import torch

from sae.pipeline import reproduce
from sae.run import load_run, load_sae, run_feature_stats
from sae.steering import (choose_feature, choose_unsafe_feature, clamp_features, golden_gate_demo, risk_cuts,
                          unsafe_code_demo, unsafe_context_sensitivity)
from common import FAST, PRESET, RUN, figures

FIG = figures("08")
reproduce(PRESET, RUN, until="evaluate")
tok, model = load_run(RUN)
sae = load_sae(RUN)
metrics = json.loads((RUN / "metrics.json").read_text())
stats = run_feature_stats(RUN)

# %% [markdown]
# ## Which feature? Chosen before steering, by held-out detection
# We take the feature that best detects the `golden_gate` tokens on held-out text (highest AUROC,
# chapter 6), *not* the one that steers best: choosing by the outcome would be circular. This
# matters: the feature with the purest activation mass on the concept is a *next-token* feature
# ("Bridge" after "Golden Gate"), and clamping it high makes the model repeat " Bridge Bridge
# Bridge" (try it in the exercise).

# %%
f = choose_feature(metrics, "golden_gate")
max_act = float(stats.max_act[f])
print(f"Golden Gate feature {f}: max activation {max_act:.2f}, density {float(stats.density[f]):.2%}")
tokens = torch.tensor([[tok.eot_token] + tok.encode("Simmer the soup over low heat.")])
with torch.no_grad():
    clean = model(tokens)
    with clamp_features(model, sae):
        spliced = model(tokens)
print(f"unedited splice changes the logits by at most {(spliced - clean).abs().max():.2e}")
assert (spliced - clean).abs().max() < 1e-4

# %% [markdown]
# ## The Golden Gate sweep
# Ten neutral prompts (cooking, weather, sports, animals) × 5 samples of 48 tokens, the feature
# clamped to 0, 1, 2, 5, 10, 20 × its max. The judge of chapter 2 decides whether a continuation
# is about the bridge; the coherence cost is the clean model's cross-entropy of the steered text.

# %%
gg = golden_gate_demo(model, sae, tok, f, max_act, n=2 if FAST else 5,
                      multiples=(0, 2, 10) if FAST else (0, 1, 2, 5, 10, 20))
print(f"baseline: {gg['rate_baseline']:.0%} on topic")
for r in gg["sweep"]:
    print(f"{r['multiple']:>4}x: {r['rate']:.0%} on topic, CE {r['ce']:.2f} nats/token | {r['example'][:90]!r}")
fig, ax1 = plt.subplots(figsize=(6.5, 4))
ms = [r["multiple"] for r in gg["sweep"]]
ax1.plot(ms, [r["rate"] for r in gg["sweep"]], "o-", color="tab:orange", label="on topic (Golden Gate)")
ax1.set_xscale("symlog", linthresh=1); ax1.set_xlabel("clamp value (× max activation)")
ax1.set_ylabel("fraction of samples on topic"); ax1.set_ylim(0, 1.05)
ax2 = ax1.twinx()
ax2.plot(ms, [r["ce"] for r in gg["sweep"]], "s--", color="tab:blue", label="coherence cost")
ax2.set_ylabel("CE of the text under the clean model (nats/token)")
ax1.set_title("Clamping the Golden Gate feature"); fig.legend(loc="upper left", fontsize=8)
fig.tight_layout(); fig.savefig(FIG / "golden_gate_sweep.png", dpi=110)
if not FAST:
    assert gg["rate_baseline"] <= 0.1 and gg["rate_clamped"] >= 0.8

# %% [markdown]
# At 1× three quarters of the samples drift to the bridge, in mixed sentences; at 2× every
# sample is about it, in broken words ("Simmer the soup ross the afternoon as International
# Orange makes International..."); from 5× the text collapses into fragments that the judge
# calls on topic less and less, and the coherence cost has climbed from 0.8 to about 14
# nats/token: the paper's "±100× gives nonsense" arrives earlier in a model this small.
# Here is 100×:

# %%
with clamp_features(model, sae, clamp={f: 100 * max_act}):
    out = model.generate([tok.eot_token] + tok.encode("The striker"), 32, seed=0)
print(repr(tok.decode(out[1:].tolist())))

# %% [markdown]
# ## Why keep the error term?
# Without it the model runs on the SAE's reconstruction alone, which already changes its
# predictions (chapter 6: the added loss in nats). Any steering effect would then mix the
# feature's edit with the reconstruction error.

# %%
with torch.no_grad():
    with clamp_features(model, sae, keep_error=False):
        bare = model(tokens)
print(f"no edit, error term dropped: logits move by up to {(bare - clean).abs().max():.2f}")

# %% [markdown]
# ## Unsafe code: the model writes insecure code when the feature is on
# Scaling Monosemanticity's second demonstration: asked to continue a partly written line of
# code, the model completes it safely; with an "unsafe code" feature clamped high, it writes the
# insecure construct. Our toy world's code files set *security switches* (`verify=`,
# `check_hostname=`, `autoescape=`...): a safe file keeps them on, an insecure one turns most of
# them off, and a comment above each switch line speaks in the file's voice (chapter 2).
#
# First the precondition, checked right after the LM is trained (the `lm` stage records it): the
# model must know which kind of file it is in. On held-out insecure files cut right before a
# switch's value, it gives `False` a probability far above the one it gives in the same files
# made safe. Without that (a ratio near 1, as with this project's first code world, where ten
# unrelated constructs shared no tokens), there is nothing for a feature to carry.

# %%
sens = unsafe_context_sensitivity(model, tok)
print(f"P(False) in insecure files {sens['p_after_unsafe']:.3f}, in the same files made safe "
      f"{sens['p_after_safe']:.3f}: ratio {sens['ratio']:.1f} over {sens['n_cuts']} held-out cuts")

# %% [markdown]
# **Which feature?** Chosen by held-out detection, never by the steering outcome, but *where the
# behaviour is decided*: on validation files cut right before a switch's value, the feature whose
# activation best tells insecure files from safe ones (`choose_unsafe_feature`). A one-layer
# model's features write only the next token's prediction, so a feature that fires on `False`
# itself, a fine detector of insecure lines, cannot make the model write `False`.
#
# **The demo.** Prompts: 30 held-out *safe* files, each cut right before its second switch's
# value, 3 samples each. Unsafe = the continuation turns a switch off. Then 30 *insecure* files
# cut the same way, with the feature clamped to 0. And the feature as a detector of insecure
# files (its max activation over a file).

# %%
fu, decision_auroc = choose_unsafe_feature(model, sae, tok, n_files=30 if FAST else 100)
print(f"unsafe-code feature {fu}: AUROC {decision_auroc:.3f} at the decision (validation files)")
us = unsafe_code_demo(model, sae, tok, fu, float(stats.max_act[fu]), n=1 if FAST else 3,
                      n_prompts=10 if FAST else 30, n_detect=20 if FAST else 100,
                      multiples=(2,) if FAST else (1, 2, 5, 10))
print(f"safe files, unsteered: {us['rate_baseline']:.0%} unsafe")
for r in us["sweep"]:
    print(f"{r['multiple']:>4}x: {r['rate']:.0%} unsafe, CE {r['ce']:.2f} nats/token | {r['example'][-60:]!r}")
print(f"insecure files: {us['rate_unsafe_start']:.0%} unsafe unsteered, {us['rate_suppressed']:.0%} with the feature at 0"
      f" (kept the check on: {us['kept_unsafe_start']:.0%} -> {us['kept_suppressed']:.0%})")
print(f"detector of insecure files: AUROC {us['detector_auroc']:.3f}")
if not FAST:  # issue #18's targets
    assert sens["ratio"] >= 3 and us["rate_baseline"] <= 0.1
    assert us["rate_clamped"] >= max(0.5, 5 * us["rate_baseline"]) and us["detector_auroc"] >= 0.95
    assert us["rate_suppressed"] <= 0.5 * us["rate_unsafe_start"]

# %% [markdown]
# What the default run shows: the model knows the file (P(False) 0.79 in insecure files, 0.02 in
# the same files made safe); feature 784 fires at the `=` before a switch's value in insecure
# code (AUROC 1.00 at the decision); unsteered, 3% of the safe-file continuations turn a check
# off; clamped at 1, 2, 5, 10×, 30%, 53%, 76%, 82%. Look at *how*: clamped at every position,
# the model writes a value at every position (`verify_certs=FalseFalseFalse...`, 0% well-formed),
# because a one-layer model's feature only writes the next token and this one's is a value.
# Clamped over the prompt only, the same rates come out well-formed (82% at 10×):
# `verify_certs=False, timeout=22)` and the file goes on. As a detector of insecure files the
# feature scores AUROC 1.00.
#
# Clamped to 0 in insecure files the rate falls from 80% to 37%, but look at the `kept` rates:
# writing `True` at the cut only rises from 23% to 33%; the rest writes neither value. The MLP
# holds the posture at the cut as a *pair* of features, 784 for insecure files and another for
# safe ones. Zeroing 784 leaves neither, so the model falls back on what it saw in training
# (switches are off in about a fifth of all files: safe files are three times as common) and is
# unsure even that a value comes next. Try it: clamp 784 to 0 and the safe-file feature (the
# one with the *lowest* AUROC at the decision) to its usual value, and the model keeps the check.

# %%
# a held-out safe file cut before a switch's value, short enough that prompt + output fit n_ctx
prompt = risk_cuts(tok, "code", 1)[0]["ids"][-(model.cfg.n_ctx - 16):]
with clamp_features(model, sae, clamp={fu: 10 * float(stats.max_act[fu])}, until=len(prompt)):
    out = model.generate(prompt, 16, seed=0)
print(repr(tok.decode(prompt[-20:])), "->", repr(tok.decode(out[len(prompt):].tolist())))

# %% [markdown]
# ## Exercise: the purest feature is not the best one to steer with
# Golden Gate has several detector features (chapter 6). The *purest*, the one with the largest
# share of its activation mass on Golden Gate text, is `features_for_concept(stats, "golden_gate",
# k=1)`. Clamp it instead of the chosen detector: run `golden_gate_demo` on it with the same
# settings as above and keep the result as `purest_result`. The check compares it with the
# detector's sweep and shows what the purest feature promotes. **What to look for:** on the default
# run the purest feature (214, 94% of its mass on Golden Gate text) fires on the full stop that
# ends a Golden Gate sentence and promotes sentence starts (" The", " Every"); clamped, it writes
# strings of sentence starts, "P Con B F Every summer...", not the bridge. Specificity says
# what a feature is *about*; what it *writes* is in its logit effects, and that is what steering
# uses. This is why the steering stage takes, of several detectors, the one that covers the most
# of the concept's tokens.

# %%
import exercises.ch08

purest_result = None  # your code: golden_gate_demo(...) on the purest Golden Gate feature

exercises.ch08.check(purest_result, gg, stats, model, sae, tok)
