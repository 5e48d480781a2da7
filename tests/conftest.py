"""Shared fixtures: small trained artefacts built once per test session."""

import pytest

from sae.corpus import toy_text
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

    from sae.pipeline import reproduce
    from sae.run import get_preset

    out = Path(os.environ.get("SAE_TINY_RUN") or tmp_path_factory.mktemp("tiny"))
    reproduce(get_preset("tiny"), out, until="evaluate")
    return out
