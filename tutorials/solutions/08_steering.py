"""Answers to chapter 8's exercises (run from anywhere; `SAE_FAST=1` uses the smoke run)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

from common import FAST, PRESET, RUN  # noqa: E402
import exercises.ch08  # noqa: E402
import torch  # noqa: E402
from sae.interpret import features_for_concept  # noqa: E402
from sae.run import load_run, load_sae, reproduce, run_feature_stats  # noqa: E402
from sae.steering import golden_gate_demo, topic_sweep  # noqa: E402

reproduce(PRESET, RUN, until="evaluate")
tok, model = load_run(RUN)
sae = load_sae(RUN)
stats = run_feature_stats(RUN)
max_acts = stats.max_act.tolist()
settings = dict(n=2, n_val=2, n_val_prompts=1, max_candidates=2, multiples=(1, 3)) if FAST else {}
gg = golden_gate_demo(model, sae, tok, json.loads((RUN / "metrics.json").read_text())["concepts"]["rows"], max_acts, **settings)

purest = features_for_concept(stats, "golden_gate", k=1)[0][0]
_, rows = topic_sweep(model, sae, tok, purest, max_acts[purest], gg["prompts"],
                      multiples=[r["multiple"] for r in gg["sweep"]], n=gg["n"])
purest_result = {"feature": purest, "sweep": rows}
assert exercises.ch08.check(purest_result, gg, stats, model, sae, tok)


def clamp_splice(x, W_enc, b_enc, W_dec, b_dec, feature, value):
    """x' = decode(f') + (x − decode(f)), with f' = f except f'[:, feature] = value."""
    f = torch.relu((x - b_dec) @ W_enc + b_enc)
    edited = f.clone()
    edited[:, feature] = value
    error = x - (f @ W_dec + b_dec)
    return edited @ W_dec + b_dec + error


assert exercises.ch08.CLAMP.check(clamp_splice)
