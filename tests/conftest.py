"""Shared fixtures: small trained artefacts built once per test session."""

import pytest

from sae.corpus import toy_text
from sae.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def toy_tokenizer() -> Tokenizer:
    """A 1024-token BPE trained on 1 MB of toy-world text (about a second)."""
    return Tokenizer.train(toy_text(1_000_000, seed=0), vocab_size=1024)
