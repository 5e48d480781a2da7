"""BPE on tiktoken: lossless round trip on any string, save/load, compression, clear errors."""

import random

import pytest

from sae.tokenizer import EOT, Tokenizer, train_bpe


def _random_strings(n: int, seed: int = 0):
    rng = random.Random(seed)
    alphabets = [
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        " \t\n\r\x00\x07\x1b\x7f",
        "أبتثجحخدذرزسشصضطظعغفقكلمنهوي ",
        "你好世界日本語한국어",
        "😀🙂🚀👍🏽‍♀️",
        "()[]{}<>=+-*/\\'\"`~!@#$%^&|;:,.?_",
        "éèêëçñüößøåæ",
    ]
    for _ in range(n):
        k = rng.randint(0, 40)
        yield "".join(rng.choice(rng.choice(alphabets)) for _ in range(k))


def test_round_trip_on_random_strings(toy_tokenizer):
    for s in _random_strings(400):
        assert toy_tokenizer.decode(toy_tokenizer.encode(s)) == s, f"round trip failed on {s!r}"


def test_end_of_text_in_user_text_is_plain_text(toy_tokenizer):
    s = f"a {EOT} b"
    ids = toy_tokenizer.encode(s)
    assert toy_tokenizer.eot_token not in ids, "user text must never produce the special end-of-text id"
    assert toy_tokenizer.decode(ids) == s
    assert toy_tokenizer.eot_token == toy_tokenizer.vocab_size - 1


def test_vocab_size_and_compression(toy_tokenizer):
    assert toy_tokenizer.vocab_size == 1024
    text = "The Golden Gate Bridge rises above the fog at dawn."
    assert len(toy_tokenizer.encode(text)) < len(text.encode()) / 2.5, "BPE should compress toy text well"


def test_save_load_is_identical(toy_tokenizer, tmp_path):
    path = toy_tokenizer.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(path)
    for s in _random_strings(100, seed=1):
        assert again.encode(s) == toy_tokenizer.encode(s)
    assert again.vocab_size == toy_tokenizer.vocab_size


def test_training_is_deterministic():
    text = "low lower lowest newer newest wider " * 50
    assert train_bpe(text, 300) == train_bpe(text, 300)


def test_first_merges_are_the_most_frequent_pairs():
    ranks = train_bpe("aaab aaab aaab xy", 258)
    inv = {v: k for k, v in ranks.items()}
    assert inv[256] == b"aa", "the most frequent pair (a, a) should be merged first"


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match=">= 257"):
        train_bpe("abc", 100)
    with pytest.raises(FileNotFoundError, match="python -m sae tokenizer"):
        Tokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a tokenizer"):
        Tokenizer.load(bad)
    with pytest.raises(ValueError):
        Tokenizer.from_pretrained("no-such-encoding")


def test_a_character_split_over_tokens_shows_whole_in_a_context_and_as_readable_bytes_alone():
    """BPE can split a character's bytes over two tokens: alone, each shows its bytes as ‹D9›;
    in a context, the token that completes the character shows it and the first shows nothing,
    so the context reads as its text does. Bytes that never make a character stay ‹XX›."""
    from sae.tokenizer import Tokenizer

    tok = Tokenizer.train("abc " * 50, vocab_size=257)  # bytes only: every multi-byte character splits
    ids = tok.encode("aه b")  # ه is d9 87
    first, second = ids[1], ids[2]
    assert tok.token_str(first) == "‹D9›" and tok.token_str(second) == "‹87›"
    texts = tok.token_texts(ids)
    assert texts == ["a", "", "ه", " ", "b"] and "".join(texts) == "aه b"
    assert tok.token_texts([first]) == ["‹D9›"], "a character cut off at the end shows its bytes"
    assert "\\x" not in "".join(tok.token_str(i) for i in ids)
