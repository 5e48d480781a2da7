"""Chapter 9's exercises: write the maths of linking features across dictionary sizes; the concept
whose family grows the most, and what its children are."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from exercises import MathsExercise, open_exercise, verdict
from sae.run.dashboard import top_token_summary
from sae.interpret import feature_stats


# ----------------------------------------------------------------------------- write the maths
def _nearest(sim):
    """For each row of `sim` (d_large, d_small): (the column of its largest entry, that entry)."""
    best, idx = sim.max(dim=1)
    return idx, best


def _cosines(W_dec_small, W_dec_large, dim=1):
    return F.normalize(W_dec_large, dim=dim) @ F.normalize(W_dec_small, dim=dim).T  # (d_large, d_small)


def _parents(W_dec_small, W_dec_large):
    return _nearest(_cosines(W_dec_small, W_dec_large))


def _parent_cases():
    g = torch.Generator().manual_seed(9)
    out = []
    for d_in, d_small, d_large in ((6, 5, 9), (8, 7, 12)):
        def rows(n):  # random directions with norms from 0.2 to 3.2, as a trained decoder's are not unit
            return torch.randn(n, d_in, generator=g) * (0.2 + 3 * torch.rand(n, 1, generator=g))
        W_dec_small, W_dec_large = rows(d_small), rows(d_large)
        W_dec_large[0] = -2 * W_dec_small[1] + 0.05 * torch.randn(d_in, generator=g)  # opposite to a small feature
        out.append(dict(W_dec_small=W_dec_small, W_dec_large=W_dec_large))
    return out


PARENTS = MathsExercise(
    "09_feature_splitting", "parents", _parents, _parent_cases, mistakes={
        "raw dot products, not cosines: normalise every decoder row to unit length first (a long row "
        "would win every comparison)":
            lambda W_dec_small, W_dec_large: _nearest(W_dec_large @ W_dec_small.T),
        "the maximum over the wrong axis: you return one entry per feature of the small dictionary; "
        "return one parent per feature of the large one, (d_large,) indices into the small one":
            lambda W_dec_small, W_dec_large: _nearest(_cosines(W_dec_small, W_dec_large).T),
        "the largest |cos|: a feature pointing the opposite way (cos ≈ −1) is not a parent; "
        "activations are ≥ 0, so −W_dec[i] is another direction":
            lambda W_dec_small, W_dec_large: _nearest(_cosines(W_dec_small, W_dec_large).abs()),
        "normalised the columns (dim=0), not the rows: feature i's direction is the row W_dec[i]":
            lambda W_dec_small, W_dec_large: _nearest(_cosines(W_dec_small, W_dec_large, dim=0)),
    })


# ------------------------------------------------------------------------- vary the experiment
def _family_sizes(res: dict, size: int) -> dict[str, int]:
    return {name: len(c["family"][size]) for name, c in res["concepts"].items()}


def _most(counts: dict[str, int]) -> str:
    """The name with the largest count; on a tie, the first in alphabetical order."""
    return min(counts, key=lambda n: (-counts[n], n))


def largest_family(res: dict) -> str:
    """Reference: the concept with the most descendants in the largest dictionary (on a tie, the
    first name in alphabetical order)."""
    return _most(_family_sizes(res, res["sizes"][-1]))


def _mistake(concept, res: dict) -> str:
    """What a wrong answer most likely did."""
    big = res["sizes"][-1]
    fam = _family_sizes(res, big)
    if concept not in fam:
        return f"{concept!r} is not a concept: answer a key of res['concepts'] ({', '.join(fam)})"
    want = largest_family(res)
    if fam[concept] == fam[want]:
        tied = sorted(n for n in fam if fam[n] == fam[want])
        return (f"a tie: {', '.join(tied)} each have {fam[want]} descendants; take the first name in "
                f"alphabetical order, {want!r}")
    for s in res["sizes"][:-1]:
        if concept == _most(_family_sizes(res, s)):
            return (f"you counted the descendants in the {s}-feature dictionary: the largest is "
                    f"res['sizes'][-1] = {big} (sizes go up)")
    if concept == _most({n: c["features_per_size"][big] for n, c in res["concepts"].items()}):
        return ("you counted the features mostly about the concept (features_per_size), not the descendants "
                "of its root feature (family)")
    return f"{concept!r} has {fam[concept]} descendants in the {big}-feature dictionary, {want!r} has {fam[want]}"


def check(concept: str | None, res: dict, model, largest_sae, tok, tokens, labels, n_tokens: int) -> bool | None:
    """`concept`: your answer. Prints the top tokens of the right answer's descendants in the
    largest dictionary; a wrong answer is told what it most likely counted."""
    if open_exercise(concept, "09_feature_splitting"):
        return None
    want = largest_family(res)
    big = res["sizes"][-1]
    family = res["concepts"][want]["family"][big]
    stats = feature_stats(model, largest_sae, tokens, labels, n_tokens=n_tokens, log=False)
    print(f"{want}: {len(family)} descendants in the {big}-feature dictionary; their top tokens:")
    for f in family[:12]:
        print(f"  feature {f:>5}: {top_token_summary(stats, tok, f)}")
    if concept == want:
        return verdict(True, f"{want!r}; are the children sub-topics or tokens?")
    return verdict(False, _mistake(concept, res))
