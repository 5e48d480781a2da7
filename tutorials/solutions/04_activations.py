"""Answer to chapter 4's exercise (run from anywhere; `SAE_FAST=1` uses the smoke run)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

from common import FAST, PRESET, RUN  # noqa: E402
import exercises.ch04  # noqa: E402
from sae.buffer import ActivationBuffer  # noqa: E402
from sae.pipeline import reproduce  # noqa: E402
from sae.run import corpus_tokens, load_run  # noqa: E402

reproduce(PRESET, RUN, until="lm")
tok, model = load_run(RUN)
tokens, _ = corpus_tokens(PRESET, tok, "val", 20_000 if FAST else 200_000)
batch = 256 if FAST else 1024

resid_buf = ActivationBuffer(model, tokens, "blocks.0.hook_resid_post", buffer_tokens=16 * batch, batch_size=batch,
                             seed=0)
assert exercises.ch04.check_resid_buffer(resid_buf, model)
