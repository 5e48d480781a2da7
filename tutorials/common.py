"""What every chapter starts with: the fast mode, where runs live, where figures go.

A chapter finds the same run directory wherever it is opened: run as a script from the
repository root (`python tutorials/06_evaluation.py`), or as a notebook, which Jupyter and VS Code
start in `tutorials/`, or a solution started from anywhere. Runs live in `runs/` at the root of
the checkout this file is in, or in the folder named by `SAE_RUNS`.
`SAE_FAST=1` (what the test suite sets) switches every chapter to the seconds-long `smoke` preset.
"""

import os
from pathlib import Path

from sae.run import get_preset


def _repository_root() -> Path:
    """The checkout this file belongs to (tutorials/..), wherever the chapter is started from."""
    return Path(__file__).resolve().parents[1]


FAST = os.environ.get("SAE_FAST") == "1"
RUNS = Path(os.environ["SAE_RUNS"]).resolve() if os.environ.get("SAE_RUNS") else _repository_root() / "runs"
PRESET = get_preset("smoke" if FAST else "tiny")
RUN = RUNS / PRESET.name  # the run that `python -m sae reproduce` makes (smoke in fast mode)


def figures(chapter: str) -> Path:
    """The folder a chapter writes its figures to (made if missing)."""
    path = RUNS / "tutorials" / chapter
    path.mkdir(parents=True, exist_ok=True)
    return path


print(f"runs in {RUNS} (set SAE_RUNS to change); this chapter uses {RUN}" + (" (fast mode)" if FAST else ""))
