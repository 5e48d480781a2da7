"""Chapter 10's reading exercise: the least-absorbed dictionary among those with near-best FVU."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tutorials"))

import exercises.ch10  # noqa: E402

ROWS = {"relu": {"fvu": 0.30, "absorbed": 0.05}, "topk": {"fvu": 0.12, "absorbed": 0.30},
        "batchtopk": {"fvu": 0.14, "absorbed": 0.25}, "matryoshka": {"fvu": 0.16, "absorbed": 0.10}}


def test_the_right_variant_passes(capsys):
    assert exercises.ch10.check("matryoshka", ROWS) is True
    assert "absorbed 10.0%" in capsys.readouterr().out


@pytest.mark.parametrize("answer, named", [
    ("relu", "more than 0.05 above the best"),  # least absorbed of all, but it reconstructs badly
    ("batchtopk", "matryoshka absorbs 10.0%"),
    ("gated", "not one of the compared variants"),
])
def test_a_wrong_variant_fails_and_says_why(answer, named, capsys):
    assert exercises.ch10.check(answer, ROWS) is False
    assert named in capsys.readouterr().out


def test_a_placeholder_only_gets_a_reminder(capsys):
    assert exercises.ch10.check(None, ROWS) is None
    assert "exercise not done yet" in capsys.readouterr().out
