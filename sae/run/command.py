"""How every command of the project refuses bad input: one line naming the problem, exit code 2.

`Parser` (argparse with one-line usage errors), the argument types that check values while parsing,
and `run_command`, which turns a command's errors into that line (in `python -m sae`, benchmarks).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Callable

from sae import distributed
from sae.utils import describe_os_error


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus a pointer to --help), exit code 2."""

    def error(self, message: str):
        if "expected one argument" in message:  # `--value -3x`: argparse takes -3x for an option
            message += " (if the value starts with '-', write it with =, e.g. --value=-3x)"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------- argument types
# Checked while parsing, so that every command that takes the same argument refuses the same
# bad values with the same one-line message, before any work (argparse adds the argument's name).
def _number(text: str, kind: type, wanted: str):
    """`text` as a `kind` (int or float), or the error "must be WANTED, got TEXT"."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (a count: samples, tokens, top-k)."""
    n = _number(text, int, "a whole number >= 1")
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def positive_float(text: str) -> float:
    """A finite number > 0 (a time budget, a coefficient)."""
    x = _number(text, float, "a number > 0")
    if not math.isfinite(x) or x <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return x


def seed_int(text: str) -> int:
    """A seed: any integer of magnitude below 2**62 (torch seeds are 64-bit, and the code adds
    small offsets to the seed for each sample or stage)."""
    n = _number(text, int, "a whole number like 0 or 42")
    if abs(n) >= 2**62:
        raise argparse.ArgumentTypeError(f"must be below 2**62 in magnitude, got {n}")
    return n


def temperature(text: str) -> float:
    """A sampling temperature: finite and >= 0 (0 takes the most likely token every time)."""
    t = _number(text, float, "a number like 1.0 (0 = always the most likely token)")
    if not math.isfinite(t) or t < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (e.g. 1.0; 0 = always the most likely token), "
                                         f"got {text!r}")
    return t


def vocab_size(text: str) -> int:
    """A BPE vocabulary size: the 256 byte tokens and <|endoftext|> at least."""
    n = positive_int(text)
    if n < 257:
        raise argparse.ArgumentTypeError(f"must be >= 257 (byte-level BPE needs 256 byte tokens + <|endoftext|>), "
                                         f"got {n}")
    return n


def _one_line(text: str) -> str:
    """The promise is one line per error, whatever the message (a wrapped one from a library too)."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def run_command(fn: Callable[[], int | None], prog: str) -> int:
    """Run `fn()` as a command: its return value (None: 0) is the exit code; a ValueError,
    FileNotFoundError or OSError is one line on stderr naming the problem, exit code 2; Ctrl-C
    is exit code 130. (argparse's own errors have already exited with 2 through `Parser`.)"""
    try:
        return fn() or 0
    except (ValueError, FileNotFoundError) as e:
        print(f"{prog}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `python -m sae feature ... | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # permission denied, not a directory, disk full, ...: the user's to fix, not a bug
        print(f"{prog}: error: {_one_line(describe_os_error(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; finished stages are kept, re-run the same command to continue", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()  # under torchrun; nothing in one process
