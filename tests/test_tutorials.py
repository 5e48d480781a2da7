"""Every tutorial chapter runs top to bottom in fast mode (SAE_FAST=1)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_in_fast_mode(chapter, tmp_path):
    env = dict(os.environ, SAE_FAST="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(chapter)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{chapter.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
