"""Chapter 7's exercise: a token feature or a concept feature?"""

from __future__ import annotations

import torch

from exercises import open_exercise, verdict
from sae.metrics import held_out_batches


@torch.no_grad()
def token_mass_share(model, sae, tokens, feature: int, token: int, n_tokens: int) -> float:
    """Reference: the share of `feature`'s activation mass on held-out text that falls on `token`."""
    on, total = 0.0, 0.0
    for b in held_out_batches(model, sae, tokens, n_tokens=n_tokens, logits=False):
        a = b.f[:, feature].double().cpu()
        on += a[torch.from_numpy(tokens[b.index.numpy()]) == token].sum().item()
        total += a.sum().item()
    return on / total if total > 0 else 0.0


def check(mass_on_token, features: dict[str, int], token: int, model, sae, tokens, n_tokens: int) -> bool | None:
    """`mass_on_token(feature, token)` against the reference for each of `features` {name: id}."""
    first = next(iter(features.values()))
    if open_exercise(mass_on_token(first, token), "07_interpreting_features"):
        return None
    ok = True
    for name, f in features.items():
        got, want = mass_on_token(f, token), token_mass_share(model, sae, tokens, f, token, n_tokens)
        ok &= abs(got - want) < 1e-3
        kind = "a token feature" if want > 0.5 else "not a token feature"
        print(f"{name} feature {f}: {got:.1%} of its activation mass on the token (reference {want:.1%}): {kind}")
    return verdict(ok, "your shares equal the reference" if ok else "your shares differ from the reference")
