# %% [markdown]
# # Chapter 3 — A tiny GPT with hook points
#
# **Goal.** Train the language model whose neurons we will decompose, and learn how to read and
# write its activations by name.
#
# Towards Monosemanticity (Bricken et al., 2023) studied a *one-layer* transformer with a
# residual stream of 128 dimensions and an MLP of 512 neurons. Ours has the same shape; it is
# trained on the toy world of chapter 2 instead of the Pile. One layer is enough for features to
# appear, and small enough to train on a laptop CPU in a few minutes.

# %%
import json

import matplotlib.pyplot as plt
import torch

from sae.gpt import GPT
from sae.run import reproduce
from sae.train_lm import on_concept_rate
from sae.tokenizer import Tokenizer
from common import FAST, PRESET, RUN, figures

FIG = figures("03")

# %% [markdown]
# ## Train (or reuse) the model
# `reproduce(..., until="lm")` trains the tokenizer and the model into `runs/tiny/` and skips
# whatever is already there, so re-running this chapter is instant. On a 2-core CPU the `tiny`
# model takes a few minutes (the run's `stages.json` records how long; the cell prints it). The
# same thing from a shell: `python -m sae train-lm`.

# %%
reproduce(PRESET, RUN, until="lm")
tok = Tokenizer.load(RUN / "tokenizer.json")
model = GPT.load(RUN / "lm.pt")
print(model.cfg)
print(f"{model.num_params():,} parameters outside the embeddings")
stages = json.loads((RUN / "stages.json").read_text())
seconds = stages["tokenizer"].get("seconds", 0) + stages["lm"].get("seconds", 0)
print(f"the tokenizer and the model were trained in {seconds:.0f} s")
if not FAST:  # Towards Monosemanticity's shape, as the introduction says
    assert (model.cfg.n_layer, model.cfg.d_model, model.cfg.d_mlp) == (1, 128, 512), model.cfg

# %% [markdown]
# ## Where the hook points are
# Every block has named identity layers (`HookPoint`s). `blocks.0.mlp.hook_post` is the MLP
# neurons after the GELU: the activations Towards Monosemanticity decomposes.

# %%
for site in model.sites:
    print(site)
tokens = torch.tensor([tok.encode("The Golden Gate Bridge rises above the fog.")])
logits, cache = model.run_with_cache(tokens, ["blocks.0.mlp.hook_post", "blocks.0.hook_resid_post"])
for site, act in cache.items():
    print(f"{site:<28} {tuple(act.shape)}")
assert cache["blocks.0.mlp.hook_post"].shape[-1] == model.cfg.d_mlp

# %% [markdown]
# A hook may also *replace* an activation. Zeroing the MLP neurons (zero-ablation) shows how much
# the model depends on them; chapter 6 uses exactly this as the baseline of "loss recovered".

# %%
from sae.gpt import cross_entropy

with torch.no_grad():
    clean = cross_entropy(model(tokens)[:, :-1], tokens[:, 1:]).item()
    with model.hooks({"blocks.0.mlp.hook_post": lambda act: torch.zeros_like(act)}):
        ablated = cross_entropy(model(tokens)[:, :-1], tokens[:, 1:]).item()
print(f"loss clean {clean:.3f} nats, with the MLP neurons zeroed {ablated:.3f} nats")
assert ablated > clean, "the MLP should matter: zeroing it must hurt"

# %% [markdown]
# ## Inside the attention
# At every position, each of the block's `n_head` heads chooses how much to read from each
# position up to it: its *attention pattern*. `CausalSelfAttention` computes it inside one fused
# call (`F.scaled_dot_product_attention`), so the pattern itself never appears. We write it out.
#
# ### Exercise: write the attention pattern
# **Difficulty** ●●○○○ **Importance** ●●●●○ — "this head attends to the previous token" is a
# statement about this matrix.
#
# Write `attention_pattern(q, k)` for one context's queries and keys, each (n_head, T, d_head):
#
#     scores[h, i, j]  = q[h, i] · k[h, j] / sqrt(d_head)        # query i against key j
#     scores[h, i, j]  = −inf   wherever j > i                    # a token cannot read the future
#     pattern[h, i, :] = softmax over j of scores[h, i, :]        # each query's row sums to 1
#
# and return `pattern` (n_head, T, T). The check names six plausible mistakes. Below, the chapter
# computes q, k and v from the model's weights on the sentence above, sends your pattern through the
# rest of the attention (`pattern @ v`, the heads side by side, the output projection) and compares
# the result with what the model itself wrote at `blocks.0.attn.hook_out`.
#
# *Hint:* mask before the softmax, not after: e^−∞ = 0 removes a key, and the weights that remain
# still sum to 1.

# %%
import exercises.ch03


def attention_pattern(q, k):
    """Your code here: return the (n_head, T, T) pattern; row i holds the weights query i gives each key."""
    return None


exercises.ch03.ATTENTION_PATTERN.check(attention_pattern)

# %%
attn, T, d_model = model.blocks[0].attn, tokens.shape[1], model.cfg.d_model
with torch.no_grad():
    _, cache = model.run_with_cache(tokens, ["blocks.0.hook_resid_pre", "blocks.0.attn.hook_out"])
    x = model.blocks[0].ln_1(cache["blocks.0.hook_resid_pre"][0])  # (T, d_model): what the attention reads
    # as CausalSelfAttention splits them: each of q, k, v (T, d_model) -> (n_head, T, d_head)
    q, k, v = (t.view(T, model.cfg.n_head, -1).transpose(0, 1) for t in attn.c_attn(x).split(d_model, dim=1))
    pattern = attention_pattern(q, k)
    if pattern is None:
        print("your attention pattern: not written yet")
    else:
        out = attn.c_proj((pattern @ v).transpose(0, 1).reshape(T, d_model))
        diff = (out - cache["blocks.0.attn.hook_out"][0]).abs().max().item()
        print(f"the attention output with your pattern differs from the model's by at most {diff:.2g} "
              f"(its entries reach {out.abs().max().item():.2g})")
        words = [tok.token_str(i) for i in tokens[0].tolist()]
        fig, axes = plt.subplots(1, model.cfg.n_head, figsize=(3 * model.cfg.n_head, 3.2), squeeze=False)
        for h, ax in enumerate(axes[0]):
            ax.imshow(pattern[h], cmap="Blues", vmin=0, vmax=1)
            ax.set_title(f"head {h}"); ax.set_xlabel("key"); ax.set_yticks([])
        axes[0, 0].set_yticks(range(T), words, fontsize=7); axes[0, 0].set_ylabel("query")
        fig.tight_layout(); fig.savefig(FIG / "attention_pattern.png", dpi=120)
        print("what each token reads most, per head:")
        for i, w in enumerate(words):
            print(f"{w!r:>12} <- " + "  ".join(f"{words[int(row.argmax())]!r:>10}" for row in pattern[:, i]))

# %% [markdown]
# ## The training curve and the loss per concept
# The labels let us split the validation loss by concept. Templated English becomes very
# predictable; random strings (DNA, base64) stay expensive because their characters are random.

# %%
history = json.loads((RUN / "lm_history.json").read_text())
fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
a1.plot([h["step"] for h in history], [h["loss"] for h in history], lw=0.7, label="train (batch)")
ev = [h for h in history if "val_loss" in h]
a1.plot([h["step"] for h in ev], [h["val_loss"] for h in ev], "o-", label="validation")
a1.set_xlabel("step"); a1.set_ylabel("cross-entropy (nats/token)"); a1.set_title("LM training"); a1.legend()
by = ev[-1]["val_loss_by_label"]
a2.barh(list(by), list(by.values())); a2.invert_yaxis()
a2.set_xlabel("validation loss (nats/token)"); a2.set_title("Loss by concept of the predicted token")
fig.tight_layout(); fig.savefig(FIG / "lm_training.png", dpi=120)
print({k: round(v, 2) for k, v in by.items()})
if not FAST:  # the random strings are the two most expensive concepts
    assert set(sorted(by, key=by.get)[-2:]) == {"dna", "base64"}, by

# %% [markdown]
# ## Does the model stay on topic?
# Prompted with the first words of a held-out segment, the model should continue on the same
# concept. The judge of chapter 2 scores each sampled continuation (48 tokens, temperature 1).
# If the model had not learned the concepts, the SAE would have nothing to find.

# %%
for prompt in ["The Golden Gate", "Einstein", "def fetch_user(url):\n"]:
    out = model.generate([tok.eot_token] + tok.encode(prompt), 40, seed=0)
    print(repr(tok.decode(out[1:].tolist())))
rates = on_concept_rate(model, tok, n_per_concept=2 if FAST else 10)
print({k: round(v, 2) for k, v in rates.items()})
if not FAST:  # a model that learned the concepts stays on topic most of the time
    assert rates["overall"] >= 0.6, f"the model stays on topic in only {rates['overall']:.0%} of continuations"

# %% [markdown]
# ## Exercise: ReLU neurons
# Towards Monosemanticity's model had ReLU neurons; ours has GELU, as GPT-2 does. Does the choice
# matter to the language model? Train the same model with ReLU neurons into a run directory of
# its own, `RUNS / f"{PRESET.name}_relu"` (`runs/tiny_relu`, or `runs/smoke_relu` in fast mode):
# `reproduce(with_overrides(PRESET, ["gpt.activation=relu"]), relu_run, until="lm")`
# (`with_overrides` is in `sae.run.config`; from a shell, `python -m sae train-lm --set
# gpt.activation=relu --out runs/tiny_relu`). It takes as long as the GELU model did: a few
# minutes for the default preset, seconds in fast mode. Set `relu_run` to the directory. The
# check confirms that the run differs from this chapter's in the activation only, and compares
# the two validation losses from the runs' `stages.json`.
# **What to look for:** is the ReLU model's validation loss within 0.1 nats of the GELU model's,
# and does it stay on topic as often (the on-concept rate the check prints)?

# %%
import exercises.ch03

relu_run = None  # your answer: the run directory of the ReLU model, after training it

exercises.ch03.check_relu(relu_run, RUN)
