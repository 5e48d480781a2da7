"""Shared fixtures: small trained artefacts built once per test session."""

import contextlib
import io

import pytest

from sae.world.corpus import toy_text
from sae.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def toy_tokenizer() -> Tokenizer:
    """A 1024-token BPE trained on 1 MB of toy-world text (about a second)."""
    return Tokenizer.train(toy_text(1_000_000, seed=0), vocab_size=1024)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The default (`tiny`) reproduction, trained once per test session.

    Set SAE_TINY_RUN to an existing run directory of the same configuration to reuse it (the
    pipeline skips finished stages, so a complete run costs nothing).
    """
    import os
    from pathlib import Path

    from sae.run.pipeline import reproduce
    from sae.run.config import get_preset

    out = Path(os.environ.get("SAE_TINY_RUN") or tmp_path_factory.mktemp("tiny"))
    lines = []
    reproduce(get_preset("tiny"), out, until="evaluate", log=lines.append)
    # kept beside the session's temporary folders: the first estimate against the stages' times
    (tmp_path_factory.getbasetemp() / "tiny_reproduce.log").write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """(run directory, what `python -m sae reproduce --preset smoke` printed): the whole smoke
    reproduction, every stage, built once per session through the command line and under
    `DeviceCheck` (no stage feeds a model a tensor that would sit on the CPU while the model is on
    a GPU; see tests/device_check.py). Tests read it and never change it; the chapters reuse it
    (their `SAE_RUNS` is its parent folder)."""
    from device_check import DeviceCheck

    from sae.run.cli import main

    out = tmp_path_factory.mktemp("runs") / "smoke"
    printed = io.StringIO()
    with DeviceCheck(), contextlib.redirect_stdout(printed):
        status = main(["reproduce", "--preset", "smoke", "--out", str(out)])
    assert status == 0, printed.getvalue()[-3000:]
    return out, printed.getvalue()
