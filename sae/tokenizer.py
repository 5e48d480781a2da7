"""A byte-level BPE tokenizer trained on our own text, served by `tiktoken`.

Why train one? Byte-level tokens give character features only: a one-layer model over bytes
spends its MLP spelling words, and an SAE on it finds "letter after q" rather than "the Golden
Gate Bridge". A BPE vocabulary of ~2k tokens turns words into tokens and lets topic features
appear. Why not GPT-2's? It needs a download (no internet here), and its 50k vocabulary would
make our tiny model mostly embedding table.

The algorithm (Sennrich et al. 2016, byte-level as in GPT-2):
1. Split text into chunks with the GPT-2 pre-tokenisation regex (words with their leading space,
   numbers, punctuation runs, whitespace), so merges never cross a word boundary.
2. Start from the 256 single bytes. Repeatedly find the most frequent adjacent pair of tokens
   over all chunks (weighted by chunk frequency), give their concatenation the next rank, and
   merge it everywhere. Stop at `vocab_size - 1` tokens; the last id is `<|endoftext|>`.
3. Hand the ranks to `tiktoken.Encoding`, whose Rust encoder applies them (lowest rank first).

Training uses Python's `re` with `[^\\W\\d_]` for letters and `\\d` for digits, the standard-library
stand-in for GPT-2's `\\p{L}`/`\\p{N}`; encoding uses the exact GPT-2 pattern. They differ only on
rare characters (e.g. Roman-numeral symbols), which changes nothing but those chunks' efficiency:
any rank table encodes every string losslessly, because every byte is a token.

Pair counts are updated incrementally (only the chunks that contain the merged pair are
touched) and the best pair is kept in a lazy max-heap, so training is fast enough in pure Python.
"""

from __future__ import annotations

import base64
import codecs
import heapq
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

import tiktoken

from sae.utils import atomic_write_json

EOT = "<|endoftext|>"
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
TRAIN_PAT = re.compile(r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")
FORMAT = "sae-bpe/1"


def train_bpe(texts: str | Iterable[str], vocab_size: int = 2048, verbose: bool = False) -> dict[bytes, int]:
    """Learn byte-level BPE ranks: `{token bytes: rank}` with ranks 0..vocab_size-2.

    Rank `vocab_size - 1` is left for the end-of-text token. Deterministic: ties between
    equally frequent pairs go to the pair of smaller token ids."""
    if vocab_size < 257:
        raise ValueError(f"vocab_size={vocab_size} is too small: byte-level BPE needs 256 byte tokens + <|endoftext|> (use >= 257)")
    texts = [texts] if isinstance(texts, str) else texts
    chunk_counts = Counter(chunk for t in texts for chunk in TRAIN_PAT.findall(t))

    words: list[list[int]] = [list(c.encode("utf-8")) for c in chunk_counts]
    freqs: list[int] = list(chunk_counts.values())
    token_bytes: list[bytes] = [bytes([i]) for i in range(256)]
    ranks: dict[bytes, int] = {b: i for i, b in enumerate(token_bytes)}

    pair_count: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for pair in zip(w, w[1:]):
            pair_count[pair] += f
            where[pair].add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)

    n_merges = vocab_size - 1 - 256
    t0 = time.time()
    while len(token_bytes) < vocab_size - 1 and heap:
        neg, pair = heapq.heappop(heap)
        if -neg != pair_count.get(pair, 0) or -neg <= 0:
            continue  # stale heap entry: the count changed since it was pushed
        merged = token_bytes[pair[0]] + token_bytes[pair[1]]
        new_id = ranks.setdefault(merged, len(token_bytes))  # two pairs may make the same bytes
        if new_id == len(token_bytes):
            token_bytes.append(merged)
        changed: set[tuple[int, int]] = set()
        for wi in where.pop(pair):
            w, f = words[wi], freqs[wi]
            new_w, i = [], 0
            while i < len(w):
                hit = i + 1 < len(w) and w[i] == pair[0] and w[i + 1] == pair[1]
                new_w.append(new_id if hit else w[i])
                i += 2 if hit else 1
            if len(new_w) == len(w):
                continue  # stale index: this word no longer holds the pair
            for p in zip(w, w[1:]):
                pair_count[p] -= f
                changed.add(p)
            for p in zip(new_w, new_w[1:]):
                pair_count[p] += f
                where[p].add(wi)
                changed.add(p)
            words[wi] = new_w
        pair_count.pop(pair, None)
        for p in changed:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                pair_count.pop(p, None)
        done = len(token_bytes) - 256
        if verbose and (done % 256 == 0 or len(token_bytes) == vocab_size - 1):
            print(f"  bpe: {done}/{n_merges} merges, {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
    return ranks


def _encoding(ranks: dict[bytes, int], pat_str: str, special_tokens: dict[str, int]) -> tiktoken.Encoding:
    return tiktoken.Encoding(name=f"sae-bpe-{len(ranks) + 1}", pat_str=pat_str, mergeable_ranks=ranks,
                             special_tokens=special_tokens)


def _hex_bytes(err: UnicodeDecodeError) -> tuple[str, int]:
    """A decoding error handler: the bytes that are no character, each as ‹XX›."""
    return "".join(f"‹{b:02X}›" for b in err.object[err.start:err.end]), err.end


_HEX_BYTES = "sae_hex_bytes"
codecs.register_error(_HEX_BYTES, _hex_bytes)


class Tokenizer:
    """A `tiktoken.Encoding` plus save/load. `encode` treats `<|endoftext|>` in text as plain text."""

    def __init__(self, encoding: tiktoken.Encoding, pretrained: str | None = None):
        self.encoding, self.pretrained = encoding, pretrained

    # -- construction
    @classmethod
    def train(cls, texts: str | Iterable[str], vocab_size: int = 2048, verbose: bool = False) -> "Tokenizer":
        """Train BPE ranks on `texts` and wrap them in a `tiktoken.Encoding`."""
        ranks = train_bpe(texts, vocab_size, verbose=verbose)
        return cls(_encoding(ranks, GPT2_PAT, {EOT: len(ranks)}))

    @classmethod
    def from_pretrained(cls, name: str) -> "Tokenizer":
        """A tiktoken encoding by name (e.g. "gpt2"), only if tiktoken can load it offline."""
        try:
            enc = tiktoken.get_encoding(name)
        except ValueError as e:  # unknown name
            raise ValueError(f"tiktoken has no encoding {name!r}: {e}") from None
        except Exception as e:  # no network: requests' ConnectionError and friends
            raise ValueError(f"the tiktoken encoding {name!r} is not cached on this machine and "
                             f"cannot be downloaded ({type(e).__name__}). Either train our own BPE "
                             "(the default: `python -m sae tokenizer --out DIR`), or copy "
                             f"tiktoken's cached file for {name!r} into a folder and set "
                             "TIKTOKEN_CACHE_DIR to it.") from None
        if EOT not in enc.special_tokens_set:
            raise ValueError(f"encoding {name!r} has no {EOT} token, which documents are separated by")
        return cls(enc, pretrained=name)

    # -- use
    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def eot_token(self) -> int:
        return self.encoding.encode_single_token(EOT)

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode(list(ids))

    def token_bytes(self, i: int) -> bytes:
        return self.encoding.decode_single_token_bytes(int(i))

    def token_str(self, i: int) -> str:
        """A token as text for display. A token that holds part of a multi-byte character (BPE
        splits characters' bytes) shows those bytes as ‹D9›, readable and unmistakable."""
        return self.token_bytes(i).decode("utf-8", errors=_HEX_BYTES)

    def token_texts(self, ids) -> list[str]:
        """Each token's share of the text `ids` decode to, for showing a context token by token:
        the characters whose last byte the token holds. A token that ends inside a character
        gives it to the token that completes it (it shows as ""), so a context reads as its text
        does; bytes that never make a character show as ‹D9›."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors=_HEX_BYTES)
        out = [decoder.decode(self.token_bytes(int(i))) for i in ids]
        if out:
            out[-1] += decoder.decode(b"", final=True)  # a character cut off at the end
        return out

    # -- persistence
    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as JSON (token bytes in rank order, base64-encoded)."""
        if self.pretrained:
            return atomic_write_json(path, {"format": FORMAT, "pretrained": self.pretrained})
        enc = self.encoding
        ranks = enc._mergeable_ranks
        tokens = [base64.b64encode(b).decode("ascii") for b in sorted(ranks, key=ranks.get)]
        return atomic_write_json(path, {"format": FORMAT, "pat_str": enc._pat_str, "tokens": tokens,
                                        "special_tokens": enc._special_tokens})

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        # training is deterministic, so re-running the command that wrote it brings the same tokenizer back
        fix = ("delete it and re-run the command that wrote it (`python -m sae reproduce` for a run, "
               f"or `python -m sae tokenizer --out {path.parent}`)")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no tokenizer at {path}; train one with `python -m sae tokenizer --out {path.parent}`") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a tokenizer JSON file ({e}); {fix}") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} tokenizer file; {fix}")
        if d.get("pretrained"):
            return cls.from_pretrained(d["pretrained"])
        try:
            ranks = {base64.b64decode(t): i for i, t in enumerate(d["tokens"])}
            enc = _encoding(ranks, d["pat_str"], d["special_tokens"])
        except (KeyError, TypeError, ValueError) as e:  # a hand-edited file: missing keys, bad base64, ...
            raise ValueError(f"{path} is a damaged {FORMAT} tokenizer file ({type(e).__name__}: {e}); {fix}") from None
        return cls(enc)

    def __repr__(self) -> str:
        return f"Tokenizer({self.pretrained or 'trained BPE'}, vocab_size={self.vocab_size})"
