"""Chapter 2's exercises: label each token with a concept (write the maths); a concept of your own,
written in the chapter, not in the library.

The concept check adds your concept to the toy world for as long as it runs, exactly as an entry in
`sae.world.CONCEPT_SPECS` would (the next id, drawn into documents, known to the judge), and
takes it out again afterwards: nothing in `sae/` is edited, and the rest of the chapter is unchanged.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from statistics import median

import numpy as np
import torch

from exercises import MathsExercise, open_exercise, verdict
from sae.world import corpus as C


# ----------------------------------------------------------------------------- write the maths
def _last_byte(byte_labels, token_lengths):
    return byte_labels[token_lengths.cumsum(0) - 1]


def _majority(byte_labels, token_lengths):
    return torch.stack([part.mode().values for part in byte_labels.split(token_lengths.tolist())])


def _cases():
    # pieces of 3, 4, 5 and 1 bytes; tokens that straddle a label change, and ones that do not. The
    # second case has a token ([2, 2, 4]) whose majority label is not its last byte's.
    return [dict(byte_labels=torch.tensor([3, 3, 3, 5, 5, 5, 5, 1, 1, 1, 1, 1, 7]),
                 token_lengths=torch.tensor([2, 3, 1, 3, 3, 1])),
            dict(byte_labels=torch.tensor([2, 2, 2, 4, 4, 0, 0, 0, 6, 6]),
                 token_lengths=torch.tensor([1, 3, 1, 3, 2]))]


TOKEN_LABELS = MathsExercise(
    "02_toy_world", "token_labels", _last_byte, _cases, mistakes={
        "each token takes the label of its FIRST byte: a token that starts in one piece and ends in the next "
        "then keeps the old concept although the model has read the new one; take its last byte, "
        "byte_labels[cumsum(token_lengths) - 1]":
            lambda byte_labels, token_lengths: byte_labels[token_lengths.cumsum(0) - token_lengths],
        "each token takes the majority label of its bytes: take the label of its LAST byte, the newest text "
        "the model has read at that position":
            _majority,
        "you index with token_lengths - 1, each token's own length: the last byte of token t sits at the "
        "running total of the lengths, cumsum(token_lengths)[t] - 1":
            lambda byte_labels, token_lengths: byte_labels[token_lengths - 1],
    })


# ------------------------------------------------------------------------- vary the experiment

N_DOCUMENTS = 600  # toy-world documents tokenised with the concept in the world
N_SENTENCES = 2000  # sentences drawn to count distinct ones
MIN_DISTINCT = 500
N_SEGMENTS = 200  # held-out segments per concept for the judge's precision (as tests/test_corpus.py)
MIN_PRECISION = 0.95


@contextmanager
def added_concept(name: str, spec: dict):
    """The toy world with one more concept `name` (the next id); restored on exit, even on an error."""
    if name in C.CONCEPT_ID:
        raise ValueError(f"{name!r} is already a concept of the toy world; pick a new name")
    C.CONCEPT_SPECS[name] = spec  # the very dict sae.world.CONCEPT_SPECS: the judge reads it
    C.CONCEPTS.append(name)
    C.CONCEPT_ID[name] = len(C.CONCEPTS) - 1
    C._JUDGE = None  # the judge compiles its patterns on first use; make it see the new concept
    try:
        yield C.CONCEPT_ID[name]
    finally:
        C.CONCEPT_SPECS.pop(name, None)
        if name in C.CONCEPTS:
            C.CONCEPTS.remove(name)
        C.CONCEPT_ID.pop(name, None)
        C._COMPILED.pop(name, None)
        C._JUDGE = None


def judge_precision(concept: str, tok, n: int = N_SEGMENTS) -> float:
    """Share of held-out segments of `concept` (30 tokens or more) that the judge names correctly
    (a safe code file that turns a check off, as 3% of its switches do, is rightly `unsafe_code`)."""
    segs = [s for s in C.concept_segments(concept, 2 * n, seed=11, split="test")
            if len(tok.encode(C.document_text(s))) >= 30][:n]
    unsafe = C.CONCEPT_ID["unsafe_code"]
    want = ["unsafe_code" if concept in C.CODE_FAMILY and any(c == unsafe for c, _ in s) else concept for s in segs]
    return sum(C.top_concept(C.document_text(s)) == w for s, w in zip(segs, want)) / max(len(segs), 1)


def check_concept(spec, tok, name: str = "astronomy") -> bool | None:
    """`spec`: a concept as a dict in the format of `sae/world/concepts.py` (slots, >= 25 templates, keywords
    or patterns for the judge). `tok`: the chapter's tokenizer. Checks, with the concept in the world:
    its templates compile and give many distinct sentences; documents that contain it round-trip
    through the tokenizer and every token gets a label; its share of the tokens is in line with
    the other concepts'; the judge names it on its held-out segments (>= 95%) and still names every
    other concept (>= 95%)."""
    if open_exercise(spec, "02_toy_world"):
        return None
    if not (isinstance(spec, dict) and isinstance(spec.get("slots"), dict) and isinstance(spec.get("templates"), list)):
        return verdict(False, "a concept is a dict with `slots` (a dict), `templates` (a list) and `keywords` "
                              "(a list): see GOLDEN_GATE in sae/world/concepts.py")
    if not (spec.get("keywords") or spec.get("patterns")):
        return verdict(False, "give the judge `keywords` (or `patterns`): without them it can never name your concept")
    with added_concept(name, spec) as cid:
        try:
            concept = C._concept(name)  # compiles every template, as the world does on first use
        except (KeyError, ValueError, TypeError) as e:
            return verdict(False, f"the templates do not compile: {e}")
        rng = random.Random(0)
        sentences = {C.document_text(concept.sentence(rng)) for _ in range(N_SENTENCES)}
        ok = verdict(len(sentences) >= MIN_DISTINCT,
                     f"{len(sentences)} distinct sentences in {N_SENTENCES} drawn (want >= {MIN_DISTINCT}: "
                     "the model must learn a concept, not a few strings; add templates or fillers)")

        docs = [d for d, _ in zip(C.toy_documents(0, "val"), range(N_DOCUMENTS))]
        mine = [d for d in docs if any(c == cid for c, _ in d)]
        lossless = all(tok.decode(tok.encode(C.document_text(d))) == C.document_text(d) for d in mine)
        tokens, labels = C.tokenize_documents(tok, docs)
        eot = tokens == tok.eot_token
        labelled = bool(((labels == C.NO_CONCEPT) == eot).all()) and int(labels.max()) <= cid
        counts = np.bincount(labels[~eot].astype(np.int64), minlength=cid + 1)
        share, others = counts[cid] / (~eot).sum(), median(counts[:cid] / (~eot).sum())
        ok &= verdict(len(mine) > 0 and lossless and labelled,
                      f"{len(mine)} of {N_DOCUMENTS} documents contain {name}; the tokenizer round-trips each "
                      f"of them{'' if lossless else ' (NOT: some decode differently)'}, and every token but the "
                      f"end-of-text ones has a concept label{'' if labelled else ' (NOT)'}")
        ok &= verdict(bool(others / 3 <= share <= 3 * others),
                      f"{name} is {share:.1%} of the tokens; the median concept {others:.1%} (want within 3x)")

        precision = {c: judge_precision(c, tok) for c in C.CONCEPTS}
        low = {c: p for c, p in precision.items() if p < MIN_PRECISION and c != name}
        ok &= verdict(precision[name] >= MIN_PRECISION,
                      f"the judge names {name} on {precision[name]:.0%} of its held-out segments "
                      f"(want >= {MIN_PRECISION:.0%})")
        ok &= verdict(not low, "the judge still names every other concept on >= 95% of its segments" if not low else
                      "your keywords steal other concepts' segments: precision " +
                      ", ".join(f"{c} {p:.0%}" for c, p in low.items()))
    return ok
