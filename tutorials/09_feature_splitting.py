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
import os
from pathlib import Path

from sae.pipeline import get_preset, reproduce
from sae.splitting import plot_splitting, split_concepts, train_dictionaries

FAST = os.environ.get("SAE_FAST") == "1"
PRESET = get_preset("smoke" if FAST else "tiny")
RUN = Path(f"runs/{PRESET.name}")
FIG = Path("runs/tutorials/09")
reproduce(PRESET, RUN, until="lm")
sizes = (64, 128, 256) if FAST else (256, 512, 1024, 2048)
paths = train_dictionaries(RUN, sizes=sizes, n_tokens=60_000 if FAST else 1_000_000,
                           batch_size=1024 if FAST else 4096)
res = split_concepts(RUN, paths, n_eval=8_000 if FAST else 100_000)

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
# ## Exercise
# Pick the concept whose family grows the most and open the features of its largest-dictionary
# descendants (`sae.interpret.feature_stats` with `runs/tiny/splitting/sae_2048.pt`). **Check:**
# do the children split the concept by sub-topic (the bridge's fog vs its towers) or by token?
