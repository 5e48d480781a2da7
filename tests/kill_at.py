"""Run `python -m sae ARGS` and kill it with SIGKILL at one point, as `kill -9` or a power cut would.

    python tests/kill_at.py POINT -- reproduce --preset smoke --out RUN

POINT is one of:

    write:NAME:N             on entering the Nth atomic write of a file named NAME (none of it written)
    midwrite:NAME:N          in the middle of the Nth atomic write of NAME: its temporary file holds
                             the first chunk the writer produced, and is never renamed
    call:MODULE:QUALNAME:N   on the Nth call of MODULE.QUALNAME (a function or a method)

SIGKILL runs no Python code: no `finally`, no `except BaseException`, no atexit, no flush. What
the process left on disk is what a real kill would leave. A point that is never reached lets the
command finish normally (exit 0), so a caller can tell a kill (-9) from a missed point.
"""

import importlib
import os
import signal
import sys
from pathlib import Path


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def nth(n: int):
    """A function that returns True on its nth call, False before and after."""
    count = 0

    def hit() -> bool:
        nonlocal count
        count += 1
        return count == n
    return hit


class _DieAfterFirstWrite:
    """A file that passes the first write through, flushes it to disk, then kills the process."""

    def __init__(self, f):
        self.f = f

    def write(self, data) -> int:
        n = self.f.write(data)
        self.f.flush()
        os.fsync(self.f.fileno())
        die()
        return n

    def __getattr__(self, name):
        return getattr(self.f, name)


def install(point: str) -> None:
    kind, *rest = point.split(":")
    if kind in ("write", "midwrite"):
        import sae.utils

        name, hit, original = rest[0], nth(int(rest[1])), sae.utils._atomic_write

        def atomic_write(path, write_fn, mode):
            if Path(path).name == name and hit():
                if kind == "write":
                    die()
                return original(path, lambda f: write_fn(_DieAfterFirstWrite(f)), mode)
            return original(path, write_fn, mode)

        sae.utils._atomic_write = atomic_write
    elif kind == "call":
        module, qualname, n = rest
        owner = importlib.import_module(module)
        *path, attr = qualname.split(".")
        for part in path:
            owner = getattr(owner, part)
        original, hit = getattr(owner, attr), nth(int(n))

        def call(*args, **kwargs):
            if hit():
                die()
            return original(*args, **kwargs)

        setattr(owner, attr, call)
    else:
        raise SystemExit(f"kill_at.py: unknown point {point!r} (write:, midwrite: or call:)")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        raise SystemExit(__doc__)
    install(sys.argv[1])
    from sae.run.cli import main

    sys.exit(main(sys.argv[3:]))
