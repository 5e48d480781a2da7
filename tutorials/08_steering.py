# %% [markdown]
# # Chapter 8 — Steering by clamping a feature
#
# **Goal.** Reproduce Scaling Monosemanticity's "Golden Gate" demonstration on our model: clamp
# one feature to a multiple of its maximum activation and watch the model talk about the bridge,
# whatever the prompt. Then the "unsafe code" demonstration: clamp an insecure-code feature and
# watch the model turn security checks off in code that was keeping them on.
#
# The splice (maths in `sae/steering/clamp.py`): at the SAE's site, `x → decode(f') + (x − decode(f))`
# with `f'` the edited features. The second term is the SAE's *error*: keeping it makes the splice
# an exact no-op until a feature is edited, so every change in behaviour is the edited feature's.

# %%
import json

import matplotlib.pyplot as plt
import torch

from sae.run import load_run, load_sae, reproduce, run_feature_stats
from sae.steering import (FLUENT_CE, clamp_features, golden_gate_demo, risk_cuts, unsafe_code_demo,
                          unsafe_context_sensitivity)
from common import FAST, PRESET, RUN, figures

FIG = figures("08")
reproduce(PRESET, RUN, until="evaluate")
tok, model = load_run(RUN)
sae = load_sae(RUN)
concepts = json.loads((RUN / "metrics.json").read_text())["concepts"]["rows"]
stats = run_feature_stats(RUN)
max_acts = stats.max_act.tolist()

tokens = torch.tensor([[tok.eot_token] + tok.encode("Simmer the soup over low heat.")])
with torch.no_grad():
    clean = model(tokens)
    with clamp_features(model, sae):
        spliced = model(tokens)
print(f"unedited splice changes the logits by at most {(spliced - clean).abs().max():.2e}")
assert (spliced - clean).abs().max() < 1e-4

# %% [markdown]
# ## What counts as steered
# Golden Gate Claude talked about the bridge *in fluent sentences*. Text full of bridge words in
# broken sentences is a broken model, not a steered one. So a continuation counts as steered only
# when the judge of chapter 2 finds it on topic **and** it is fluent: the clean model's
# cross-entropy of it is at most `FLUENT_CE` nats/token (held-out toy-world prose scores about
# 0.6, the model's own samples at most about 1.9, "the the the" 6 to 10).
#
# ## Which feature, and how hard? Chosen on validation prompts
# Golden Gate has several detector features (chapter 6): each puts most of its activation mass on
# Golden Gate text and lights up across its segments. Detection cannot say which one *steers*: a
# detector that fires on the full stop ending a bridge sentence writes "a sentence starts here",
# and clamped at every position it breaks every sentence. So we tune the choice as one tunes any
# hyperparameter: every detector is clamped at every multiple on *validation* prompts (other
# neutral prompts, other seeds), and the (feature, multiple) with the most steered continuations
# wins. Only then do the test prompts (ten neutral openings: cooking, weather, sports, animals)
# measure it.

# %%
settings = dict(n=2, n_val=2, n_val_prompts=1, max_candidates=2, multiples=(1, 3)) if FAST else {}
gg = golden_gate_demo(model, sae, tok, concepts, max_acts, log=print, **settings)
s = gg["summary"]
print(f"rule: {s['rule']}")
for c in gg["choice"]["candidates"]:
    print(f"  feature {c['feature']:>4}: best at {c['multiple']}x, steered {c['fluent_rate']:.0%} of validation "
          f"samples (on topic {c['rate']:.0%}, CE {c['ce']:.2f}); promotes {c['promotes']}")
print(f"test prompts, feature {s['feature']}: unsteered {s['fluent_baseline']:.0%} steered")
for r in gg["sweep"]:
    print(f"{r['multiple']:>4}x: {r['fluent_rate']:.0%} steered, {r['rate']:.0%} on topic, CE {r['ce']:.2f} | "
          f"{'' if r['example_steered'] else '(not steered) '}{r['example'][:80]!r}")
fig, ax1 = plt.subplots(figsize=(6.5, 4))
ms = [r["multiple"] for r in gg["sweep"]]
ax1.plot(ms, [r["rate"] for r in gg["sweep"]], "o-", color="tab:orange", label="on topic")
ax1.plot(ms, [r["fluent_rate"] for r in gg["sweep"]], "o-", color="tab:green", label="steered (on topic, fluent)")
ax1.set_xscale("log"); ax1.set_xlabel("clamp value (× max activation)")
ax1.set_ylabel("fraction of samples"); ax1.set_ylim(0, 1.05)
ax2 = ax1.twinx()
ax2.plot(ms, [r["ce"] for r in gg["sweep"]], "s--", color="tab:blue", label="CE under the clean model")
ax2.axhline(FLUENT_CE, color="tab:blue", lw=0.8, ls=":")
ax2.set_ylabel("CE of the text (nats/token)")
ax1.set_title(f"Clamping Golden Gate feature {s['feature']}"); fig.legend(loc="upper left", fontsize=8)
fig.tight_layout(); fig.savefig(FIG / "golden_gate_sweep.png", dpi=110)
assert s["fluent_rate"] <= s["rate"], "a steered continuation is on topic by definition"
print(f"at {s['multiple']}x: {s['fluent_rate']:.0%} steered against {s['fluent_baseline']:.0%} unsteered "
      f"(sampled at temperature 1: {s['fluent_rate_t1']:.0%} against {s['fluent_baseline_t1']:.0%})")

# %% [markdown]
# Read the sweep from left to right: the on-topic rate climbs with the clamp, and so does the
# clean model's CE of the text. The steered rate rises with the on-topic rate only while the text
# stays fluent, then falls to zero while the on-topic rate is still high: the window is narrow. In
# a one-layer model this is no accident. The MLP is the last thing before the unembedding, so a
# clamped MLP feature adds the same push to the next-token logits at every position, whatever
# the sentence needs there: strong enough to choose the bridge at every token, it leaves no room
# for "the" and "of". The fluent text comes from a push just strong enough to tip the model into a
# bridge sentence, which attention then carries on. The paper's ±100× gives nonsense; here it is:

# %%
with clamp_features(model, sae, clamp={s["feature"]: 100 * max_acts[s["feature"]]}):
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
# ### Exercise: write the clamp
# **Difficulty** ●●○○○ **Importance** ●●●●○ — this one line of maths is the whole steering method.
#
# Write `clamp_splice(x, W_enc, b_enc, W_dec, b_dec, feature, value)` for activations `x` (batch,
# d_in) in the SAE's (scaled) input space:
#
#     f   = ReLU((x − b_dec) @ W_enc + b_enc)          # the features
#     f'  = f with f[:, feature] = value               # the edit, at every position
#     x'  = (f' @ W_dec + b_dec) + (x − (f @ W_dec + b_dec))   # decode(f') + the SAE's error
#
# and return `x'`. The check names four classic mistakes. The cell after it puts your splice into
# the model (a hook at the SAE's site) and compares the logits with the library's
# `clamp_features`.
#
# *Hint:* both decodes share `b_dec` and are linear in `f`, so `x'` simplifies to
# `x + (value − f[:, feature]) · W_dec[feature]`: with `value = f[:, feature]` nothing changes.

# %%
import exercises.ch08


def clamp_splice(x, W_enc, b_enc, W_dec, b_dec, feature, value):
    """Your code here: the activations with `feature` clamped to `value`, the error term kept."""
    return None


exercises.ch08.CLAMP.check(clamp_splice)

# %%
f_demo, v_demo = s["feature"], 3 * max_acts[s["feature"]]
scale = sae.input_scale
with torch.no_grad():
    with clamp_features(model, sae, clamp={f_demo: v_demo}):
        library = model(tokens)
    yours = None
    if clamp_splice(tokens.new_zeros(1, sae.cfg.d_in).float(), sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, 0, 0.0) is not None:
        def your_hook(act):
            x = act.reshape(-1, act.shape[-1]) * scale
            return (clamp_splice(x, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, f_demo, v_demo) / scale).reshape(act.shape)
        with model.hooks({sae.cfg.site: your_hook}):
            yours = model(tokens)
print(f"feature {f_demo} clamped to 3x: the logits move by up to {(library - clean).abs().max():.2f}; "
      + ("your splice: not written yet" if yours is None else f"your splice differs from the library's by up to {(yours - library).abs().max():.2e}"))

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
# value, 3 samples each. Unsafe = the continuation turns a switch off; steered = unsafe in
# well-formed code (`False` followed by `)`, `,` or a new line) that the clean model finds fluent.
# The multiple is the one with the most steered continuations on *validation* files. Then 30
# *insecure* files cut the same way, with the feature clamped to 0. And the feature as a detector
# of insecure files (its max activation over a file).

# %%
us = unsafe_code_demo(model, sae, tok, max_acts, log=print,
                      **(dict(n=1, n_prompts=10, n_detect=20, n_files=30, multiples=(2,)) if FAST else {}))
u = us["summary"]
print(f"unsafe-code feature {u['feature']}: AUROC {u['decision_auroc']:.3f} at the decision (validation files)")
print(f"safe files, unsteered: {u['rate_baseline']:.0%} unsafe")
for r in us["sweep"]:
    po = r["prompt_only"]
    print(f"{r['multiple']:>4}x: everywhere {r['rate']:.0%} unsafe ({r['wellformed_rate']:.0%} well-formed); over the "
          f"prompt {po['rate']:.0%} unsafe, {po['fluent_rate']:.0%} well-formed and fluent | {po['example'][-50:]!r}")
print(f"insecure files: {u['rate_unsafe_start']:.0%} unsafe unsteered, {u['rate_suppressed']:.0%} with the feature at 0"
      f" (kept the check on: {u['kept_unsafe_start']:.0%} -> {u['kept_suppressed']:.0%})")
print(f"detector of insecure files: AUROC {u['detector_auroc']:.3f}")
fu = u["feature"]
assert u["fluent_clamped_prompt"] <= u["wellformed_clamped_prompt"] <= 1

# %% [markdown]
# Look at *how* the clamp works, in the lines above. Clamped at every position, the model writes
# a value at every position (`verify_certs=FalseFalseFalse...`, none well-formed), because a
# one-layer model's feature only writes the next token and this one's is a value. Clamped over
# the prompt only, the model reads the edit at the decision and writes the rest itself, and the
# same rates come out well-formed: `verify_certs=False, timeout=22)` and the file goes on.
#
# Clamped to 0 in insecure files the unsafe rate falls, but compare the `kept` rates: writing
# `True` at the cut rises much less; the rest writes neither value. The MLP holds the posture at
# the cut as a *pair* of features, one for insecure files and one for safe ones. Zeroing the
# first leaves neither, so the model falls back on what it saw in training (switches are off in
# about a fifth of all files: safe files are three times as common) and is unsure even that a
# value comes next. Try it: clamp the unsafe feature to 0 and the safe-file feature (the one with
# the *lowest* AUROC at the decision) to its usual value, and the model keeps the check.

# %%
# a held-out safe file cut before a switch's value, short enough that prompt + output fit n_ctx
prompt = risk_cuts(tok, "code", 1)[0]["ids"][-(model.cfg.n_ctx - 16):]
with clamp_features(model, sae, clamp={fu: 10 * float(stats.max_act[fu])}, until=len(prompt)):
    out = model.generate(prompt, 16, seed=0)
print(repr(tok.decode(prompt[-20:])), "->", repr(tok.decode(out[len(prompt):].tolist())))

# %% [markdown]
# ## Is a feature a *good* handle? The field's question, answered exactly
# The demonstrations show that a feature *can* steer. Since Scaling Monosemanticity the field has
# asked whether it is a good way to steer, against cheap baselines. AxBench (Wu et al. 2025) found,
# with an LLM judge on Gemma-2, that prompting beats everything and that a DiffMean vector (the mean
# activation on the concept minus the mean elsewhere) beats SAE features. Arad et al. (2025) found
# that SAE features steer 2-3x better when chosen by what they *write* (their effect on the
# concept's tokens' logits) rather than by what they *detect*.
#
# Our toy world labels every sentence, so the question has an exact answer here: the steering
# benchmark (`sae/steering/benchmark.py`, the `steer_eval` stage of `reproduce`, or `python -m sae
# steer-eval --run ...`) takes every concept, nine methods (SAE clamp on detector features, on
# output-score features, SAE direction added, two SAE features together, DiffMean, a logistic
# probe's direction, the best neuron, random directions, prompting), chooses each method's unit
# and strength on validation prompts, and measures it on other test prompts: the share of
# continuations that are mostly on the target (sentence by sentence) *and* fluent.

# %%
from sae.run import Run
from sae.steering import benchmark

reproduce(PRESET, RUN, until="steer_eval")
bench = Run(RUN).result("steer_eval")
print(f"{'concept':<13}{'unsteered':>10}" + "".join(f"{m:>11}" for m in benchmark.METHODS) + "   winner")
for c, row in bench.concepts.items():
    print(f"{c:<13}{row['unsteered']['steered']:>10.0%}"
          + "".join(f"{row['methods'][m]['steered']:>11.0%}" for m in benchmark.METHODS) + f"   {row['winner']}")
mean = {m: sum(row["methods"][m]["steered"] for row in bench.concepts.values()) / len(bench.concepts)
        for m in benchmark.METHODS}
sae_mean = sum(row["methods"][row["sae_best"]]["steered"] for row in bench.concepts.values()) / len(bench.concepts)
sae_wins = sum(row["winner"] in benchmark.SAE_METHODS for row in bench.concepts.values())
print(f"\nmean steered over {len(bench.concepts)} concepts: the SAE method chosen on validation {sae_mean:.0%}, "
      f"DiffMean {mean['diffmean']:.0%}, probe {mean['probe']:.0%}, neuron {mean['neuron']:.0%}, "
      f"prompting {mean['prompt']:.0%}, random control {mean['random']:.0%}")
print(f"an SAE method wins on {sae_wins} of {len(bench.concepts)} concepts; "
      f"{'it beats DiffMean on average' if sae_mean > mean['diffmean'] else 'DiffMean is as good or better on average'}; "
      f"prompting {'wins here, as in AxBench' if mean['prompt'] >= max(mean.values()) else 'does not win here, unlike AxBench'}")
assert all(0 <= row["methods"][m]["steered"] <= 1 for row in bench.concepts.values() for m in benchmark.METHODS)

# %% [markdown]
# **What to look for** (over five seeds, in docs/results.md; your run is like one of them, and one
# run's rates move by ±7 points): the dictionary is a usable handle, not a privileged one. DiffMean
# and the probe, directions fitted straight to the labels, steer about as often as the best SAE
# method on average (36% and 35% against 34%) and beat it on most prose concepts, as AxBench found;
# the SAE loses most on Arabic, a concept a direction names whole but the dictionary splits. Two
# things differ from AxBench. Prompting steers almost nothing: a one-layer model reads a preceding
# sentence of the concept but follows the neutral prompt after it, while Gemma follows
# instructions. And choosing features by what they write (output score) helps a little on average
# (32% against 29%), not 2-3×: a one-layer feature writes the same push to the logits at every
# position, and whether that push makes *fluent* text is what the validation sweep finds. The
# random directions, added at the norm DiffMean chose, stay near zero: the harness does not invent
# steering. Pushed harder, one random direction does move the text, onto whatever concept it
# happens to point at (the curves in the report's figure): "steers" needs a target and fluency, not
# just change.
#
# **Would a deeper model make the feature a better handle?** Here the clamped feature is the last
# thing before the unembedding, so it writes the same push to the logits at every position;
# Scaling Monosemanticity steered in the middle of a deep model, where later layers can integrate
# the push. The same pipeline with two layers (`python -m sae reproduce --set gpt.n_layer=2`, the
# SAE on the first layer), seeds 0-4 (docs/results.md, "Depth"), one layer → two layers:
#
# | averaged over 12 concepts and 5 seeds | one layer | two layers |
# |---|---|---|
# | SAE method chosen on validation | 34% | 37% |
# | DiffMean | 36% | 43% |
# | logistic probe | 35% | 37% |
# | seed × concept cells an SAE method wins | 25 of 60 | 20 of 60 |
# | seeds with Golden Gate ≥ 60% (SAE method chosen on validation) | 3 of 5 | 3 of 5 |
#
# Depth helps every direction, and the directions fitted to the labels most, so the default stays
# one layer. Try it: `--set gpt.n_layer=2` on any command trains the two-layer model.

# %% [markdown]
# ## Exercise: the purest feature is not the best one to steer with
# The *purest* Golden Gate feature, the one with the largest share of its activation mass on
# Golden Gate text, is `features_for_concept(stats, "golden_gate", k=1)`. Clamp it at the same
# multiples as the sweep above on the same test prompts with `topic_sweep(model, sae, tok,
# feature, max_acts[feature], gg["prompts"], multiples=..., n=...)` (it returns the unsteered row
# and one row per multiple), with `n=gg["n"]` samples per prompt, and keep
# `{"feature": ..., "sweep": rows}` as `purest_result`. The check prints both sweeps side by side
# and what each feature promotes, and recomputes the first row. **What to look for:** does the
# purest feature steer at all? Specificity says what a feature is *about* (where it fires); what it
# *writes* is in its logit effects, which the check prints, and that is what steering uses. A
# feature that fires on the full stop ending a bridge sentence, for example, promotes sentence
# starts (" The", " Every"), and clamped it writes strings of them, not the bridge. The validation
# sweep above lists what each candidate promotes too.

# %%
from sae.steering import topic_sweep  # noqa: F401  (for your answer)

purest_result = None  # your code: {"feature": ..., "sweep": topic_sweep(...)[1]} for the purest feature

exercises.ch08.check(purest_result, gg, stats, model, sae, tok)
