"""Answers to chapter 7's exercises (run from anywhere; `SAE_FAST=1` uses the smoke run)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

import torch  # noqa: E402

from common import PRESET, RUN  # noqa: E402
import exercises.ch07  # noqa: E402
from sae.interpret import features_for_token  # noqa: E402
from sae.evaluation.held_out import held_out_batches  # noqa: E402
from sae.run import corpus_tokens, load_run, load_sae, reproduce, run_feature_stats  # noqa: E402

reproduce(PRESET, RUN, until="evaluate")
tok, model = load_run(RUN)
sae = load_sae(RUN)
stats = run_feature_stats(RUN)
concepts = json.loads((RUN / "metrics.json").read_text())["concepts"]["rows"]
detector = (concepts["golden_gate"]["detector"] or {"feature": concepts["golden_gate"]["feature"]})["feature"]
held_out, _ = corpus_tokens(PRESET, tok, "val", PRESET.eval_tokens + model.cfg.n_ctx)
golden = tok.encode(" Golden")[0]
token_feature = features_for_token(stats, model, sae, tok, " Golden", k=1)[0][0]


@torch.no_grad()
def mass_on_token(feature: int, token: int) -> float:
    """Σ of the feature's activations on the token's occurrences / Σ of all its activations."""
    on = total = 0.0
    for b in held_out_batches(model, sae, held_out, n_tokens=PRESET.eval_tokens):
        a = b.f[:, feature]
        is_token = torch.from_numpy(held_out[b.index.numpy()]).to(a.device) == token
        on += a[is_token].sum().item()
        total += a.sum().item()
    return on / total


assert exercises.ch07.check(mass_on_token, {"' Golden'": token_feature, "golden_gate detector": detector},
                            golden, model, sae, held_out, PRESET.eval_tokens)


def concept_share(acts, labels, n_concepts):
    """share[c, j]: the part of feature j's activation mass (over every token) on concept c's tokens."""
    total = acts.sum(dim=0).clamp_min(1e-12)  # (d_sae,); a feature that never fired gets 0, not nan
    return torch.stack([acts[labels == c].sum(dim=0) for c in range(n_concepts)]) / total


assert exercises.ch07.CONCEPT_SHARE.check(concept_share)
