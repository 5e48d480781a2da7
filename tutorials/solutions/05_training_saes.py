"""Answer to chapter 5's exercise (run from anywhere; `SAE_FAST=1` uses the smoke run).

The TopK SAE is trained with the preset's schedule into the run directory as `topk{k}.pt`
(two to three minutes on a 2-core CPU for the default run; seconds in fast mode).
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

from common import PRESET, RUN  # noqa: E402
import exercises.ch05  # noqa: E402
from sae.run import reproduce, sae_path, train_sae_on_run, with_overrides, write_evaluation  # noqa: E402

reproduce(PRESET, RUN, until="evaluate")
relu = json.loads((RUN / "metrics.json").read_text())["sae"]
k = round(relu["l0"])  # the default SAE's L0 on held-out text
name = f"topk{k}"
p = with_overrides(PRESET, ["sae.arch=topk", f"sae.k={k}"])
if not sae_path(RUN, name).exists():
    train_sae_on_run(p, RUN, name)
topk = write_evaluation(p, RUN, name)["sae"]
lower_fvu = "topk" if topk["fvu"] < relu["fvu"] else "relu"
assert exercises.ch05.check_topk(lower_fvu, RUN)


# Exercise: the decoder gradient without its component along each row
def remove_parallel_grad(W_dec, grad):
    along = (grad * W_dec).sum(dim=1, keepdim=True) / (W_dec * W_dec).sum(dim=1, keepdim=True)  # (d_sae, 1)
    return grad - along * W_dec


assert exercises.ch05.REMOVE_PARALLEL_GRAD.check(remove_parallel_grad)


# Exercise: resampling the dead features (Towards Monosemanticity, with the paper's b_enc = 0)
def resample_dead(x, x_hat, dead, picked, W_enc, b_enc, W_dec, b_dec, encoder_scale):
    loss = ((x - x_hat) ** 2).sum(dim=1)  # (n,)
    p = loss**2 / (loss**2).sum()
    v = x[picked] - b_dec  # (n_dead, d_in)
    v = v / v.norm(dim=1, keepdim=True)
    alive_norm = W_enc[:, ~dead].norm(dim=0).mean()  # measured before the dead columns change
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
    W_dec[dead] = v
    W_enc[:, dead] = v.T * encoder_scale * alive_norm
    b_enc[dead] = 0.0
    reset = {"W_enc": dead[None, :].expand_as(W_enc), "b_enc": dead, "W_dec": dead[:, None].expand_as(W_dec)}
    return p, W_enc, b_enc, W_dec, reset


assert exercises.ch05.RESAMPLE_DEAD.check(resample_dead)
