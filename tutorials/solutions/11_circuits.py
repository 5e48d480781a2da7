"""Answers to chapter 11's exercises (run from anywhere; `SAE_FAST=1` uses the smoke run).
Reuses the run's transcoder `tc.pt` (trains and evaluates it if missing)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

import torch  # noqa: E402

from common import FAST, PRESET, RUN  # noqa: E402
import exercises.ch11  # noqa: E402
from sae.circuits import Replacement, attribute, prune  # noqa: E402
from sae.circuit_checks import bridge_cuts, unsafe_code_check  # noqa: E402
from sae.run import load_run, load_sae, reproduce, sae_path, train_sae_on_run, with_overrides  # noqa: E402


def skip_transcoder(x_s, y_s, W_enc, b_enc, W_dec, b_dec, W_skip, l1):
    """f = ReLU(x_s W_enc + b_enc); ŷ = f W_dec + b_dec + x_s W_skip; squared error summed over
    the output's dimensions and averaged over the batch, plus l1 times the mean Σ f."""
    f = torch.relu(x_s @ W_enc + b_enc)
    y_hat = f @ W_dec + b_dec + x_s @ W_skip
    loss = ((y_s - y_hat) ** 2).sum(dim=1).mean() + l1 * f.sum(dim=1).mean()
    return y_hat, loss


def edge_to_logit(a, d, gamma, sigma, w_u):
    """a times the frozen final LayerNorm's linear part applied to d, read by w_u (β is a constant)."""
    centred = d - d.mean()
    return a * torch.dot(centred / sigma * gamma, w_u)


assert exercises.ch11.SKIP_TRANSCODER.check(skip_transcoder)
assert exercises.ch11.EDGE_TO_LOGIT.check(edge_to_logit)

reproduce(PRESET, RUN, until="evaluate")
tok, model = load_run(RUN)
if not sae_path(RUN, "tc").exists():
    train_sae_on_run(with_overrides(PRESET, ["sae.site=blocks.0.mlp.hook_in", "sae.target_site=blocks.0.mlp.hook_out",
                                             "sae.arch=topk", "sae.k=17"]), RUN, "tc")
tc = load_sae(RUN, "tc").eval()

cut = bridge_cuts(tok, 1)[0]
graph = prune(attribute(model, {0: tc}, cut["ids"], cut["target"]))
s = max((s for s, (_, p, _) in enumerate(graph.features) if p == graph.n_pos - 1), key=lambda s: float(graph.influence[s]))
rep = Replacement(model, {0: tc}, torch.tensor(graph.tokens))
with torch.no_grad():
    edge = edge_to_logit(float(graph.activations[s]), tc.W_dec[graph.features[s][2]] / tc.target_scale,
                         model.ln_f.weight, float(rep.sigma_f[-1]), model.lm_head.weight[graph.target])
assert abs(float(edge) - float(graph.adjacency[-1, s])) <= 1e-3 * max(1.0, abs(float(edge))), (float(edge), graph.adjacency[-1, s])

ranks = unsafe_code_check(model, {0: tc}, tok, n_files=5 if FAST else 20)["ranks"]
assert exercises.ch11.check_comment_rank(sum(r <= 3 for r in ranks), ranks)
