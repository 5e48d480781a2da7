# %% [markdown]
# # Chapter 8 — Steering by clamping a feature
#
# **Goal.** Reproduce Scaling Monosemanticity's "Golden Gate" demonstration on our model: clamp
# one feature to a multiple of its maximum activation and watch the model talk about the bridge,
# whatever the prompt. Then try the same with "unsafe code", and see where a small dictionary
# falls short.
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
from sae.steering import choose_feature, clamp_features, golden_gate_demo, unsafe_code_demo
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
# At 1× the text is still fluent and sometimes drifts to the bridge ("Commuters walk across the
# bridge from San Francisco to Marin County"); at 2× every sample is about it, in broken
# sentences; by 10× it is a list of bridge words and the coherence cost has climbed from 0.8 to
# about 10 nats/token: the paper's "±100× gives nonsense" arrives earlier in a model this small.
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
# ## Unsafe code: where the tiny model falls short
# The same experiment for `unsafe_code`, plus the feature as a *detector* of insecure snippets.
# On the tiny run this fails, and the reason is the language model, not the dictionary. The toy
# world writes every snippet of an `unsafe_code` segment insecurely, so a model that tracked the
# file's habits would raise its probability of `shell=True` after an earlier `verify=False`. Ours
# does not: the cell below prints the probability it gives the whole insecure construct after
# insecure snippets and after the same snippets made safe (held-out segments), and on the default
# run the two are equal to two decimals. With no such distinction inside the model there is no
# feature to find: `unsafe_code` has no detector feature (chapter 6), and the feature with the
# best token AUROC for it is a mixture (chapter 7). Expect the numbers below to *miss* the targets (clamped
# rate >= 5x baseline and >= 50%, detector AUROC 0.95). Reproducing the paper's unsafe-code
# feature needs a model that learns this, probably a deeper one.

# %%
fu = choose_feature(metrics, "unsafe_code")
us = unsafe_code_demo(model, sae, tok, fu, float(stats.max_act[fu]), n=1 if FAST else 3,
                      n_detect=20 if FAST else 100, multiples=(2,) if FAST else (2, 5, 10))
print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in us.items() if k != "sweep"})
lc = us["lm_context"]
print(f"P(insecure construct) after insecure snippets {lc['p_after_unsafe']:.3f}, after the same snippets made safe "
      f"{lc['p_after_safe']:.3f} ({lc['n_segments']} held-out segments)")
if not FAST:
    assert abs(lc["p_after_unsafe"] - lc["p_after_safe"]) < 0.05, "the model now tells unsafe files apart: update this chapter"

# %% [markdown]
# ## Exercise: the purest feature is not the best one to steer with
# Golden Gate has several detector features (chapter 6). The *purest*, the one with the largest
# share of its activation mass on Golden Gate text, is `features_for_concept(stats, "golden_gate",
# k=1)`. Clamp it instead of the chosen detector: run `golden_gate_demo` on it with the same
# settings as above and keep the result as `purest_result`. The check compares it with the
# detector's sweep and shows what the purest feature promotes. **What to look for:** on the default
# run the purest feature fires on the full stop that ends a Golden Gate sentence and promotes
# " The" and a new line; clamped, it writes sentence starts, not the bridge. Specificity says
# what a feature is *about*; what it *writes* is in its logit effects, and that is what steering
# uses. This is why the steering stage takes, of several detectors, the one that covers the most
# of the concept's tokens.

# %%
import exercises.ch08

purest_result = None  # your code: golden_gate_demo(...) on the purest Golden Gate feature

exercises.ch08.check(purest_result, gg, stats, model, sae, tok)
