"""Chapter 9's exercise: the concept whose family grows the most, and what its children are."""

from __future__ import annotations

from exercises import open_exercise, verdict
from sae.dashboard import top_token_summary
from sae.interpret import feature_stats


def largest_family(res: dict) -> str:
    """Reference: the concept with the most descendants in the largest dictionary (ties: the
    smaller family at the smallest size, then the name)."""
    big, small = res["sizes"][-1], res["sizes"][0]
    return max(res["concepts"], key=lambda n: (len(res["concepts"][n]["family"][big]),
                                               -len(res["concepts"][n]["family"][small]), n))


def check(concept: str | None, res: dict, model, largest_sae, tok, tokens, labels, n_tokens: int) -> bool | None:
    """`concept`: your answer. Prints the top tokens of its descendants in the largest dictionary."""
    if open_exercise(concept, "09_feature_splitting"):
        return None
    want = largest_family(res)
    big = res["sizes"][-1]
    family = res["concepts"][want]["family"][big]
    stats = feature_stats(model, largest_sae, tokens, labels, n_tokens=n_tokens)
    print(f"{want}: {len(family)} descendants in the {big}-feature dictionary; their top tokens:")
    for f in family[:12]:
        print(f"  feature {f:>5}: {top_token_summary(stats, tok, f)}")
    return verdict(concept == want, f"{concept!r} ({len(res['concepts'].get(concept, {}).get('family', {}).get(big, []))}"
                                    f" descendants) vs the reference {want!r}; are the children sub-topics or tokens?")
