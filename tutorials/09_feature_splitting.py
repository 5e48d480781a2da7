# %% [markdown]
# # Chapter 9 — Feature splitting
#
# **Goal.** See what happens to features as the dictionary grows (Towards Monosemanticity,
# "Feature Splitting"): a concept covered by one feature in a small dictionary is covered by
# several, finer features in a larger one.
#
# We train four dictionaries on *the same* cached activations (so that size is the only
# difference), link every feature to its nearest feature of the next smaller dictionary by
# decoder cosine similarity, and count, per concept, the features whose activation mass is mostly
# on that concept.

# %%

from sae.autoencoder import SparseAutoencoder
from sae.run import corpus_tokens, load_run, reproduce
from sae.evaluation.splitting import plot_splitting, split_concepts, train_dictionaries
from common import FAST, PRESET, RUN, figures

FIG = figures("09")
reproduce(PRESET, RUN, until="lm")
tok, model = load_run(RUN)
SITE = PRESET.sae.site
train_tokens, _ = corpus_tokens(PRESET, tok, "train", PRESET.lm_train_tokens)
n_eval = 8_000 if FAST else 100_000
val_tokens, val_labels = corpus_tokens(PRESET, tok, "val", n_eval + model.cfg.n_ctx)
sizes = (64, 128, 256) if FAST else (256, 512, 1024, 2048)
paths = train_dictionaries(model, train_tokens, SITE, RUN / "splitting", sizes=sizes,
                           n_tokens=60_000 if FAST else 1_000_000, batch_size=1024 if FAST else 4096,
                           l1_coeff=PRESET.train_sae.l1_coeff, lr=PRESET.train_sae.lr, seed=PRESET.seed)
saes = {s: SparseAutoencoder.load(p, device="cpu") for s, p in paths.items()}
res = split_concepts(model, saes, val_tokens, val_labels, n_eval=n_eval)

# %% [markdown]
# ## Fidelity, sparsity and training budget
# Same λ, same activations, same number of training tokens (1M) for every size. More features
# means more active features per token; but a larger dictionary also needs *more* training tokens
# (each feature sees fewer examples), and at this fixed budget the largest ones are under-trained:
# their FVU is no better than the small ones'. Towards Monosemanticity trained every size on
# billions of tokens; on a CPU we trade that away and keep the comparison honest.

# %%
for s in res["sizes"]:
    m = res["metrics"][s]
    print(f"{s:>5} features: L0 {m['l0']:5.1f}, FVU {m['fvu']:.3f}, dead {m['dead_fraction']:.1%}")
l0s = [res["metrics"][s]["l0"] for s in res["sizes"]]
assert l0s[-1] > l0s[0], "at the same λ a larger dictionary uses more features per token"

# %% [markdown]
# ## Linking features across sizes
# Feature j of a larger dictionary is linked to its *parent*, the feature of the next smaller
# dictionary whose decoder direction is closest, and a *family* is a feature of the smallest
# dictionary with every feature whose chain of parents leads back to it.
#
# ### Exercise: write the maths of the parent links
# **Difficulty** ●●○○○ **Importance** ●●●○○ — every family below is built from these links.
#
# Write `parents(W_dec_small, W_dec_large)` for two decoders, (d_small, d_in) and (d_large, d_in),
# whose rows are the features' directions:
#
#     cos[j, i]  = W_dec_large[j] · W_dec_small[i] / (‖W_dec_large[j]‖ ‖W_dec_small[i]‖)   # (d_large, d_small)
#     parent[j]  = argmax_i cos[j, i]
#
# and return `(parent, cos[j, parent[j]])`, two tensors of shape (d_large,). The check names the
# mistake it finds (there are four classic ones); below, the chapter links the dictionaries with
# your function beside the library's (`sae.evaluation.splitting.parents`).
#
# *Hint:* `torch.nn.functional.normalize(W, dim=...)` makes rows (or columns) unit length, and
# `Tensor.max(dim=...)` returns the values and the indices.

# %%
import torch

import exercises.ch09


def parents(W_dec_small, W_dec_large):
    """Your code here: return (parent, cos), both (d_large,)."""
    return None


exercises.ch09.PARENTS.check(parents)

# %%
from sae.evaluation.splitting import parents as library_parents

with torch.no_grad():
    for small, large in zip(sizes, sizes[1:]):
        idx, cos = library_parents(saes[small], saes[large])
        yours = parents(saes[small].W_dec, saes[large].W_dec)
        print(f"{small:>5} -> {large:>5} features: median cosine with the parent {cos.median():.3f}; "
              f"{idx.unique().numel()} of the {small} features are parents; "
              + ("yours: not written yet" if yours is None else
                 f"yours link {int((yours[0] == idx).sum())} of {large} features to the same parent"))

# %% [markdown]
# ## Concepts split into more features
# For every concept, the number of features with at least half their activation mass on it, per
# dictionary size, and the family of the smallest dictionary's best feature for it: its
# descendants in each larger dictionary.

# %%
print(f"{'concept':<13}" + "".join(f"{s:>7}" for s in res["sizes"]) + "   family sizes")
for name, c in res["concepts"].items():
    counts = "".join(f"{c['features_per_size'][s]:>7}" for s in res["sizes"])
    fam = " -> ".join(str(len(c["family"][s])) for s in res["sizes"])
    print(f"{name:<13}{counts}   {fam}")
plot_splitting(res, FIG / "splitting.png")
total = [sum(c["features_per_size"][s] for c in res["concepts"].values()) for s in res["sizes"]]
print("features mostly about one concept, per size:", total)
if not FAST:
    assert total[-1] > total[0], "a larger dictionary should hold more concept features"

# %% [markdown]
# ## ReLU vs TopK: the sparsity-fidelity frontier
# Gao et al. (2024) replace the L1 penalty by keeping the k largest pre-activations: no
# shrinkage of the active features' values, and L0 chosen directly. On the same cached
# activations and budget we train ReLU SAEs at three λ and TopK SAEs at three k (all with the
# middle dictionary size) and compare FVU at equal L0.

# %%
import matplotlib.pyplot as plt
import torch

from sae.autoencoder import SAEConfig
from sae.buffer import CachedActivations
from sae.evaluation.evaluator import evaluate_sae
from sae.train_sae import TrainSAEConfig, train_sae

size = sizes[len(sizes) // 2]
n_train = 60_000 if FAST else 1_000_000
n_val = 8_000 if FAST else 50_000
frontier = {}
for arch, values in [("relu", (1.5, 3.0, 6.0)), ("topk", (8, 16, 32))]:
    for v in values:
        path = RUN / "splitting" / f"frontier_{arch}_{v}.pt"
        if not path.exists():
            acts = CachedActivations(RUN / "splitting" / "acts.npy", model, SITE,
                                     batch_size=1024 if FAST else 4096, seed=PRESET.seed)
            torch.manual_seed(PRESET.seed)
            cfg = SAEConfig(d_in=acts.d_in, d_sae=size, arch=arch, k=int(v) if arch == "topk" else 32, site=SITE)
            sae = SparseAutoencoder(cfg)
            sae.set_input_scale_(acts.estimate_scale())
            steps = n_train // acts.batch_size
            train_sae(sae, acts, TrainSAEConfig(n_steps=steps, lr=PRESET.train_sae.lr, dead_window=max(steps // 10, 1),
                                                l1_coeff=v if arch == "relu" else 0.0, log_every=0))
            sae.save(path)
        sae = SparseAutoencoder.load(path, device="cpu")
        m = evaluate_sae(model, sae, val_tokens, n_tokens=n_val, log=False).metrics
        frontier.setdefault(arch, []).append((m["l0"], m["fvu"], v))
        print(f"{arch:>4} {'λ' if arch == 'relu' else 'k'}={v:<4}: L0 {m['l0']:6.1f}  FVU {m['fvu']:.3f}")
fig, ax = plt.subplots(figsize=(6, 4))
for arch, pts in frontier.items():
    pts = sorted(pts)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=arch)
ax.set_xscale("log"); ax.set_xlabel("L0 (active features per token)"); ax.set_ylabel("FVU")
ax.set_title(f"ReLU vs TopK, {size} features, same activations"); ax.legend()
fig.tight_layout(); fig.savefig(FIG / "relu_vs_topk.png", dpi=110)
if not FAST:
    # compare at the TopK point whose L0 is closest to a ReLU point
    relu = sorted(frontier["relu"])
    k16 = [p for p in frontier["topk"] if p[2] == 16][0]
    below = max((p for p in relu if p[0] <= k16[0]), default=relu[0])
    above = min((p for p in relu if p[0] >= k16[0]), default=relu[-1])
    print(f"TopK k=16: L0 {k16[0]:.0f}, FVU {k16[1]:.3f}; ReLU on either side: L0 {below[0]:.1f} FVU {below[1]:.3f}, "
          f"L0 {above[0]:.1f} FVU {above[1]:.3f}")
    assert k16[1] < max(below[1], above[1]), "TopK should not be worse than ReLU at a similar L0"

# %% [markdown]
# **What it shows.** On our model TopK reaches a lower FVU than ReLU at a similar L0 (the numbers
# are printed above), in line with Gao et al.; it has no shrinkage, so the active features keep their full
# values. Neither finds a topic feature that fires on every token of a concept (chapter 6).

# %% [markdown]
# ## Exercise: what does a family split into?
# Write `largest_family(res)`: the concept with the most descendants in the largest dictionary
# (`res["concepts"][name]["family"][size]` lists them; on a tie, the first name in alphabetical
# order). The check prints the top tokens of that family's features in the
# largest dictionary. **What to look for:** do the children split the concept by sub-topic (the
# bridge's fog vs its towers) or by token (one feature per frequent word)?

# %%
def largest_family(res: dict) -> str:
    """Your code here."""
    return None


exercises.ch09.check(largest_family(res), res, model, saes[res["sizes"][-1]], tok, val_tokens, val_labels, n_eval)
