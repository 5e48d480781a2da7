# %% [markdown]
# # Chapter 1: Superposition, and a sparse autoencoder that undoes it
#
# A network with `d` neurons can represent many more than `d` features if the features are
# sparse: it stores them as almost-orthogonal directions and tolerates a little interference.
# This is *superposition* (Elhage et al. 2022, "Toy Models of Superposition"). It is why single
# neurons are hard to read, and why we train sparse autoencoders: an SAE looks for an
# overcomplete dictionary of directions, only a few active at a time, that rebuilds the activations.
#
# This chapter has three parts:
# 1. a toy model that shows superposition appearing as the features get sparser;
# 2. synthetic activations made from a *known* dictionary (Sharkey, Braun & Millidge 2022), on
#    which an SAE can be graded exactly with the mean max cosine similarity (MMCS);
# 3. how MMCS depends on the dictionary size and the L1 coefficient.
#
# Run it with `python tutorials/01_superposition.py` (about a minute on a laptop CPU);
# `SAE_FAST=1` shrinks everything to a few seconds.

# %%

import matplotlib.pyplot as plt
import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder, input_scale_for
from sae.world.toy import SyntheticActivations, SyntheticConfig, ToyModel, ToyModelConfig, dimensions_per_feature, feature_norms, features_stored, max_cosine, mmcs, train_toy_model
from sae.train_sae import TrainSAEConfig, train_sae
from sae.utils import seed_everything
from common import FAST, figures

OUT = figures("01_superposition")
seed_everything(0)

# %% [markdown]
# ## 1. A toy model of superposition
#
# Twenty features, five hidden dimensions: `h = W x`, `x' = ReLU(Wᵀ h + b)`. Feature i is zero
# with probability `1 - p`, else uniform in [0, 1], and matters with importance `0.7^i`. We train
# one model per feature probability `p`, side by side.

# %%
probs = (1.0, 0.3, 0.1, 0.03, 0.01)
toy = ToyModel(ToyModelConfig(n_features=20, d_hidden=5, feature_probability=probs, importance_decay=0.7),
               generator=torch.Generator().manual_seed(0))
losses = train_toy_model(toy, n_steps=800 if FAST else 4000, batch_size=512 if FAST else 1024, lr=3e-3)
stored = features_stored(toy).tolist()
dims = dimensions_per_feature(toy).tolist()
for p, s, d in zip(probs, stored, dims):
    print(f"p = {p:<5}  features stored: {s:2d} of 20 in 5 dimensions   dimensions per feature: {d:.2f}")

fig, axes = plt.subplots(2, len(probs), figsize=(3 * len(probs), 6))
norms = feature_norms(toy)
for i, p in enumerate(probs):
    W = toy.W[i].detach()  # (d_hidden, n_features)
    axes[0, i].imshow(W.T @ W, cmap="RdBu", vmin=-1, vmax=1)
    axes[0, i].set_title(f"WᵀW, p = {p}")
    axes[1, i].barh(range(20), norms[i], color="tab:blue")
    axes[1, i].invert_yaxis()
    axes[1, i].set_xlim(0, 1.3)
    axes[1, i].set_title("‖W_i‖ per feature")
fig.tight_layout()
fig.savefig(f"{OUT}/toy_model.png", dpi=100)

# %% [markdown]
# With dense features (p = 1) the model keeps the five most important ones, one per dimension
# (WᵀW is a small identity block; the other norms are 0). That is after the full 4,000 steps: fast
# mode's 800 stop while a few more features still have norms above the 0.5 that counts as stored,
# and it prints about 8 where the full run prints 5. As p falls, more and more features get a
# direction of their own although only five dimensions exist: off-diagonal entries appear in WᵀW
# (interference) and the dimensions per feature fall below 1 (1/2 means antipodal pairs).

# %%
assert dims[0] > 0.85, "dense features should be stored orthogonally, about one dimension each"
assert stored[-1] > 5 and stored[-1] > stored[0], "sparse features should be stored in superposition (more than 5)"

# %% [markdown]
# ## 2. Synthetic activations with a known dictionary, and an SAE that recovers it
#
# Here the ground truth is a dictionary of random unit directions (512 in 256 dimensions, as
# in Sharkey et al.; smaller in fast mode). Each sample is a sum of a few of them, feature i
# firing with probability ∝ 0.99^i and a magnitude uniform in [0, 1]. Every direction is in
# superposition with all the others, and no neuron (coordinate) lines up with any of them.
#
# We train a ReLU SAE with twice as many features as the truth, scale the inputs so that
# E‖x‖ = sqrt(d) (this is what makes an L1 coefficient mean the same thing at every site), and
# score it with MMCS: for each true feature, the best cosine with any decoder row, averaged.
#
# One setting matters more than it looks: the encoder starts as the decoder's transpose with
# rows of norm 0.1 (`decoder_init_norm=0.1`), not 1. With unit rows every feature starts firing
# on about half of all inputs and the L1 penalty spends the early steps silencing them, and the
# dictionary settles on mixtures of true directions (MMCS about 0.45 on the benchmark task of
# `benchmarks/bench_recovery.py`); from small rows the features grow from quiet towards the
# directions that reduce the error most (MMCS 0.99 on all five instances of that task).

# %% [markdown]
# ### Exercise: write the SAE's forward pass and loss
# **Difficulty** ●●○○○ **Importance** ●●●●● — everything after this chapter is this function.
#
# Write `sae_forward(x, W_enc, b_enc, W_dec, b_dec, l1_coeff)` for a batch `x` (batch, d_in):
#
#     f     = ReLU((x − b_dec) @ W_enc + b_enc)                       # (batch, d_sae)
#     x̂     = f @ W_dec + b_dec                                       # (batch, d_in)
#     loss  = mean over the batch of ‖x − x̂‖²  +  λ · mean over the batch of Σ_i f_i ‖W_dec[i]‖
#
# and return `(f, x_hat, loss)`. The check runs it on small random inputs and names the mistake it
# finds (there are five classic ones). Below, the chapter computes your loss on the trained SAE
# beside the library's.
#
# *Hint:* `‖x − x̂‖²` sums over the d_in coordinates; `torch.nn.functional.mse_loss` averages over
# them too, which divides the error by d_in and makes λ mean something else.

# %%
import exercises.ch01


def sae_forward(x, W_enc, b_enc, W_dec, b_dec, l1_coeff):
    """Your code here: return (f, x_hat, loss)."""
    return None


exercises.ch01.SAE_FORWARD.check(sae_forward)

# %%
if FAST:
    world = SyntheticConfig(n_features=64, d=32, decay=0.97, mean_active=3)
    d_sae, steps, batch = 128, 300, 256
else:
    world = SyntheticConfig(n_features=512, d=256)
    d_sae, steps, batch = 1024, 2400, 256
data = SyntheticActivations(world)
scale = input_scale_for(data.sample(4096, torch.Generator().manual_seed(99))[0])


def train(d_sae: int, l1: float, steps: int = steps, seed: int = 0) -> tuple[SparseAutoencoder, list[dict]]:
    sae = SparseAutoencoder(SAEConfig(d_in=world.d, d_sae=d_sae, arch="relu", decoder_init_norm=0.1),
                            generator=torch.Generator().manual_seed(seed))
    sae.set_input_scale_(scale)
    hist = train_sae(sae, data.batches(batch, seed=1), TrainSAEConfig(n_steps=steps, lr=3e-3, l1_coeff=l1, log_every=0))
    return sae, hist


sae, hist = train(d_sae, l1=2.0)
score = mmcs(sae.W_dec, data.dictionary)
print(f"ReLU SAE, {d_sae} features: MMCS {score:.4f}, L0 {hist[-1]['l0']:.1f} (true {world.mean_active:g}), "
      f"FVU {hist[-1]['fvu']:.3f}")

best = max_cosine(sae.W_dec, data.dictionary)
x = data.sample(1024, torch.Generator().manual_seed(7))[0]
with torch.no_grad():
    library_loss = sae(x, l1_coeff=2.0).loss.item()
    yours = sae_forward(x * sae.input_scale, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, 2.0)
print(f"loss on a fresh batch (scaled inputs): the library's {library_loss:.4f}, "
      + ("yours: not written yet" if yours is None else f"yours {yours[2].item():.4f}"))

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].plot([h["loss"] for h in hist], label="loss")
axes[0].plot([h["mse"] for h in hist], label="mse")
axes[0].set_yscale("log")
axes[0].set_xlabel("step")
axes[0].legend()
axes[1].scatter(data.probs, best, s=6)
axes[1].set_xscale("log")
axes[1].set_xlabel("true feature's firing probability")
axes[1].set_ylabel("best cosine with a decoder row")
fig.tight_layout()
fig.savefig(f"{OUT}/sae_recovery.png", dpi=100)

# %% [markdown]
# The scatter shows which features are hardest: the rare ones (on the left, firing on a
# fraction of a percent of samples) get the fewest gradient signals. The common ones come out at
# cosine ≈ 1: the SAE has found the true directions although every one of them was in superposition.

# %%
common = data.probs >= data.probs.median()
print(f"best cosine: {best[common].mean():.4f} on the more common half of the true features, "
      f"{best[~common].mean():.4f} on the rarer half")
assert best[common].mean() > (0.95 if FAST else 0.98), f"the SAE should recover the common features (mean best cosine {best[common].mean():.3f})"
assert score > (0.9 if FAST else 0.93), f"the SAE should recover most of the known dictionary (MMCS {score:.3f})"

# %% [markdown]
# ## 3. MMCS against dictionary size and the L1 coefficient
#
# Too small a dictionary cannot hold every true feature. Too small an L1 coefficient lets
# features be dense mixtures; too large a one starves rare features and shrinks everything.

# %%
n_true = world.n_features
sizes = [n_true // 4, n_true // 2, n_true, 2 * n_true]
l1s = [0.5, 2.0, 8.0]
sweep_steps = 150 if FAST else 400
grid = {}
for l1 in l1s:
    for size in sizes:
        s, _ = train(size, l1, steps=sweep_steps)
        grid[(l1, size)] = mmcs(s.W_dec, data.dictionary)
        print(f"l1 {l1:<4} dictionary {size:5d}: MMCS {grid[(l1, size)]:.3f}")

fig, ax = plt.subplots(figsize=(5, 3.5))
for l1 in l1s:
    ax.plot(sizes, [grid[(l1, s)] for s in sizes], marker="o", label=f"λ = {l1}")
ax.axvline(n_true, color="gray", ls=":", label="true dictionary size")
ax.set_xscale("log", base=2)
ax.set_xlabel("SAE dictionary size")
ax.set_ylabel("MMCS")
ax.legend()
fig.tight_layout()
fig.savefig(f"{OUT}/mmcs_sweep.png", dpi=100)

# %% [markdown]
# MMCS climbs with the dictionary size: a dictionary smaller than the truth cannot hold every
# true feature. The L1 coefficient matters too, in both directions: too small a λ leaves features
# as dense mixtures of true directions (each reconstructs well, none is one feature), too large
# a one starves the rarer features and shrinks everything. The middle value does best at every
# size here. (These runs are shorter than section 2's, so their MMCS is lower.)

# %%
for l1 in l1s:
    assert grid[(l1, 2 * n_true)] > grid[(l1, n_true // 4)], "a bigger dictionary should recover more of the truth"
middle = l1s[1]
assert all(grid[(middle, 2 * n_true)] > grid[(l1, 2 * n_true)] for l1 in l1s if l1 != middle), \
    f"λ = {middle} should beat both extremes at the largest size: {grid}"
print(f"figures in {OUT}/")

# %% [markdown]
# ## Exercise: correlated features
# So far every feature fired independently of the others. In real activations features fire
# together (a code token comes with other code tokens), and Sharkey et al. report that correlation
# makes recovery harder: an SAE may merge features that fire together into shared directions.
#
# Write `train_correlated(data)`: train the SAE of section 2 (`d_sae` = twice the true features,
# the largest dictionary of section 3; λ = 2, `steps` steps, the input scale set from a sample of
# `data`) on `data.batches(...)`, and return it. The check calls it with the correlated activations
# (`SyntheticActivations(replace(world, correlation=0.5))`: the directions and firing
# probabilities of `world`, but features that load on the same hidden factors fire together),
# counts what it trains on, recomputes the MMCS of its decoder against the true dictionary and
# compares it with `score`, the same SAE trained on uncorrelated data.
# **What to look for:** does MMCS at the largest dictionary stay above 0.9, or do correlated
# features get merged? Then try `correlation=0.9` (the check's `correlation=` argument): how much
# correlation does it take to hurt?

# %%
def train_correlated(data: SyntheticActivations) -> SparseAutoencoder:
    """Your code here: the SAE of section 2, trained on `data`."""
    return None


exercises.ch01.check_correlated(train_correlated, world, uncorrelated=score)
