"""Answer to chapter 8's exercise (run from anywhere; `SAE_FAST=1` uses the smoke run)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

from common import FAST, PRESET, RUN  # noqa: E402
import exercises.ch08  # noqa: E402
from sae.interpret import features_for_concept  # noqa: E402
from sae.pipeline import reproduce  # noqa: E402
from sae.run import load_run, load_sae, run_feature_stats  # noqa: E402
from sae.steering import choose_feature, golden_gate_demo  # noqa: E402

reproduce(PRESET, RUN, until="evaluate")
tok, model = load_run(RUN)
sae = load_sae(RUN)
stats = run_feature_stats(RUN)
settings = dict(n=2 if FAST else 5, multiples=(0, 2, 10) if FAST else (0, 1, 2, 5, 10, 20))
f = choose_feature(json.loads((RUN / "metrics.json").read_text()), "golden_gate")
gg = golden_gate_demo(model, sae, tok, f, float(stats.max_act[f]), **settings)  # the chapter's sweep

purest = features_for_concept(stats, "golden_gate", k=1)[0][0]
purest_result = golden_gate_demo(model, sae, tok, purest, float(stats.max_act[purest]), **settings)
assert exercises.ch08.check(purest_result, gg, stats, model, sae, tok)
