"""Chapter 7's exercises: write the maths of a feature's specificity (its share of activation mass
per concept); a token feature or a concept feature?"""

from __future__ import annotations

import torch

from exercises import MathsExercise, open_exercise, verdict
from sae.evaluation.held_out import held_out_batches


# ----------------------------------------------------------------------------- write the maths
def _mass(acts, labels, n_concepts):
    """(n_concepts, d_sae) Σ of each feature's activations over each concept's tokens (−1: none)."""
    onehot = (labels[:, None] == torch.arange(n_concepts)).to(acts.dtype)  # (n_tokens, n_concepts)
    return onehot.T @ acts


def _concept_share(acts, labels, n_concepts):
    return _mass(acts, labels, n_concepts) / acts.sum(0).clamp_min(1e-12)


def _no_concept_as_last(acts, labels, n_concepts):
    wrapped = torch.where(labels < 0, labels + n_concepts, labels)  # what mass[-1] += ... does
    return _concept_share(acts, wrapped, n_concepts)


def _share_cases():
    g = torch.Generator().manual_seed(7)
    out = []
    for n_tokens, d_sae, n_concepts in ((40, 6, 3), (90, 9, 5)):
        fires = torch.rand(n_tokens, d_sae, generator=g) < 0.4
        acts = torch.rand(n_tokens, d_sae, generator=g) * 3 * fires  # sparse, strong and weak firings
        labels = torch.randint(-1, n_concepts, (n_tokens,), generator=g)
        out.append(dict(acts=acts, labels=labels, n_concepts=n_concepts))
    out[1]["acts"][:, 0] = 0  # a dead feature: its shares are 0, not 0/0
    return out


CONCEPT_SHARE = MathsExercise(
    "07_interpreting_features", "concept_share", _concept_share, _share_cases, mistakes={
        "counts firings (acts > 0), not activation mass: a weak firing would weigh as much as the "
        "feature's strongest":
            lambda acts, labels, n_concepts: _concept_share((acts > 0).to(acts.dtype), labels, n_concepts),
        "normalised over the features (each concept's row sums to 1): divide each feature's column by "
        "that feature's total activation mass":
            lambda acts, labels, n_concepts: _mass(acts, labels, n_concepts)
            / _mass(acts, labels, n_concepts).sum(1, keepdim=True).clamp_min(1e-12),
        "the tokens with no concept (label −1) are left out of the total: the denominator is the "
        "feature's mass over every token, so its shares may sum to less than 1":
            lambda acts, labels, n_concepts: _mass(acts, labels, n_concepts)
            / _mass(acts, labels, n_concepts).sum(0).clamp_min(1e-12),
        "the tokens with no concept (label −1) count as the last concept: an index −1 wraps around":
            _no_concept_as_last,
        "divided by the number of tokens (a mean activation), not by the feature's total activation mass":
            lambda acts, labels, n_concepts: _mass(acts, labels, n_concepts) / len(acts),
    })


# ------------------------------------------------------------------------- vary the experiment
@torch.no_grad()
def token_sums(model, sae, tokens, features: list[int], token: int, n_tokens: int) -> dict:
    """Over the held-out text: the token's occurrences and, per feature, its activation mass and
    firings on the token and in all, and every feature's mass on the token together."""
    out = {"occurrences": 0, "all_features_on": 0.0}
    out.update({f: {"mass_on": 0.0, "mass": 0.0, "fires_on": 0, "fires": 0} for f in features})
    for b in held_out_batches(model, sae, tokens, n_tokens=n_tokens):
        f_all = b.f.double().cpu()
        is_token = torch.from_numpy(tokens[b.index.numpy()]) == token
        out["occurrences"] += int(is_token.sum())
        out["all_features_on"] += f_all[is_token].sum().item()
        for f in features:
            a, s = f_all[:, f], out[f]
            s["mass_on"] += a[is_token].sum().item()
            s["mass"] += a.sum().item()
            s["fires_on"] += int((a[is_token] > 0).sum())
            s["fires"] += int((a > 0).sum())
    return out


def token_mass_share(model, sae, tokens, feature: int, token: int, n_tokens: int) -> float:
    """Reference: the share of `feature`'s activation mass on held-out text that falls on `token`."""
    s = token_sums(model, sae, tokens, [feature], token, n_tokens)[feature]
    return s["mass_on"] / s["mass"] if s["mass"] > 0 else 0.0


# what a plausible wrong `mass_on_token` computes, from one feature's sums `s` and the token's `t`
WRONG_TOKEN_SHARES = {
    "you counted firings, not activation mass: Σ of the activations on the token / Σ of all the "
    "feature's activations": lambda s, t: s["fires_on"] / max(s["fires"], 1),
    "you computed the share of the token's occurrences on which the feature fires (how often the "
    "token lights it up), not the share of the feature's mass that the token carries":
        lambda s, t: s["fires_on"] / max(t["occurrences"], 1),
    "you computed the feature's mean activation on the token, not a share: divide the mass on the "
    "token by the feature's mass on every token": lambda s, t: s["mass_on"] / max(t["occurrences"], 1),
    "you computed the feature's share of every feature's mass on the token (normalised over the "
    "features), not the token's share of this feature's mass":
        lambda s, t: s["mass_on"] / max(t["all_features_on"], 1e-12),
    "you returned a percentage: return a fraction between 0 and 1":
        lambda s, t: 100 * s["mass_on"] / max(s["mass"], 1e-12),
}


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-3 * max(1.0, abs(b))


def check(mass_on_token, features: dict[str, int], token: int, model, sae, tokens, n_tokens: int) -> bool | None:
    """`mass_on_token(feature, token)` against the reference for each of `features` {name: id}; a
    wrong answer is compared with the plausible mistakes of WRONG_TOKEN_SHARES."""
    first = next(iter(features.values()))
    if open_exercise(mass_on_token(first, token), "07_interpreting_features"):
        return None
    sums = token_sums(model, sae, tokens, list(features.values()), token, n_tokens)
    got, want = {}, {}
    for name, f in features.items():
        s = sums[f]
        got[f], want[f] = float(mass_on_token(f, token)), s["mass_on"] / s["mass"] if s["mass"] > 0 else 0.0
        kind = "a token feature" if want[f] > 0.5 else "not a token feature"
        print(f"{name} feature {f}: {got[f]:.1%} of its activation mass on the token (reference {want[f]:.1%}): {kind}")
    if all(_close(got[f], want[f]) for f in got):
        return verdict(True, "your shares equal the reference")
    for what, wrong in WRONG_TOKEN_SHARES.items():
        if all(_close(got[f], wrong(sums[f], sums)) for f in got):
            return verdict(False, what)
    return verdict(False, "your shares differ from the reference")
