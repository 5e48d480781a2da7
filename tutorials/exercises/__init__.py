"""Checks for the chapters' exercises: `exercises.chNN` for chapter NN.

Two kinds of exercise:

- *Write the maths*: the chapter gives a function stub (its docstring states the formula) and you
  write the body. `MathsExercise.check(your_function)` runs it on small hand-built inputs, compares
  it with the right answer and, when it differs, says which plausible mistake it matches (each
  exercise lists at least two, and the tests check that every one of them is caught). The chapter
  then uses your function on the real data beside the library's, so a wrong one shows in the results.
- *Vary the experiment*: compute something from the run; the check recomputes what it can from the
  run (so it holds on the default run and in fast mode alike) and prints ✓ or ✗ with what it compared.

Leave the placeholder (`None`, or a function that returns None) and the check only reminds you
that the exercise is open, so every chapter runs top to bottom as it is. The teacher's answers are
in `tutorials/solutions/`, one file per chapter, each ending with the same checks; the test suite
runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch


def open_exercise(answer, chapter: str) -> bool:
    """True (and a reminder) while `answer` is still the placeholder."""
    if answer is None:
        print(f"exercise not done yet: write your code in the cell above (an answer: tutorials/solutions/{chapter}.py)")
        return True
    return False


def verdict(ok: bool, what: str) -> bool:
    print(("✓ " if ok else "✗ ") + what)
    return ok


def same(a: Any, b: Any, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Equal up to float rounding: tensors, numbers, and tuples, lists or dicts of them."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y, rtol, atol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], rtol, atol) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= atol + rtol * abs(b)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol)
    return False


def _describe(a: Any) -> str:
    if isinstance(a, torch.Tensor):
        return f"a tensor of shape {tuple(a.shape)}"
    if isinstance(a, (tuple, list)):
        return f"a {type(a).__name__} of {len(a)}: " + ", ".join(_describe(x) for x in a)
    return repr(a) if isinstance(a, (int, float)) else f"a {type(a).__name__}"


def _difference(got: Any, want: Any) -> str:
    """What differs between an answer and the right one: the shapes where they differ, else the
    values (never "shape (6, 5), expected shape (6, 5)"); in a tuple, the first element that differs."""
    if isinstance(got, (tuple, list)) and isinstance(want, (tuple, list)) and len(got) == len(want):
        i = next(i for i, (g, w) in enumerate(zip(got, want)) if not same(g, w))
        return f"element {i + 1} of the {len(want)} you return: " + _difference(got[i], want[i])
    if isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor) and got.shape == want.shape:
        return (f"the shape {tuple(want.shape)} is right but the values are not (largest difference "
                f"{(got.double() - want.double()).abs().max():.3g})")
    return f"you return {_describe(got)}, expected {_describe(want)}"


@dataclass
class MathsExercise:
    """A function the student writes, checked against `reference` on `cases()`.

    `cases` returns a list of keyword-argument dicts, built so that every entry of `mistakes`
    (what is wrong -> a function that makes that mistake) gives a different answer on at least one
    of them. Inputs are cloned for each call, so a function that edits its inputs in place cannot
    change what the next call sees.
    """

    chapter: str  # e.g. "05_training_saes", where the solution lives
    name: str  # the function's name in the chapter
    reference: Callable
    cases: Callable[[], list[dict]]
    mistakes: dict[str, Callable] = field(default_factory=dict)

    def check(self, fn: Callable) -> bool | None:
        cases = self.cases()
        first = fn(**_clone(cases[0]))
        if open_exercise(None if first is None else fn, self.chapter):
            return None
        for i, case in enumerate(cases):
            got = first if i == 0 else fn(**_clone(case))
            want = self.reference(**_clone(case))
            if same(got, want):
                continue
            for what, wrong in self.mistakes.items():
                if all(same(fn(**_clone(c)), wrong(**_clone(c))) for c in cases):
                    return verdict(False, f"{self.name}: {what}")
            return verdict(False, f"{self.name} differs from the right answer on test case {i + 1} of "
                                  f"{len(cases)}: {_difference(got, want)}")
        return verdict(True, f"{self.name} matches the right answer on {len(cases)} test cases")


def _clone(case: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
