"""Chapter 11's exercises: write a skip transcoder's forward pass and loss; compute one edge of an
attribution graph by hand; read the unsafe-code graph."""

from __future__ import annotations

import torch

from exercises import MathsExercise, open_exercise, verdict


# ----------------------------------------------------------------------------- the skip transcoder
def _skip_transcoder(x_s, y_s, W_enc, b_enc, W_dec, b_dec, W_skip, l1):
    f = torch.relu(x_s @ W_enc + b_enc)
    y_hat = f @ W_dec + b_dec + x_s @ W_skip
    return y_hat, (y_s - y_hat).pow(2).sum(-1).mean() + l1 * f.sum(-1).mean()


def _no_skip(x_s, y_s, W_enc, b_enc, W_dec, b_dec, W_skip, l1):
    f = torch.relu(x_s @ W_enc + b_enc)
    y_hat = f @ W_dec + b_dec
    return y_hat, (y_s - y_hat).pow(2).sum(-1).mean() + l1 * f.sum(-1).mean()


def _input_as_target(x_s, y_s, W_enc, b_enc, W_dec, b_dec, W_skip, l1):
    y_hat, _ = _skip_transcoder(x_s, y_s, W_enc, b_enc, W_dec, b_dec, W_skip, l1)
    f = torch.relu(x_s @ W_enc + b_enc)
    return y_hat, (x_s - y_hat).pow(2).sum(-1).mean() + l1 * f.sum(-1).mean()


def _pre_encoder_bias(x_s, y_s, W_enc, b_enc, W_dec, b_dec, W_skip, l1):
    f = torch.relu((x_s - b_dec) @ W_enc + b_enc)
    y_hat = f @ W_dec + b_dec + x_s @ W_skip
    return y_hat, (y_s - y_hat).pow(2).sum(-1).mean() + l1 * f.sum(-1).mean()


def _skip_from_target(x_s, y_s, W_enc, b_enc, W_dec, b_dec, W_skip, l1):
    f = torch.relu(x_s @ W_enc + b_enc)
    y_hat = f @ W_dec + b_dec + y_s @ W_skip
    return y_hat, (y_s - y_hat).pow(2).sum(-1).mean() + l1 * f.sum(-1).mean()


def _mean_over_dims(x_s, y_s, W_enc, b_enc, W_dec, b_dec, W_skip, l1):
    f = torch.relu(x_s @ W_enc + b_enc)
    y_hat = f @ W_dec + b_dec + x_s @ W_skip
    return y_hat, (y_s - y_hat).pow(2).mean() + l1 * f.sum(-1).mean()


def _transcoder_cases():
    g = torch.Generator().manual_seed(11)
    out = []
    for B, d, m, l1 in ((5, 6, 9, 0.1), (7, 6, 12, 0.0), (4, 6, 8, 0.5)):  # d_in = d_out, so a swapped target still runs
        out.append(dict(x_s=torch.randn(B, d, generator=g), y_s=torch.randn(B, d, generator=g),
                        W_enc=torch.randn(d, m, generator=g), b_enc=torch.randn(m, generator=g) * 0.3,
                        W_dec=torch.randn(m, d, generator=g), b_dec=torch.randn(d, generator=g),
                        W_skip=torch.randn(d, d, generator=g) * 0.5, l1=l1))
    return out


SKIP_TRANSCODER = MathsExercise(
    "11_circuits", "skip_transcoder", _skip_transcoder, _transcoder_cases, mistakes={
        "no skip path: the skip transcoder adds x_s @ W_skip, the part of the MLP that is linear in its input":
            _no_skip,
        "the loss compares the prediction with the input x_s: a transcoder's target is the MLP's output y_s":
            _input_as_target,
        "b_dec subtracted before encoding: that is an SAE's pre-encoder bias, and a transcoder's b_dec lives in "
        "the output's space, not the input's": _pre_encoder_bias,
        "the skip path reads the target y_s: it must read the input x_s (the target is what you predict)":
            _skip_from_target,
        "the squared error averaged over the output's dimensions too: sum over them, average over the batch":
            _mean_over_dims,
    })


# ----------------------------------------------------------------------------- one edge by hand
def _edge_to_logit(a, d, gamma, sigma, w_u):
    return a * (((d - d.mean()) / sigma * gamma) @ w_u)


def _edge_cases():
    g = torch.Generator().manual_seed(12)
    return [dict(a=float(a), d=torch.randn(10, generator=g) + shift, gamma=torch.rand(10, generator=g) + 0.5,
                 sigma=float(s), w_u=torch.randn(10, generator=g))
            for a, s, shift in ((2.5, 1.7, 0.8), (0.7, 0.4, -1.5), (4.0, 3.0, 2.0))]


EDGE_TO_LOGIT = MathsExercise(
    "11_circuits", "edge_to_logit", _edge_to_logit, _edge_cases, mistakes={
        "no centring: LayerNorm subtracts the mean of the vector first, so the direction d enters as d - mean(d)":
            lambda a, d, gamma, sigma, w_u: a * ((d / sigma * gamma) @ w_u),
        "no division by σ: the frozen LayerNorm still divides by the prompt's σ": lambda a, d, gamma, sigma, w_u:
            a * (((d - d.mean()) * gamma) @ w_u),
        "the activation is missing: an edge is the source's effect at its value, a · (the effect of one unit)":
            lambda a, d, gamma, sigma, w_u: ((d - d.mean()) / sigma * gamma) @ w_u,
        "γ applied before the centring: LayerNorm centres the raw vector, then scales by γ":
            lambda a, d, gamma, sigma, w_u: a * (((d * gamma - (d * gamma).mean()) / sigma) @ w_u),
    })


# ----------------------------------------------------------------------------- read the unsafe-code graph
def check_comment_rank(answer, ranks: list[int]) -> bool | None:
    """`answer`: on how many of the cuts (`ranks`: the posture comment's best rank among the
    prompt's tokens, one per cut, 1 = the most influential token) the comment is among the top 3."""
    if open_exercise(answer, "11_circuits"):
        return None
    want = sum(r <= 3 for r in ranks)
    if answer == want:
        return verdict(True, f"the comment is among the top 3 input tokens on {want} of {len(ranks)} cuts")
    if answer == sum(r == 1 for r in ranks):
        return verdict(False, f"{answer} counts the cuts where the comment is *the* most influential token; "
                              f"count those where it is among the top 3 ({want})")
    return verdict(False, f"{answer} is not the count: the ranks are {ranks}")
