# %% [markdown]
# # Chapter 4 — Collecting activations
#
# **Goal.** Turn the model of chapter 3 into a stream of training data for a sparse autoencoder:
# the activations of the 512 MLP neurons, one row per token, shuffled across many contexts.
#
# Towards Monosemanticity trains on activations from 40 million contexts, shuffled. Why
# shuffle? Tokens of one context share a topic, so their activations are strongly correlated. An
# SAE fed one context after another would chase a drifting distribution: every few steps the
# whole batch is "Golden Gate", then "DNA"... `ActivationBuffer` keeps a large pool of rows from
# many contexts, serves random batches from it, and refills the half it has served.

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from sae.buffer import ActivationBuffer, harvest
from sae.pipeline import corpus_tokens, get_preset, load_run, reproduce

FAST = os.environ.get("SAE_FAST") == "1"
PRESET = get_preset("smoke" if FAST else "tiny")
RUN = Path(f"runs/{PRESET.name}")
FIG = Path("runs/tutorials/04")
FIG.mkdir(parents=True, exist_ok=True)
reproduce(PRESET, RUN, until="lm")
tok, model = load_run(RUN)
SITE = PRESET.site

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

# %% [markdown]
# ## Why shuffling matters
# We measure how similar consecutive batches are: the cosine similarity between the mean
# activation of batch t and of batch t+1. Without shuffling (batches are consecutive tokens)
# neighbouring batches come from the same few contexts and look alike; with the buffer they are
# independent samples of the whole corpus and the similarity is high *and constant*: every batch
# looks like the average.

# %%
def batch_means_unshuffled(n_batches: int, batch: int) -> torch.Tensor:
    n_ctx = model.cfg.n_ctx
    per = batch // (n_ctx - 1) + 1
    out = []
    for b in range(n_batches):
        c = torch.from_numpy(tokens[b * per * n_ctx:(b + 1) * per * n_ctx].astype(np.int64)).view(per, n_ctx)
        out.append(harvest(model, c, SITE)[:batch].mean(0))
    return torch.stack(out)


batch, n_batches = (256, 10) if FAST else (1024, 40)
plain = batch_means_unshuffled(n_batches, batch)
buf = ActivationBuffer(model, tokens, SITE, buffer_tokens=16 * batch, batch_size=batch, seed=0)
shuffled = torch.stack([buf.next_batch().mean(0) for _ in range(n_batches)])


def consecutive_cosine(m: torch.Tensor) -> np.ndarray:
    m = m - m.mean(0)  # look at how batches differ from the average batch
    return torch.nn.functional.cosine_similarity(m[:-1], m[1:]).numpy()


c_plain, c_shuf = consecutive_cosine(plain), consecutive_cosine(shuffled)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(c_plain, "o-", label=f"consecutive tokens (mean {c_plain.mean():.2f})")
ax.plot(c_shuf, "o-", label=f"shuffled buffer (mean {c_shuf.mean():.2f})")
ax.axhline(0, color="gray", lw=0.5)
ax.set_xlabel("batch t"); ax.set_ylabel("cosine(batch t, batch t+1)\n(mean activation, centred)")
ax.set_title("Consecutive batches: correlated without shuffling"); ax.legend()
fig.tight_layout(); fig.savefig(FIG / "shuffling.png", dpi=120)
print(f"consecutive-batch similarity: unshuffled {c_plain.mean():.3f}, shuffled {c_shuf.mean():.3f}")
assert abs(c_shuf.mean()) < abs(c_plain.mean()) + 0.05, "the buffer should decorrelate consecutive batches"

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
# ## Exercise
# Build a buffer on the residual stream (`blocks.0.hook_resid_post`) instead of the MLP neurons.
# **Check:** its rows have width `d_model` (128) and `estimate_scale()` still brings the mean norm
# to `sqrt(128)`.
