"""Chapter 5's exercises: keep the decoder rows on the unit sphere; resample dead features; a
TopK SAE at the default SAE's L0: which reconstructs better?"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from exercises import MathsExercise, open_exercise, verdict
from sae.run import load_sae, sae_path


# ----------------------------------------------------------------------------- write the maths
def _remove_parallel(W_dec, grad):
    parallel = (grad * W_dec).sum(1, keepdim=True) / W_dec.pow(2).sum(1, keepdim=True)  # (d_sae, 1)
    return grad - parallel * W_dec


def _grad_cases():
    g = torch.Generator().manual_seed(5)
    out = []
    for d_sae, d_in in ((6, 4), (5, 9)):
        W_dec = torch.randn(d_sae, d_in, generator=g) * (0.5 + torch.rand(d_sae, 1, generator=g))  # rows not unit norm
        out.append(dict(W_dec=W_dec, grad=torch.randn(d_sae, d_in, generator=g)))
    return out


REMOVE_PARALLEL_GRAD = MathsExercise(
    "05_training_saes", "remove_parallel_grad", _remove_parallel, _grad_cases, mistakes={
        "the projection is along the columns of W_dec (a sum over dim 0): feature i's direction is the "
        "row W_dec[i], so sum over dim 1":
            lambda W_dec, grad: grad - (grad * W_dec).sum(0, keepdim=True) / W_dec.pow(2).sum(0, keepdim=True) * W_dec,
        "the projection is not divided by ‖W_dec[i]‖²: ⟨g_i, W_i⟩ W_i is the parallel part only when the "
        "row has unit norm, and between two renormalisations it need not":
            lambda W_dec, grad: grad - (grad * W_dec).sum(1, keepdim=True) * W_dec,
        "the projection is divided by ‖W_dec[i]‖, not ‖W_dec[i]‖² (the row appears twice: once in the "
        "dot product, once as the direction)":
            lambda W_dec, grad: grad - (grad * W_dec).sum(1, keepdim=True) / W_dec.norm(dim=1, keepdim=True) * W_dec,
        "you return the parallel part; return the gradient minus it":
            lambda W_dec, grad: (grad * W_dec).sum(1, keepdim=True) / W_dec.pow(2).sum(1, keepdim=True) * W_dec,
        "one dot product for the whole matrix: each row i needs its own ⟨g_i, W_i⟩ / ‖W_i‖²":
            lambda W_dec, grad: grad - (grad * W_dec).sum() / W_dec.pow(2).sum() * W_dec,
    })


def _resample(x, x_hat, dead, picked, W_enc, b_enc, W_dec, b_dec, encoder_scale, power=2, normalise_p=True,
              centre=True, unit_v=True, enc_norm="alive", reset_bias="dead", moments="dead"):
    """The right answer with its defaults; each other value of a keyword is one of the mistakes."""
    loss = (x - x_hat).pow(2).sum(1)  # (n,)
    p = loss.pow(power)
    p = p / p.sum() if normalise_p else p
    v = x[picked] - b_dec if centre else x[picked]  # (n_dead, d_in)
    v = v / v.norm(dim=1, keepdim=True) if unit_v else v
    norm = {"alive": W_enc[:, ~dead].norm(dim=0).mean(), "all": W_enc.norm(dim=0).mean(),
            "rows": W_enc[:, ~dead].norm(dim=1).mean(), "none": 1.0}[enc_norm]
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
    W_dec[dead] = v
    W_enc[:, dead] = v.T * (encoder_scale * norm)
    if reset_bias == "dead":
        b_enc[dead] = 0.0
    elif reset_bias == "all":
        b_enc.zero_()
    reset = {"W_enc": dead.expand_as(W_enc), "b_enc": dead, "W_dec": dead[:, None].expand_as(W_dec)}
    if moments == "whole":
        reset = {k: torch.ones_like(m) for k, m in reset.items()}
    elif moments == "no b_enc":
        reset["b_enc"] = torch.zeros_like(dead)
    return p, W_enc, b_enc, W_dec, reset


def _resample_cases():
    g = torch.Generator().manual_seed(6)
    out = []
    for n, d_in, d_sae, scale in ((12, 4, 7, 0.2), (20, 6, 10, 0.5)):
        x = torch.randn(n, d_in, generator=g) + 1.0  # off-centre, as b_dec is
        x_hat = x + torch.randn(n, d_in, generator=g) * torch.rand(n, 1, generator=g)  # errors of varied size
        dead = torch.rand(d_sae, generator=g) < 0.4
        dead[:2] = torch.tensor([True, False])  # at least one dead and one alive feature
        W_enc = torch.randn(d_in, d_sae, generator=g) * (0.3 + 2 * torch.rand(d_sae, generator=g))  # varied norms
        loss = (x - x_hat).pow(2).sum(1)
        picked = torch.multinomial(loss.pow(2), int(dead.sum()), replacement=True, generator=g)
        out.append(dict(x=x, x_hat=x_hat, dead=dead, picked=picked, W_enc=W_enc,
                        b_enc=torch.randn(d_sae, generator=g), W_dec=torch.randn(d_sae, d_in, generator=g),
                        b_dec=torch.randn(d_in, generator=g) * 0.5 + 1.0, encoder_scale=scale))
    return out


def _resample_with(**wrong):
    return lambda **case: _resample(**case, **wrong)


RESAMPLE_DEAD = MathsExercise(
    "05_training_saes", "resample_dead", _resample, _resample_cases, mistakes={
        "inputs are drawn with probability ∝ loss; the recipe is ∝ loss², which favours the inputs the "
        "SAE reconstructs worst": _resample_with(power=1),
        "p does not sum to 1: divide loss² by Σ_m loss_m²": _resample_with(normalise_p=False),
        "the new direction is not centred: v is x_s − b_dec (the SAE encodes and decodes around b_dec)":
            _resample_with(centre=False),
        "v is not normalised: the decoder rows are unit vectors, so divide x_s − b_dec by its norm":
            _resample_with(unit_v=False),
        "the encoder column is v · encoder_scale; multiply it by the mean norm of the alive encoder columns "
        "too, so the new feature's input is small next to its neighbours'": _resample_with(enc_norm="none"),
        "the mean encoder norm includes the dead columns; take it over the alive features only":
            _resample_with(enc_norm="all"),
        "the encoder norms are of W_enc's rows (dim=1); feature j's encoder is the column W_enc[:, j], so "
        "take norms over dim 0": _resample_with(enc_norm="rows"),
        "every b_enc entry was zeroed; reset only the dead features' biases": _resample_with(reset_bias="all"),
        "the dead features' biases are left as they were: set b_enc[i] = 0 (an old bias can keep the new "
        "feature silent)": _resample_with(reset_bias="none"),
        "Adam's moments are reset for the whole parameters; zero them only for the resampled rows, columns "
        "and biases (the alive features keep their momentum)": _resample_with(moments="whole"),
        "b_enc's moments are not reset: its old momentum would push the new bias at once":
            _resample_with(moments="no b_enc"),
    })


# ------------------------------------------------------------------------- vary the experiment
def default_k(run) -> int:
    """k for a TopK SAE at the default SAE's L0: its L0 on held-out text (`metrics.json`), rounded."""
    return round(json.loads((Path(run) / "metrics.json").read_text())["sae"]["l0"])


def check_topk(lower_fvu, run, name: str | None = None) -> bool | None:
    """`lower_fvu`: "topk" or "relu", your answer to "which has the lower FVU at equal L0?". Reads
    the default SAE's `metrics.json` and the TopK SAE's `NAME_metrics.json` (NAME: `topk{k}`)."""
    if open_exercise(lower_fvu, "05_training_saes"):
        return None
    if lower_fvu not in ("topk", "relu"):
        return verdict(False, f'answer "topk" or "relu", not {lower_fvu!r}')
    run = Path(run)
    k = default_k(run)
    name = name or f"topk{k}"
    path = run / f"{name}_metrics.json"
    if not sae_path(run, name).exists() or not path.exists():
        return verdict(False, f"{path} does not exist: train the TopK SAE `{name}` (sae.arch=topk, sae.k={k}) "
                              "and evaluate it first")
    if path.stat().st_mtime < sae_path(run, name).stat().st_mtime:
        return verdict(False, f"{path.name} is older than {name}.pt: the SAE was trained again after its evaluation, "
                              f"so evaluate it again (`python -m sae evaluate --run {run} --sae {name}`)")
    cfg = load_sae(run, name).cfg
    if cfg.arch != "topk" or cfg.k != k:
        return verdict(False, f"{name} is arch={cfg.arch!r} with k={cfg.k}: want arch='topk' with k={k}, the "
                              "default SAE's L0")
    relu = json.loads((run / "metrics.json").read_text())["sae"]
    topk = json.loads(path.read_text())["sae"]
    want = "topk" if topk["fvu"] < relu["fvu"] else "relu"
    for label, m in (("ReLU (default)", relu), (f"TopK k={k}", topk)):
        print(f"{label:>15}: L0 {m['l0']:5.1f}  FVU {m['fvu']:.3f}  CE recovered {m['ce_recovered_zero']:.3f}  "
              f"dead {m['dead_fraction']:.1%}")
    if lower_fvu == want:
        return verdict(True, f"{lower_fvu} has the lower FVU")
    better_ce = "topk" if topk["ce_recovered_zero"] > relu["ce_recovered_zero"] else "relu"
    return verdict(False, f"{lower_fvu} does not have the lower FVU: compare the FVU column above"
                   + (" (it recovers more of the loss, but the question is about the reconstruction)"
                      if lower_fvu == better_ce else ""))
