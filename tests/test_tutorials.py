"""Every tutorial chapter runs top to bottom in fast mode (SAE_FAST=1), on the session's smoke
run (`SAE_RUNS` is its folder), so no chapter trains the smoke run again."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_in_fast_mode(chapter, smoke_run):
    env = dict(os.environ, SAE_FAST="1", MPLBACKEND="Agg", SAE_RUNS=str(smoke_run[0].parent))
    proc = subprocess.run([sys.executable, str(chapter)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{chapter.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


SOLUTIONS = sorted((ROOT / "tutorials" / "solutions").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[s.stem for s in SOLUTIONS])
def test_exercise_answers_pass_their_checks_in_fast_mode(solution, smoke_run):
    """The teacher's answers (tutorials/solutions/) pass the checks the chapters call."""
    env = dict(os.environ, SAE_FAST="1", MPLBACKEND="Agg", SAE_RUNS=str(smoke_run[0].parent))
    proc = subprocess.run([sys.executable, str(solution)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{solution.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "✓" in proc.stdout and "✗" not in proc.stdout, proc.stdout[-3000:]


def test_every_chapter_has_a_checked_exercise_and_an_answer():
    for chapter in CHAPTERS:
        text = chapter.read_text()
        assert "## Exercise" in text and f"exercises.ch{chapter.name[:2]}" in text, f"{chapter.name}: no checked exercise"
        assert (ROOT / "tutorials" / "solutions" / chapter.name).exists(), f"no answers for {chapter.name}"


def test_a_chapter_opened_as_a_notebook_in_tutorials_reuses_the_run_at_the_repository_root(smoke_run):
    """What Jupyter or VS Code do with a chapter converted by jupytext: run its code cells in order,
    in one interpreter started in tutorials/, without __file__. It must find runs/ at the
    repository root and reuse the run there, not train a new one under tutorials/runs/."""
    run = ROOT / "runs" / "smoke"
    if not (run / "stages.json").exists():  # the session's smoke run, copied: no second training
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(smoke_run[0], run)
    cells = (ROOT / "tutorials" / "06_evaluation.py").read_text().split("# %%")
    code = "\n".join(c for c in cells if not c.startswith(" [markdown]"))
    env = {k: v for k, v in os.environ.items() if k != "SAE_RUNS"}
    env.update(SAE_FAST="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "tutorials", env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"this chapter uses {run}" in proc.stdout
    for stage in ("tokenizer", "lm", "sae", "evaluate"):
        assert any(line.startswith("[") and stage in line and "done already" in line for line in proc.stdout.splitlines()), \
            f"the {stage} stage ran again instead of reusing {run}"
    assert not (ROOT / "tutorials" / "runs").exists(), "the notebook made a run under tutorials/"
