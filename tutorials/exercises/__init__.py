"""Checks for the chapters' exercises: `exercises.chNN.check(...)` for chapter NN.

Each chapter ends with an exercise: a code cell where you write a small function or compute a
value, then a cell that calls the chapter's check on it. A check recomputes what it can from the
run (so it holds on the default run and in fast mode alike), prints ✓ or ✗ with what it compared,
and returns True or False. Leave the placeholder (`None`, or a function that returns None) and the
check only reminds you that the exercise is open. The teacher's answers are in
`tutorials/solutions/`, one file per chapter, each ending with the same check; the test suite
runs them.
"""

from __future__ import annotations


def open_exercise(answer, chapter: str) -> bool:
    """True (and a reminder) while `answer` is still the placeholder."""
    if answer is None:
        print(f"exercise not done yet: write your code in the cell above (an answer: tutorials/solutions/{chapter}.py)")
        return True
    return False


def verdict(ok: bool, what: str) -> bool:
    print(("✓ " if ok else "✗ ") + what)
    return ok


