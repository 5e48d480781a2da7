"""Chapter 10's exercises: write BatchTopK's training activation; read the comparison table."""

from __future__ import annotations

import torch

from exercises import MathsExercise, open_exercise, verdict


# ----------------------------------------------------------------------------- write the maths
def _keep(values, idx, like):
    return torch.zeros_like(like).flatten().scatter(0, idx, values).view_as(like)


def _batchtopk(pre, k):
    f = pre.relu()
    vals, idx = f.flatten().topk(k * len(f))
    return _keep(vals, idx, f)


def _per_row_topk(pre, k):
    vals, idx = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, idx, vals.relu())


def _no_relu(pre, k):
    vals, idx = pre.flatten().topk(k * len(pre))
    return _keep(vals, idx, pre)


def _k_not_kb(pre, k):
    f = pre.relu()
    vals, idx = f.flatten().topk(k)
    return _keep(vals, idx, f)


def _largest_magnitude(pre, k):
    _, idx = pre.abs().flatten().topk(k * len(pre))
    return _keep(pre.flatten()[idx], idx, pre).relu()


def _threshold_at_kth_row_mean(pre, k):
    kth = pre.topk(k, dim=-1).values[:, -1:]  # each row's k-th largest, averaged over the batch
    return pre * (pre >= kth.mean()) * (pre > 0)


def _batchtopk_cases():
    g = torch.Generator().manual_seed(10)
    out = []
    for B, d_sae, k, shift in ((4, 9, 2, 0.0), (6, 12, 3, 0.3), (5, 8, 3, -1.2)):
        pre = torch.randn(B, d_sae, generator=g) + shift
        pre[0] += 2.0  # one row far more active than the others: the batch's top k·B favour it
        out.append(dict(pre=pre, k=k))
    return out


BATCHTOPK = MathsExercise(
    "10_todays_saes", "batchtopk", _batchtopk, _batchtopk_cases, mistakes={
        "the k largest of each row: that is TopK; BatchTopK keeps the k·B largest of the whole batch, so an "
        "active row may use more than k latents and a quiet one fewer": _per_row_topk,
        "negative pre-activations are kept where fewer than k·B are positive: apply the ReLU first "
        "(f = ReLU(pre)), then keep the largest": _no_relu,
        "k latents over the whole batch: BatchTopK keeps k per row on average, k·B in all": _k_not_kb,
        "the largest |pre|: a strongly negative pre-activation is not an active latent": _largest_magnitude,
        "a threshold at the rows' mean k-th value is the *inference* rule (θ, estimated over training); in "
        "training keep exactly the batch's k·B largest": _threshold_at_kth_row_mean,
    })


# ------------------------------------------------------------------------- read the comparison
def check(answer, rows: dict[str, dict]) -> bool | None:
    """`answer`: the name of the variant (a key of `rows`, the chapter's comparison on the run) with
    the lowest mean absorbed share among those whose FVU is within 0.05 of the best FVU. The check
    recomputes it from `rows`."""
    if open_exercise(answer, "10_todays_saes"):
        return None
    if answer not in rows:
        return verdict(False, f"{answer!r} is not one of the compared variants: {', '.join(rows)}")
    best_fvu = min(r["fvu"] for r in rows.values())
    eligible = {n: r for n, r in rows.items() if r["fvu"] <= best_fvu + 0.05}
    want = min(eligible, key=lambda n: (eligible[n]["absorbed"], n))
    if answer == want:
        return verdict(True, f"{answer}: absorbed {rows[answer]['absorbed']:.1%} at FVU {rows[answer]['fvu']:.3f} "
                             f"(best FVU {best_fvu:.3f})")
    if answer not in eligible:
        return verdict(False, f"{answer}'s FVU {rows[answer]['fvu']:.3f} is more than 0.05 above the best "
                              f"({best_fvu:.3f}): a dictionary that reconstructs badly can look unabsorbed by "
                              "not representing the concept at all")
    return verdict(False, f"{answer} absorbs {rows[answer]['absorbed']:.1%} of its concepts' tokens; {want} absorbs "
                          f"{rows[want]['absorbed']:.1%} at FVU {rows[want]['fvu']:.3f}")
