"""The reproduction around the library: presets, the run directory, the stages, the report, the seed study, the CLI.

The names chapters use are handed on here (`from sae.run import reproduce, load_run, ...`).
"""

from sae.run.config import get_preset, preset_fields, preset_of_run, with_overrides  # noqa: F401
from sae.run.files import Run, corpus_tokens, load_run, load_sae, run_feature_stats, sae_path  # noqa: F401
from sae.run.pipeline import evaluate_run, reproduce, train_sae_on_run, write_evaluation  # noqa: F401
