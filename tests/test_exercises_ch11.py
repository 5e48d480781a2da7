"""Chapter 11's reading exercise: on how many unsafe-code cuts the posture comment is a top-3 input."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tutorials"))

import exercises.ch11  # noqa: E402

RANKS = [1, 3, 2, 7, 3, 12]


def test_the_right_count_passes(capsys):
    assert exercises.ch11.check_comment_rank(4, RANKS) is True
    assert "on 4 of 6 cuts" in capsys.readouterr().out


def test_counting_only_the_first_rank_is_named(capsys):
    assert exercises.ch11.check_comment_rank(1, RANKS) is False
    assert "*the* most influential" in capsys.readouterr().out


def test_another_wrong_count_shows_the_ranks_and_a_placeholder_only_reminds(capsys):
    assert exercises.ch11.check_comment_rank(6, RANKS) is False
    assert "[1, 3, 2, 7, 3, 12]" in capsys.readouterr().out
    assert exercises.ch11.check_comment_rank(None, RANKS) is None
    assert "exercise not done yet" in capsys.readouterr().out
