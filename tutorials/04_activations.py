# %% [markdown]
# # Chapter 4 — Collecting activations
#
# **Goal.** Turn the model of chapter 3 into a stream of training data for a sparse autoencoder:
# the activations of the MLP neurons (512 in the default run), one row per token, shuffled across
# many contexts.
#
# Towards Monosemanticity trains on activations from 40 million contexts, shuffled. Why
# shuffle? Tokens of one context share a topic, so their activations are strongly correlated. An
# SAE fed one context after another would chase a drifting distribution: every few steps the
# whole batch is "Golden Gate", then "DNA"... `ActivationBuffer` keeps a large pool of rows from
# many contexts, serves random batches from it, and refills the half it has served.

# %%

import matplotlib.pyplot as plt
import numpy as np
import torch

from sae.buffer import ActivationBuffer, harvest
from sae.run import corpus_tokens, load_run, reproduce
from common import FAST, PRESET, RUN, figures

FIG = figures("04")
reproduce(PRESET, RUN, until="lm")
tok, model = load_run(RUN)
SITE = PRESET.sae.site
if not FAST:
    assert model.cfg.d_mlp == 512, model.cfg

# %% [markdown]
# ## One context, one forward pass
# `harvest` runs the model up to the site (it stops there: the logits are not needed) and drops
# position 0, whose activation norm is an outlier (it attends only to itself).

# %%
tokens, labels = corpus_tokens(PRESET, tok, "val", 200_000 if not FAST else 20_000)
ctx = torch.from_numpy(tokens[: 4 * model.cfg.n_ctx].astype(np.int64)).view(4, -1)
rows = harvest(model, ctx, SITE, drop_first=0).view(4, model.cfg.n_ctx, -1)
norms = rows.norm(dim=-1).mean(0)
print(f"mean activation norm at position 0: {norms[0]:.2f}, at positions 1+: {norms[1:].mean():.2f}")
if not FAST:  # (the seconds-long smoke model is too little trained to show it)
    assert norms[0] > 1.3 * norms[1:].mean(), "position 0 should stand out"

# %% [markdown]
# ## Why shuffling matters
# We look at the stream of rows the SAE would be trained on, in the order it is served, and
# measure how alike *neighbouring* rows are: the cosine similarity of row i and row i+1 after
# subtracting the mean activation of the whole sample (so 0 means "no more alike than two random
# tokens"). Without shuffling, neighbours are neighbouring tokens of one context and share its
# topic, and a batch holds only a handful of contexts; with the buffer they are random tokens from
# all the contexts the buffer holds (the cell prints both numbers), and more as it refills.

# %%
def rows_unshuffled(n_batches: int, batch: int) -> torch.Tensor:
    n_ctx = model.cfg.n_ctx
    per = batch // (n_ctx - 1) + 1
    out = []
    for b in range(n_batches):
        c = torch.from_numpy(tokens[b * per * n_ctx:(b + 1) * per * n_ctx].astype(np.int64)).view(per, n_ctx)
        out.append(harvest(model, c, SITE)[:batch])
    return torch.stack(out)  # (n_batches, batch, d)


batch, n_batches = (256, 10) if FAST else (1024, 40)
plain = rows_unshuffled(n_batches, batch)
buf = ActivationBuffer(model, tokens, SITE, buffer_tokens=16 * batch, batch_size=batch, seed=0)
shuffled = torch.stack([buf.next_batch() for _ in range(n_batches)])
centre = torch.cat([plain, shuffled]).reshape(-1, plain.shape[-1]).mean(0)


def neighbour_cosine(batches: torch.Tensor) -> np.ndarray:
    """Per batch, the mean cosine similarity of consecutive rows (centred)."""
    x = batches - centre
    return torch.nn.functional.cosine_similarity(x[:, :-1], x[:, 1:], dim=-1).mean(1).numpy()


c_plain, c_shuf = neighbour_cosine(plain), neighbour_cosine(shuffled)
n_ctx_batch = -(-batch // (model.cfg.n_ctx - 1))  # contexts a batch of consecutive rows spans
n_ctx_buffer = len(buf.buffer) // (model.cfg.n_ctx - 1)
print(f"a batch of {batch} rows spans {n_ctx_batch} contexts unshuffled; shuffled, it is drawn from a buffer "
      f"that holds the rows of {n_ctx_buffer} contexts at a time (refilled {buf.refills} times so far)")
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(c_plain, "o-", label=f"consecutive tokens (mean {c_plain.mean():.2f})")
ax.plot(c_shuf, "o-", label=f"shuffled buffer (mean {c_shuf.mean():.2f})")
ax.axhline(0, color="gray", lw=0.5)
ax.set_xlabel("batch"); ax.set_ylabel("cosine(row i, row i+1)\n(centred, mean over the batch)")
ax.set_title("Neighbouring training rows: alike without shuffling"); ax.legend()
fig.tight_layout(); fig.savefig(FIG / "shuffling.png", dpi=120)
print(f"neighbouring-row similarity: unshuffled {c_plain.mean():.3f}, shuffled {c_shuf.mean():.3f}")
assert c_plain.mean() > 0.1 and abs(c_shuf.mean()) < 0.05, "the buffer should decorrelate neighbouring rows"

# %% [markdown]
# ## The scale
# Anthropic's April 2024 update normalises activations so that `E‖x‖ = sqrt(d_in)`; then the L1
# coefficient means the same thing at every site and every model. The buffer estimates the
# constant once; the SAE stores it and applies it inside `encode`/`decode`, so we never handle
# scaled activations ourselves.

# %%
s = buf.estimate_scale()
x = buf.next_batch()
print(f"scale {s:.3f}: mean norm {x.norm(dim=1).mean():.2f} -> {(s * x).norm(dim=1).mean():.2f} "
      f"(sqrt(d_in) = {x.shape[1] ** 0.5:.2f})")
assert abs((s * x).norm(dim=1).mean() / x.shape[1] ** 0.5 - 1) < 0.05

# %% [markdown]
# ## Where the SAE starts: the geometric median
# The SAE subtracts its decoder bias `b_dec` from every input before encoding and adds it back
# after decoding: `b_dec` is the point its dictionary's directions start from. Towards
# Monosemanticity initialises it at the *geometric median* of a sample of (scaled) activations, the
# point y that minimises Σ_i ‖x_i − y‖. The mean minimises Σ_i ‖x_i − y‖² instead, so a few rows of
# huge norm (like position 0's above) drag it far; the median hardly moves.
# `SparseAutoencoder.init_b_dec_` does this before training (chapter 5).
#
# ### Exercise: write the geometric median
# **Difficulty** ●●●○○ **Importance** ●●○○○ — one line of the SAE's initialisation, and the
# standard example of a robust statistic.
#
# No formula gives it; Weiszfeld's algorithm finds it by re-weighted means. Write
# `geometric_median(x)` for rows x (n, d):
#
#     y ← the mean of the rows
#     repeat at most 200 times:
#         w_i   = 1 / ‖x_i − y‖                       # far rows count less
#         y_new = Σ_i w_i x_i / Σ_i w_i
#         stop after this step if ‖y_new − y‖ <= 1e-7 · (1 + ‖y‖);   y ← y_new
#
# and return y (d,). The check names five plausible mistakes. Below, the chapter runs your function
# on scaled activations from the buffer beside the library's `sae.autoencoder.geometric_median`.
#
# *Hint:* the rule is the gradient of Σ_i ‖x_i − y‖, Σ_i (y − x_i) / ‖x_i − y‖, set to zero and
# solved for the y outside the norms. Clamp the distances away from 0 (`clamp_min(1e-12)`) in case
# y lands on a row.

# %%
import exercises.ch04


def geometric_median(x):
    """Your code here: return the (d,) point that minimises the sum of the distances to the rows of x."""
    return None


exercises.ch04.GEOMETRIC_MEDIAN.check(geometric_median)

# %%
from sae import autoencoder

x = s * torch.cat([buf.next_batch() for _ in range(8)]).double()  # scaled rows, as the SAE sees them
median, mean, yours = autoencoder.geometric_median(x), x.mean(0), geometric_median(x)


def total_distance(y: torch.Tensor) -> float:
    return (x - y).norm(dim=1).sum().item()


print(f"{len(x)} scaled rows; Σ‖x_i − y‖ at the mean {total_distance(mean):.1f}, at the library's median "
      f"{total_distance(median):.1f}, " + ("at yours: not written yet" if yours is None else
      f"at yours {total_distance(yours):.1f} (‖yours − the library's‖ = {(yours - median).norm():.2g})"))
assert total_distance(median) <= total_distance(mean)

# 1% more rows at 20 times the norm of real ones: how far does each statistic move?
spoiled = torch.cat([x, 20 * x[: len(x) // 100]])
moved_mean, moved_median = (spoiled.mean(0) - mean).norm(), (autoencoder.geometric_median(spoiled) - median).norm()
print(f"1% more rows, at 20x the norm, move the mean by {moved_mean:.2f} and the median by {moved_median:.2f} "
      f"(the rows' typical distance to the median: {(x - median).norm(dim=1).median():.2f})")
assert moved_median < moved_mean

# %% [markdown]
# ## Exercise: a buffer on the residual stream
# Build an `ActivationBuffer` on the residual stream (`blocks.0.hook_resid_post`) instead of the
# MLP neurons, from the same model and tokens (`tokens` above). The check reads rows from it:
# they should have width `d_model` (`model.cfg.d_model`), and `estimate_scale()` should still
# bring their mean norm to `sqrt(d_model)`.
# **What to look for:** the scale the residual stream needs next to the MLP's (`s` above), and
# the norm at position 0 (`harvest` with `drop_first=0`, as at the top of this chapter): is it an
# outlier there too?

# %%
import exercises.ch04

resid_buf = None  # your answer: an ActivationBuffer at blocks.0.hook_resid_post

exercises.ch04.check_resid_buffer(resid_buf, model)
