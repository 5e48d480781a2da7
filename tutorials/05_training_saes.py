# %% [markdown]
# # Chapter 5: Training sparse autoencoders: dead features and resampling
#
# A feature that stops firing gets no gradient from the reconstruction or from the L1 penalty:
# it is *dead*, a wasted column of the dictionary. Towards Monosemanticity (Bricken et al. 2023,
# appendix "Neuron Resampling") revives dead features by *resampling* them: at a few scheduled
# steps, every feature that has not fired for a window of steps gets a new direction taken from
# an input the SAE reconstructs badly (drawn with probability ∝ loss²), a small encoder column
# along it (0.2 × the mean norm of alive encoder columns), a zero bias, and fresh Adam moments.
#
# This chapter uses synthetic activations with a known dictionary (chapter 1) so that it needs no
# language model. We provoke dead features with a deliberately high learning rate and compare:
# - no resampling;
# - resampling as in the paper (new encoder bias 0);
# - resampling with a "quiet" bias: each new feature's bias is lowered until it fires on at most
#   1% of the resampling sample (`TrainSAEConfig.resample_fire_frac`, this library's default).
#
# A later section of this chapter trains SAEs on a real model's activations.
#
# Run it with `python tutorials/05_training_saes.py`; `SAE_FAST=1` shrinks the work.

# %%

import matplotlib.pyplot as plt
import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.world.toy import SyntheticActivations, SyntheticConfig, mmcs
from sae.train_sae import TrainSAEConfig, train_sae
from sae.utils import seed_everything
from common import FAST, PRESET, RUN, figures

OUT = figures("05_training_saes")
seed_everything(0)

# %% [markdown]
# ## 1. Dead features at a high learning rate, with and without resampling
#
# 512 true features in 256 dimensions, a 1024-feature ReLU SAE, and a learning rate of 2e-2 on
# unscaled inputs (‖x‖ ≈ 1.2): each Adam step moves every encoder bias by up to 0.02, large next
# to pre-activations of order 0.1 to 1, so whole groups of features are pushed below zero and
# stop firing. A feature counts as dead after 50 steps without firing.

# %%
data = SyntheticActivations(SyntheticConfig(n_features=512, d=256))
x_norm = data.sample(8192, torch.Generator().manual_seed(0))[0].norm(dim=1).mean().item()
assert abs(x_norm - 1.2) < 0.1, f"the text says ‖x‖ ≈ 1.2, the data has {x_norm:.2f}"
steps = 250 if FAST else 300
resample_at = (100, 150, 200)


def run(resample_steps=(), fire_frac=0.01):
    sae = SparseAutoencoder(SAEConfig(d_in=256, d_sae=1024), generator=torch.Generator().manual_seed(0))
    cfg = TrainSAEConfig(n_steps=steps, lr=2e-2, l1_coeff=0.17, dead_window=50, resample_steps=resample_steps,
                         resample_inputs=8192, resample_fire_frac=fire_frac, log_every=0 if FAST else 50)
    return sae, train_sae(sae, data.batches(256, seed=1), cfg)


runs = {"no resampling": run()}
runs["resampling, quiet bias (default)"] = run(resample_at, fire_frac=0.01)
if not FAST:
    runs["resampling, b_enc = 0 (paper)"] = run(resample_at, fire_frac=0.0)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for name, (sae, hist) in runs.items():
    axes[0].plot([h["dead_frac"] for h in hist], label=name)
    axes[1].plot([h["loss"] for h in hist], label=name)
for ax in axes:
    for s in resample_at:
        ax.axvline(s, color="gray", ls=":", lw=0.8)
    ax.set_xlabel("step")
axes[0].set_ylabel("dead fraction (no firing in 50 steps)")
axes[1].set_ylabel("loss")
axes[1].set_yscale("log")
axes[0].legend(fontsize=8)
fig.tight_layout()
fig.savefig(f"{OUT}/dead_features.png", dpi=100)

mean_dead = {}
for name, (sae, hist) in runs.items():
    mean_dead[name] = sum(h["dead_frac"] for h in hist[100:]) / len(hist[100:])
    print(f"{name:34s} mean dead fraction after step 100: {mean_dead[name]:6.1%}   "
          f"final FVU {hist[-1]['fvu']:.3f}   MMCS {mmcs(sae.W_dec, data.dictionary):.3f}")

# %% [markdown]
# Without resampling, a large share of the dictionary is dead at any moment after the first burst
# (features also come back on their own when b_dec and their neighbours move, and die again). Each
# resample brings the dead fraction to about zero, and it stays far lower afterwards.

# %%
assert mean_dead["resampling, quiet bias (default)"] * 2.5 <= mean_dead["no resampling"], (
    "resampling should cut the dead fraction at least 2.5-fold"
)
after = [h["dead_frac"] for h in runs["resampling, quiet bias (default)"][1] if "resample" in h]
assert after and max(after) < 0.05, f"each resample should bring the dead fraction to about zero ({after})"

# %% [markdown]
# ## 2. The loss spike right after a resample
#
# Each resample event records how many features it replaced and the fraction of the sample each
# new feature fires on right away. With the paper's zero bias a new feature fires on every input
# whose centred version has a positive projection on its direction: about half of them in a
# healthy SAE, and nearly all once b_dec has drifted away from the data, as it does at this
# learning rate. Hundreds of such features switching on together add a large error to every
# reconstruction: the loss jumps by orders of magnitude. The quiet bias keeps each new feature to
# the 1% of inputs most like its source, and the loss barely moves.

# %%
spikes = {}
for name, (sae, hist) in runs.items():
    for h in hist:
        info = h.get("resample")
        if info and info["n_resampled"]:
            ratio = h["loss"] / hist[h["step"] - 2]["loss"]
            spikes.setdefault(name, []).append(ratio)
            print(f"{name:34s} step {h['step'] - 1}: {info['n_resampled']:4d} resampled, firing on "
                  f"{info['fire_frac_mean']:6.1%} of inputs, loss ×{ratio:.2f} on the next step")

# %%
assert max(spikes["resampling, quiet bias (default)"]) < 2, "a quiet resample should not blow up the loss"
if not FAST:
    assert max(spikes["resampling, b_enc = 0 (paper)"]) > 10, "with zero biases the new features flood the output"
print(f"figures in {OUT}/")

# %% [markdown]
# ### Exercise: keep the decoder rows on the unit sphere
# **Difficulty** ●●○○○ **Importance** ●●●○○ — one line of the training loop, and a projection you
# will meet again.
#
# The ReLU SAE keeps every decoder row at unit norm; otherwise the L1 penalty could be dodged by
# shrinking f_i and growing ‖W_dec[i]‖ to match. The loop renormalises the rows after each Adam
# step, and before the step it removes from the decoder's gradient the part parallel to each row:
# that part only changes the row's length, which the renormalisation undoes, and Adam would spend
# its step on it. Write `remove_parallel_grad(W_dec, grad)`, both (d_sae, d_in):
#
#     g_i  ←  g_i − (⟨g_i, W_dec[i]⟩ / ‖W_dec[i]‖²) · W_dec[i]        for every row i
#
# and return the new gradient (the library's `SparseAutoencoder.remove_parallel_decoder_grad_`
# does this in place). The check uses rows that are not unit norm. Below, the chapter applies your
# function and the library's to a real gradient of an SAE trained above.
#
# *Hint:* keep the per-row dot products as a (d_sae, 1) column (`keepdim=True`), so that they
# broadcast along each row.

# %%
import copy

import exercises.ch05
from sae.train_sae import resample_dead_


def remove_parallel_grad(W_dec, grad):
    """Your code here: return grad without its component along each row of W_dec."""
    return None


exercises.ch05.REMOVE_PARALLEL_GRAD.check(remove_parallel_grad)

# %%
sae = runs["resampling, quiet bias (default)"][0]
sae.zero_grad(set_to_none=True)
sae(data.sample(1024, torch.Generator().manual_seed(7))[0], l1_coeff=0.17).loss.backward()
W, raw = sae.W_dec.detach().clone(), sae.W_dec.grad.clone()
sae.remove_parallel_decoder_grad_()
library_grad, your_grad = sae.W_dec.grad.clone(), remove_parallel_grad(W.clone(), raw.clone())
sae.zero_grad(set_to_none=True)


def radial(g):  # the largest |cos| between a gradient row and its decoder row
    return ((g * W).sum(1).abs() / (g.norm(dim=1) * W.norm(dim=1)).clamp_min(1e-12)).max().item()


print(f"largest |cos(gradient row, decoder row)|: raw gradient {radial(raw):.3f}, after the library's projection "
      f"{radial(library_grad):.1e}, "
      + ("yours: not written yet" if your_grad is None else f"after yours {radial(your_grad):.1e}"))
assert radial(library_grad) < 1e-4, "the projected gradient should be orthogonal to every decoder row"

# %% [markdown]
# ### Exercise: resample the dead features
# **Difficulty** ●●●○○ **Importance** ●●●●○ — the recipe behind section 1's curves.
#
# Write the paper's recipe as a pure function, `resample_dead(x, x_hat, dead, picked, W_enc, b_enc,
# W_dec, b_dec, encoder_scale)`. `x` (n, d_in) is the resampling sample in the SAE's scaled space
# and `x_hat` its reconstruction; `dead` (d_sae,) bool marks the dead features; `picked` (n_dead,)
# holds the index of the input drawn for each dead feature, in order (drawing is random, so the
# check hands you draws made with the right probabilities). Return `(p, W_enc, b_enc, W_dec, reset)`:
#
#     loss_n      = ‖x_n − x̂_n‖²,   p_n = loss_n² / Σ_m loss_m²    (n,): the chance of drawing input n
#     v           = (x_s − b_dec) / ‖x_s − b_dec‖                 s = picked[k], for the k-th dead feature i
#     W_dec[i]    = v
#     W_enc[:, i] = v · encoder_scale · mean over alive j of ‖W_enc[:, j]‖
#     b_enc[i]    = 0
#
# every other entry unchanged (return new tensors; leave the inputs alone), and `reset`, a dict with
# keys "W_enc", "b_enc", "W_dec" of bool masks, each of its parameter's shape, marking the entries
# whose Adam moments are zeroed: exactly the resampled ones. (b_enc = 0 is the paper's bias; the
# library's default then lowers it, the quiet bias of section 2.) The check names the mistake it
# finds (it knows eleven). Below, the chapter resamples the dead features of the SAE trained
# without resampling, with your function and with the library's `resample_dead_`, from the same draws.
#
# *Hint:* boolean indexing assigns in index order: `W_dec[dead] = v` puts v[k] in the k-th dead row.

# %%
def resample_dead(x, x_hat, dead, picked, W_enc, b_enc, W_dec, b_dec, encoder_scale):
    """Your code here: return (p, W_enc, b_enc, W_dec, reset)."""
    return None


exercises.ch05.RESAMPLE_DEAD.check(resample_dead)

# %%
sae = runs["no resampling"][0]
sample = data.sample(8192, torch.Generator().manual_seed(8))[0]
with torch.no_grad():
    dead = sae.encode(sample).amax(0) == 0  # (d_sae,): fires on none of the sample
    x, x_hat = sample * sae.input_scale, sae(sample).x_hat * sae.input_scale
loss = (x - x_hat).pow(2).sum(1)
assert dead.any(), "the SAE trained without resampling should have dead features"
library = copy.deepcopy(sae)
info = resample_dead_(library, torch.optim.Adam(library.parameters()), dead, sample,
                      torch.Generator().manual_seed(0), encoder_scale=0.2, fire_frac=0.0)
# the library draws ∝ loss² with this generator: the same seed gives your function the same draws
picked = torch.multinomial(loss.double().pow(2), int(dead.sum()), generator=torch.Generator().manual_seed(0))
params = [t.detach().clone() for t in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec)]
yours = resample_dead(x, x_hat, dead, picked, *params, encoder_scale=0.2)
print(f"{int(dead.sum())} of {sae.cfg.d_sae} features fire on none of {len(sample):,} inputs; drawn ∝ loss², the "
      f"inputs have a mean loss of {(loss.pow(3).sum() / loss.pow(2).sum()):.3f} (the sample's: {loss.mean():.3f})")
print(f"the library's new features fire on {info['fire_frac_mean']:.1%} of the sample right away")
if yours is None:
    print("yours: not written yet")
else:
    p, W_enc, b_enc, W_dec, _ = yours
    mine = copy.deepcopy(sae)
    mine.load_state_dict({**sae.state_dict(), "W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec})
    with torch.no_grad():
        fire = (mine.encode(sample)[:, dead] > 0).float().mean().item()
    print(f"yours fire on {fire:.1%}; your p draws inputs of mean loss {(p * loss).sum() / p.sum():.3f}; largest "
          f"difference from the library's W_dec {(W_dec - library.W_dec).abs().max():.1e}, "
          f"W_enc {(W_enc - library.W_enc).abs().max():.1e}")

# %% [markdown]
# ## 3. Dictionary learning on the tiny GPT
#
# Now the real experiment: Towards Monosemanticity's setup on our model. The `sae` stage of the
# pipeline streams the MLP neurons (`blocks.0.mlp.hook_post`) through the shuffling buffer of
# chapter 4 and trains a ReLU SAE with the same loop as above. Its history holds the curves
# below; resampling events are marked.

# %%
import json

from sae.run import evaluate_run, reproduce, sae_path, train_sae_on_run, with_overrides

reproduce(PRESET, RUN, until="evaluate")
hist = json.loads((RUN / "sae_history.json").read_text())
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
steps = [h["step"] for h in hist]
for ax, key, label in zip(axes, ["mse", "l0", "dead_frac"], ["MSE (scaled units)", "L0 (active features / token)", "dead fraction"]):
    ax.plot(steps, [h[key] for h in hist], lw=0.8)
    for h in hist:
        if "resample" in h:
            ax.axvline(h["step"], color="red", ls=":", lw=0.8)
    ax.set_xlabel("step"); ax.set_ylabel(label)
axes[1].set_yscale("log")
fig.suptitle(f"SAE training on {PRESET.sae.site} (red: resampling steps)")
fig.tight_layout(); fig.savefig(f"{OUT}/real_model_training.png", dpi=120)
metrics = json.loads((RUN / "metrics.json").read_text())["sae"]
print({k: round(metrics[k], 3) for k in ["l0", "fvu", "dead_fraction", "ce_recovered_zero", "ce_recovered_mean"]})
assert hist[-1]["mse"] < hist[len(hist) // 10]["mse"], "the reconstruction error should fall during training"

# %% [markdown]
# ## 4. The L1 trade-off
#
# The L1 coefficient λ trades sparsity against fidelity: a larger λ gives fewer active features
# per token (lower L0) and a worse reconstruction (higher FVU). We train a few SAEs on the same
# model and plot the frontier; the default preset's λ sits where L0 is in the range the paper
# recommends (below ~20) while the model's loss is still mostly recovered.

# %%
lams = [2.0, 5.0, 10.0]
points = []
for lam in lams:
    p = with_overrides(PRESET, [f"train_sae.l1_coeff={lam}"])
    name = f"l1_{lam:g}"  # trained into RUN/l1_2.pt, ...; the same as `python -m sae train-sae --set ...`
    if not sae_path(RUN, name).exists():
        train_sae_on_run(p, RUN, name)
    m = evaluate_run(p, RUN, name)["sae"]
    points.append((lam, m["l0"], m["fvu"], m["ce_recovered_zero"]))
    print(f"λ = {lam:4g}: L0 {m['l0']:6.1f}  FVU {m['fvu']:.3f}  CE recovered {m['ce_recovered_zero']:.3f}")
fig, ax = plt.subplots(figsize=(5.5, 4))
ax.plot([p[1] for p in points], [p[2] for p in points], "o-")
for lam, x, y, _ in points:
    ax.annotate(f"λ={lam:g}", (x, y), textcoords="offset points", xytext=(5, 5))
ax.set_xscale("log"); ax.set_xlabel("L0 (active features per token)"); ax.set_ylabel("FVU")
ax.set_title("Sparsity vs reconstruction"); fig.tight_layout(); fig.savefig(f"{OUT}/l1_frontier.png", dpi=120)
l0s, fvus = [p[1] for p in points], [p[2] for p in points]
assert l0s == sorted(l0s, reverse=True) and fvus == sorted(fvus), "larger λ: sparser and less faithful"
if not FAST:  # where the default λ sits, as the text says
    assert metrics["l0"] < 20 and metrics["ce_recovered_zero"] > 0.9, metrics

# %% [markdown]
# ## Exercise: TopK at the same L0
# Gao et al. (2024) replace the L1 penalty by a TopK activation: exactly the k largest
# pre-activations fire on each token, so L0 is chosen, not tuned through λ. Compare the two at
# equal sparsity: train a TopK SAE whose k is the default SAE's L0 on held-out text (the cell
# below reads it from the run's `metrics.json` and prints it), with the preset's schedule, into
# the run as `topk{k}`, and evaluate it. In Python: `p = with_overrides(PRESET, ["sae.arch=topk",
# f"sae.k={k}"])`, then `train_sae_on_run(p, RUN, f"topk{k}")` and `write_evaluation(p, RUN,
# f"topk{k}")` (`sae.run.pipeline`); from a shell: `python -m sae train-sae --run runs/tiny --set
# sae.arch=topk --set sae.k=K --name topkK`, then `python -m sae evaluate --run runs/tiny --sae
# topkK`, with the printed k for K. It takes about as long as the default SAE did: two minutes
# or so on a laptop CPU, seconds in fast mode. Then answer: at equal L0, which SAE has the lower
# FVU, `"topk"` or `"relu"`? The check reads both metrics files.
# **What to look for:** Gao et al. report TopK ahead of ReLU at equal L0. Compare the loss
# recovered and the dead fraction too (the check prints them), and think about what the L1
# penalty does to the activations that do fire.

# %%
k = exercises.ch05.default_k(RUN)
print(f"the default SAE's L0 on held-out text is {metrics['l0']:.1f}: train TopK with k = {k}")

lower_fvu = None  # your answer, "topk" or "relu", after training and evaluating the TopK SAE

exercises.ch05.check_topk(lower_fvu, RUN)
