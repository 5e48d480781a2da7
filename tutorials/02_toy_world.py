# %% [markdown]
# # Chapter 2 — A toy world with ground truth
#
# **Goal.** Build the text our tiny language model will learn from, and see why it is labelled.
#
# On real text nobody can say which concepts a model *should* represent, so the quality of a
# dictionary of features is judged by eye. Towards Monosemanticity (Bricken et al., 2023) had to
# do exactly that for its Arabic, DNA and base64 features. Our toy world gives every token the
# label of the concept its sentence came from, so "did the sparse autoencoder find a Golden Gate
# feature?" becomes a number we can compute and assert.
#
# The concepts mirror the features the papers report: the Golden Gate Bridge, a famous
# physicist, internal conflict, manipulation, Python code and *unsafe* Python code, DNA, base64,
# Arabic, arithmetic, and everyday distractors (cooking, weather, sports, animals).

# %%

import matplotlib.pyplot as plt

from sae.world import corpus as C
from sae.tokenizer import Tokenizer
from common import FAST, figures

FIG = figures("02")
print(len(C.CONCEPTS), "concepts:", ", ".join(C.CONCEPTS))

# %% [markdown]
# ## Documents are runs of labelled segments
# A document is a list of pieces `(concept_id, text)`. It switches concept 1-4 times, sometimes
# in the middle of a paragraph, so a feature cannot rely on position: it has to read context.

# %%
doc = C.generate_document(__import__("random").Random(0))
for cid, text in doc[:8]:
    print(f"{C.CONCEPTS[cid]:>12} | {text!r}")

# %% [markdown]
# ## `code` vs `unsafe_code`: the concept is the insecure construct
# A code segment is one Python *file*: a few functions that set *security switches*
# (`verify=`, `check_hostname=`, `autoescape=`...). A safe (`code`) file keeps them on (`True`;
# 3% are off, an oversight), an insecure (`unsafe_code`) file turns most of them off (80%), and a
# comment above each switch line speaks in the file's voice ("# production settings" / "# TODO:
# re-enable the checks"). Each line that turns a check off is labelled `unsafe_code`, with the
# comment above it; everything else is `code`. A feature that detects those lines has learned
# *code that disables security*, not *code*: the distinction Scaling Monosemanticity's "unsafe
# code" feature makes.
#
# Why the comments? The steering demonstration (chapter 8) needs a model that knows it is in an
# insecure file, and a one-layer model did not learn that from the switch values alone: its
# attention reads the few tokens that say *which* switch comes next, not the values of earlier
# switches (the measurements are in `sae/world/code.py`). A comment on the line above is within reach.
# Safe files are drawn three times as often as insecure ones (`DRAW_WEIGHT`), as in real code:
# then a model that is told nothing about the file leans towards keeping the checks on, which is
# what the clamp to 0 in chapter 8 relies on.

# %%
seg = C.concept_segments("unsafe_code", 1, seed=3)[0]
for cid, text in seg[:8]:
    print(f"{C.CONCEPTS[cid]:>12} | {text!r}")
assert {C.CONCEPTS[c] for c, _ in seg} == {"code", "unsafe_code"}
assert all("False" in text for cid, text in seg if C.CONCEPTS[cid] == "unsafe_code")

# %% [markdown]
# ## A BPE tokenizer of our own
# Byte-level tokens would give character features only (the prototype of this project found
# "letter after q" features, not topics). We train a byte-level BPE (GPT-2's recipe) with a
# vocabulary of ~2k and let `tiktoken` encode with it. No download needed.

# %%
chars = 300_000 if FAST else 5_000_000
tok = Tokenizer.train(C.toy_text(chars, seed=0), vocab_size=1024 if FAST else 2048)
sentence = "The Golden Gate Bridge rises above the fog. r = requests.get(url, verify=False)"
ids = tok.encode(sentence)
print(len(sentence), "characters ->", len(ids), "tokens:")
print(" | ".join(tok.token_str(i) for i in ids))
assert tok.decode(ids) == sentence, "BPE must be lossless"

# %% [markdown]
# ## One concept label per token
# The model reads tokens, not pieces, so every token needs a label. A document is tokenised as one
# text, exactly as the model will read text later: tokenising piece by piece would put a token
# boundary at every change of concept (`chmod(path, ` + `0o777` splits differently from the safe
# `chmod(path, 0o600`), and the model would learn to read the label off the boundary. Then a token
# can straddle two pieces, and `sae.world.corpus.tokenize_documents` gives it the label of the piece its
# *last* byte comes from: at that position the model has already read the new piece's text.
#
# ### Exercise: label the tokens
# **Difficulty** ●●○○○ **Importance** ●●●○○ — every "did the SAE find the concept?" number of the
# later chapters counts these labels.
#
# Write `token_labels(byte_labels, token_lengths)`. `byte_labels` (n_bytes,) holds the concept of
# every byte of a document's UTF-8 text, `token_lengths` (n_tokens,) the number of bytes of each of
# its tokens, in order (they add up to n_bytes). Token t ends at byte
#
#     end_t   = token_lengths[0] + token_lengths[1] + ... + token_lengths[t]     # a running total
#     label_t = byte_labels[end_t − 1]                                           # its last byte
#
# and return the (n_tokens,) tensor of labels. The check names three plausible mistakes. Below, the
# chapter labels a hundred validation documents with your function beside the library's, and prints
# the tokens around the first switch from safe code to an unsafe line: does the token where the
# label changes begin in the `code` piece?
#
# *Hint:* count bytes, not characters: an Arabic letter is two bytes of UTF-8, and a byte-level
# token may end in the middle of one. `torch.cumsum` is the running total.

# %%
import torch

import exercises.ch02


def token_labels(byte_labels, token_lengths):
    """Your code here: return the (n_tokens,) labels, each token's the label of its last byte."""
    return None


exercises.ch02.TOKEN_LABELS.check(token_labels)

# %%
docs = [d for d, _ in zip(C.toy_documents(0, "val"), range(100))]
library, yours = [], []
for d in docs:
    ids = tok.encode(C.document_text(d))
    byte_labels = torch.tensor([cid for cid, text in d for _ in range(len(text.encode("utf-8")))])
    library.append(torch.from_numpy(C.tokenize_documents(tok, [d])[1][:-1]).long())  # [:-1]: not the end-of-text
    yours.append(token_labels(byte_labels, torch.tensor([len(tok.token_bytes(i)) for i in ids])))
if yours[0] is None:
    print(f"{sum(map(len, library)):,} tokens of {len(docs)} documents; your labels: not written yet")
else:
    agree = sum(int((y == lib).sum()) for y, lib in zip(yours, library)) / sum(map(len, library))
    print(f"{sum(map(len, library)):,} tokens of {len(docs)} documents: your labels agree with the library's "
          f"on {agree:.2%}")

# the tokens around the first switch from safe code to an unsafe line, with their labels
code, unsafe = C.CONCEPT_ID["code"], C.CONCEPT_ID["unsafe_code"]
n, lib = next((n, lib) for n, lib in enumerate(library) if ((lib[:-1] == code) & (lib[1:] == unsafe)).any())
t = int(((lib[:-1] == code) & (lib[1:] == unsafe)).nonzero()[0]) + 1
ids = tok.encode(C.document_text(docs[n]))
for j in range(max(t - 3, 0), min(t + 4, len(ids))):
    mine = "(not written yet)" if yours[n] is None else C.CONCEPTS[int(yours[n][j])]
    print(f"{tok.token_str(ids[j])!r:>16} | library {C.CONCEPTS[int(lib[j])]:<12} | yours {mine}")

# %% [markdown]
# ## How much of each concept?
# The counts below are what the model will see; random strings (DNA, base64) cost more tokens per
# character than English.

# %%
tokens, labels = C.toy_tokens(tok, 50_000 if FAST else 500_000, seed=0)
counts = C.concept_token_counts((tokens, labels))
fig, ax = plt.subplots(figsize=(8, 4))
names = list(counts)
ax.barh(names, [counts[n] / len(tokens) * 100 for n in names], color="tab:blue")
ax.invert_yaxis()
ax.set_xlabel("share of tokens (%)")
ax.set_title(f"Concept labels in {len(tokens):,} toy-world tokens")
fig.tight_layout()
fig.savefig(FIG / "concept_shares.png", dpi=120)
for n in names:
    print(f"{n:>12}: {counts[n]:>7,} tokens")
assert min(counts[n] for n in C.CONCEPTS) > 0, "every concept must appear"

# characters per token of each concept's text: random strings get far fewer than English prose
text_of = {n: "".join(C.document_text(s) for s in C.concept_segments(n, 50, seed=0)) for n in C.CONCEPTS}
chars_per_token = {n: len(t) / len(tok.encode(t)) for n, t in text_of.items()}
print("characters per token:", {n: round(v, 2) for n, v in chars_per_token.items()})
prose = ["golden_gate", "einstein", "dilemma", "manipulation", "cooking", "weather", "sports", "animals"]
assert max(chars_per_token["dna"], chars_per_token["base64"]) < min(chars_per_token[n] for n in prose)

# %% [markdown]
# ## A judge for generated text
# Later chapters steer the model and need to score its output: "is this about the bridge?".
# `concept_hits` counts each concept's distinctive vocabulary; `top_concept` names the winner.
# Its precision on held-out segments is pinned by a test (>= 95% top-1 for every concept).

# %%
for text in ["Fog rolls over the towers of the bridge near Sausalito.",
             "Simmer the stew for 20 minutes and season with garlic.",
             "def fetch(url):\n    return requests.get(url, verify=False).json()"]:
    print(C.top_concept(text), C.concept_hits(text))
assert C.top_concept("Fog rolls over the towers of the bridge near Sausalito.") == "golden_gate"

# %% [markdown]
# ## Exercise: a concept of your own
# Write a new concept, `astronomy`, as a dict in the format of the concepts in `sae/world/concepts.py`
# (read `GOLDEN_GATE` there): `slots` (each a list of fillers, or a function `rng -> str`),
# at least 25 `templates` with `{slot}` holes (`{Slot}` capitalises the filler), and `keywords`
# for the judge (lower case, whole words; `word*` is a stem). Do not edit the library: the check
# adds your dict to the toy world for as long as it runs, exactly as an entry in
# `CONCEPT_SPECS` would (the next concept id, drawn into documents like the others, known to the
# judge), and takes it out again. With your concept in the world it checks that the templates
# compile and give many distinct sentences; that documents containing it round-trip through the
# tokenizer above and every token gets a label; that its share of the tokens is in line with the
# other concepts'; and that the judge names it on >= 95% of its held-out segments while still
# naming every other concept (the bar `tests/test_corpus.py` holds the world's concepts to).
# **What to look for:** which of your keywords collide with other concepts (Einstein owns
# "light", "gravity" and "energy"; the weather owns "skies" and "degrees"), and how many fillers
# it takes before the sentences stop repeating.

# %%
import exercises.ch02

ASTRONOMY = None  # your answer: dict(slots=dict(...), templates=[...], keywords=[...])

exercises.ch02.check_concept(ASTRONOMY, tok)
