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
from sae.pipeline import reproduce, train_sae_on_run, write_evaluation  # noqa: E402
from sae.run import sae_path, with_overrides  # noqa: E402

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
