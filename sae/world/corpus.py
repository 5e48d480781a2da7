"""Text to train on: the labelled toy world, and unlabelled real text.

Why a toy world? On real text nobody knows which concepts a model "should" represent, so the
quality of a dictionary can only be judged by eye. Here every token carries the label of the
concept its sentence came from, so "did the SAE find a Golden Gate feature?" becomes a number
(the AUROC of the best single feature at detecting the `golden_gate` tokens).

A *document* is a list of pieces `(concept_id, text)`. It is a run of 2-5 *segments*, each a few
sentences of one concept drawn from that concept's templates (`sae.world.concepts`); concepts are drawn
uniformly, except safe `code`, drawn 3x as often (`DRAW_WEIGHT`). Segments switch
mid-document, sometimes mid-paragraph, so a feature must read the context, not the position.
A `code` or `unsafe_code` segment is one Python file (`sae.world.code`); each line that turns a
security check off, with the comment above it, is labelled `unsafe_code` and the rest `code`: the
paper's "unsafe code" feature at the grain of a line.
A document is tokenised as one text, each token labelled by the piece its last byte comes from
(`tokenize_documents` says why); documents are separated by the end-of-text token, labelled
`NO_CONCEPT` (-1).

Everything is seeded: the same `(seed, split)` gives byte-identical text and labels, and no two
splits share a random generator.

Real text has no labels: `pystdlib` (this interpreter's standard-library `.py` sources plus the
`pydoc_data` help topics, split train/val by file) or any file or directory of `.txt/.md/.py`.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import re
import sysconfig
from collections import Counter
from itertools import accumulate
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from sae.world.code import DRAW_WEIGHT
from sae.world.concepts import CONCEPT_SPECS
from sae.world.spec import ConceptSpec

CONCEPTS: list[str] = list(CONCEPT_SPECS)
CONCEPT_ID: dict[str, int] = {name: i for i, name in enumerate(CONCEPTS)}
NO_CONCEPT = -1  # label of end-of-text tokens and of unlabelled real text
SPLITS = ("train", "val", "test")
TEXT_SUFFIXES = (".txt", ".md", ".py")

Document = list[tuple[int, str]]  # pieces (concept_id, text)
# `code` and `unsafe_code` share their snippets (an unsafe one differs in one expression): one
# family for the generator's layout, the judge, and the on-concept check of short prompts.
CODE_FAMILY = ("code", "unsafe_code")


def concept_id(name: str) -> int:
    """The integer id of a concept; a clear error names the valid ones."""
    if name not in CONCEPT_ID:
        raise ValueError(f"unknown concept {name!r}; valid concepts: {', '.join(CONCEPTS)}")
    return CONCEPT_ID[name]


# ----------------------------------------------------------------------------- templates
_SLOT = re.compile(r"\{\{|\}\}|\{R:(\w+)\}|\{(\w+)\}")


def _compile(template: str, slots: dict, sites: dict) -> list:
    """Split a template into literal strings and slot references, once, for fast filling.

    A part is a str (literal), `(fillers, capitalise)` for a slot, or `("R", kind)` for a site: a
    hole, of a kind in `sites`, that the concept's `finish` hook fills. `{{`, `}}`: literal braces.
    """
    parts, pos = [], 0
    for m in _SLOT.finditer(template):
        if m.start() > pos:
            parts.append(template[pos:m.start()])
        risk, name = m.group(1), m.group(2)
        if risk is not None:
            if risk not in sites:
                raise KeyError(f"template {template!r} uses site {{R:{risk}}}; known kinds: {', '.join(sites) or 'none'}")
            parts.append(("R", risk))
        elif name is None:
            parts.append(m.group(0)[0])  # an escaped brace
        else:
            key = name[0].lower() + name[1:]
            if key not in slots:
                raise KeyError(f"template {template!r} uses slot {{{name}}} that its concept does not define")
            parts.append((slots[key], name[0].isupper()))
        pos = m.end()
    if pos < len(template):
        parts.append(template[pos:])
    return parts


def _fill(parts: list, rng: random.Random, consistent: bool = False) -> tuple[list[str], list[str]]:
    """Fill compiled parts; returns `(chunks, kinds)`: the text split at its sites (one more
    chunk than sites) and each site's kind.

    With `consistent`, a slot used twice gets the same filler both times (a code snippet's
    variable name must not change between its definition and its use).
    """
    out, chunks, kinds = [], [], []
    chosen: dict[int, str] = {}
    for p in parts:
        if type(p) is str:
            out.append(p)
        elif p[0] == "R":
            chunks.append("".join(out))
            kinds.append(p[1])
            out = []
        else:
            fillers, cap = p
            if consistent and id(fillers) in chosen:
                s = chosen[id(fillers)]
            else:
                s = fillers(rng) if callable(fillers) else fillers[int(rng.random() * len(fillers))]
                chosen[id(fillers)] = s
            out.append(s[:1].upper() + s[1:] if cap else s)
    chunks.append("".join(out))
    return chunks, kinds


class _Concept:
    """A concept's compiled templates and how to write one segment of it."""

    def __init__(self, name: str, spec: ConceptSpec | dict):
        spec = ConceptSpec.of(spec, name)
        self.name, self.id = name, CONCEPT_ID[name]
        self.joiner, self.finish = spec.joiner, spec.finish
        self.templates = [t if callable(t) else _compile(t, spec.slots, spec.sites) for t in spec.templates]
        if len(self.templates) < 25:
            raise ValueError(f"concept {name} has {len(self.templates)} templates; the toy world needs >= 25")
        # Segments are long enough (~40-90 tokens) that a topic persists for a while, as in real
        # documents; a few sentences of context is what the model reads to know the concept.
        self.n_sentences = spec.sentences

    def sentence(self, rng: random.Random) -> Document:
        """One sentence (or code snippet) as pieces."""
        t = self.templates[int(rng.random() * len(self.templates))]
        if callable(t):
            return [(self.id, t(rng))]
        if self.finish is None:
            return [(self.id, _fill(t, rng)[0][0])]
        # code: variables keep their names (`consistent`); the hook fills the sites and labels it
        chunks, kinds = _fill(t, rng, consistent=True)
        return [(CONCEPT_ID[c], text) for c, text in self.finish(self.name, chunks, kinds, rng)]

    def segment(self, rng: random.Random) -> Document:
        pieces: Document = []
        for i in range(rng.randint(*self.n_sentences)):
            s = self.sentence(rng)
            if i:
                s[0] = (s[0][0], self.joiner + s[0][1])
            pieces.extend(s)
        return pieces


_COMPILED: dict[str, _Concept] = {}


def _concept(name: str) -> _Concept:
    if name not in _COMPILED:
        _COMPILED[name] = _Concept(name, CONCEPT_SPECS[name])
    return _COMPILED[name]


# ----------------------------------------------------------------------------- the toy world
def _rng(seed: int, split: str, stream: str = "docs") -> random.Random:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    # A string seed is hashed (SHA-512) by `random`: deterministic across runs and platforms, and
    # "train" and "val" can never produce the same generator.
    return random.Random(f"sae-toy-world/{stream}/{split}/{seed}")


def _draw_concept(rng: random.Random) -> str:
    """A concept at random, in proportion to `sae.world.DRAW_WEIGHT` (read on every call: a
    concept added at run time, as in chapter 2's exercise, is drawn too)."""
    cum = list(accumulate(DRAW_WEIGHT.get(c, 1.0) for c in CONCEPTS))
    return CONCEPTS[bisect.bisect_right(cum, rng.random() * cum[-1])]


def generate_segments(rng: random.Random) -> list[tuple[str, Document]]:
    """One document as its segments `(concept, pieces)`: 2-5 of them, neighbours different."""
    segments, prev = [], None
    for _ in range(rng.randint(2, 5)):
        name = prev
        # Two code files never touch: a file keeps one security posture from start to end.
        while name == prev or (name in CODE_FAMILY and prev in CODE_FAMILY):
            name = _draw_concept(rng)
        c = _concept(name)
        seg = c.segment(rng)
        if segments:
            prose = c.joiner == " " and _concept(prev).joiner == " "
            sep = rng.choice([" ", "\n", "\n\n"]) if prose else "\n"
            seg[0] = (seg[0][0], sep + seg[0][1])
        segments.append((name, seg))
        prev = name
    return segments


def generate_document(rng: random.Random) -> Document:
    """One document: 2-5 segments of different concepts, switching mid-document."""
    return [piece for _, seg in generate_segments(rng) for piece in seg]


def toy_documents(seed: int = 0, split: str = "train") -> Iterator[Document]:
    """An endless, deterministic stream of labelled documents."""
    rng = _rng(seed, split)
    while True:
        yield generate_document(rng)


def document_text(doc: Document) -> str:
    return "".join(text for _, text in doc)


def toy_text(n_chars: int, seed: int = 0, split: str = "train", sep: str = "\n\n") -> str:
    """At least `n_chars` characters of toy-world documents joined by `sep` (for tokenizer training)."""
    out, total = [], 0
    for doc in toy_documents(seed, split):
        t = document_text(doc)
        out.append(t)
        total += len(t) + len(sep)
        if total >= n_chars:
            break
    return sep.join(out)


def concept_segments(concept: str, n: int, seed: int = 0, split: str = "val") -> list[Document]:
    """`n` single-concept segments (as pieces) of one concept, e.g. for prompts and judge tests."""
    c = _concept(CONCEPTS[concept_id(concept)])
    rng = _rng(seed, split, stream=f"segments/{concept}")
    return [c.segment(rng) for _ in range(n)]


def tokenize_documents(tokenizer, docs: Iterable[Document], n_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise documents; returns `(tokens int32, labels int8)` of equal length.

    Each document is encoded as one text, exactly as the model will see text at run time, and
    each token takes the label of the piece its last byte comes from. (Encoding piece by piece
    would be simpler, but it forces a token boundary at every label change: "chmod(path, " +
    "0o777" then tokenises differently from the safe "chmod(path, 0o600", and the model learns to
    read the label off the token boundary instead of the text.)
    Each document is followed by the end-of-text token (label `NO_CONCEPT`). Stops once
    `n_tokens` tokens are collected (then truncates to exactly `n_tokens`), or when `docs` ends.
    """
    eot = tokenizer.eot_token
    token_len = _token_byte_lengths(tokenizer)
    toks, labs, total = [], [], 0
    for doc in docs:
        ids = np.asarray(tokenizer.encode(document_text(doc)) + [eot], dtype=np.int64)
        byte_labels = np.concatenate([np.full(len(t.encode("utf-8")), cid, dtype=np.int8) for cid, t in doc]
                                     + [np.full(1, NO_CONCEPT, dtype=np.int8)])  # + the end-of-text "byte"
        lengths = token_len[ids]  # the end-of-text token counts as one "byte"
        toks.append(ids.astype(np.int32))
        labs.append(byte_labels[np.cumsum(lengths) - 1])  # the label of each token's last byte
        total += len(ids)
        if n_tokens is not None and total >= n_tokens:
            break
    tokens = np.concatenate(toks) if toks else np.zeros(0, np.int32)
    labels = np.concatenate(labs) if labs else np.zeros(0, np.int8)
    return tokens[:n_tokens], labels[:n_tokens]  # n_tokens=None: all of them


def _token_byte_lengths(tokenizer) -> np.ndarray:
    """(vocab_size,) number of bytes of each token (cached on the tokenizer object)."""
    cached = getattr(tokenizer, "_byte_lengths", None)
    if cached is None:
        eot = tokenizer.eot_token
        cached = np.array([1 if i == eot else len(tokenizer.token_bytes(i)) for i in range(tokenizer.vocab_size)],
                          dtype=np.int64)
        tokenizer._byte_lengths = cached
    return cached


def toy_tokens(tokenizer, n_tokens: int, seed: int = 0, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """`n_tokens` tokens of the toy world with one concept label per token."""
    return tokenize_documents(tokenizer, toy_documents(seed, split), n_tokens)


# ----------------------------------------------------------------------------- the judge
def _judge_regexes() -> dict[str, list[re.Pattern]]:
    out = {}
    for name, spec in CONCEPT_SPECS.items():
        spec = ConceptSpec.of(spec, name)
        pats = [re.compile(p) for p in spec.patterns]
        words = []
        for w in sorted(spec.keywords, key=len, reverse=True):
            # "manipulat*" is a stem (any ending); other keywords match as whole words.
            if w.endswith("*"):
                words.append(re.escape(w[:-1]) + r"\w*")
            else:
                words.append(re.escape(w) + (r"\b" if w[-1].isalnum() else ""))
        if words:
            pats.append(re.compile(rf"(?<![\w.])(?:{'|'.join(words)})", re.IGNORECASE))
        out[name] = pats
    return out


_JUDGE: dict[str, list[re.Pattern]] | None = None


def concept_hits(text: str) -> dict[str, int]:
    """Count each concept's distinctive vocabulary in `text`: `{concept: count}` (only non-zero).

    This is the judge that scores generated text ("did the steered model talk about the bridge?").
    It counts whole-word keywords (case-insensitive) and patterns (DNA runs of 8+ bases, base64
    blobs, Arabic words, `a + b = c`, the unsafe constructs). Its top-1 precision on held-out
    single-concept segments is pinned by a test.
    """
    global _JUDGE
    if _JUDGE is None:
        _JUDGE = _judge_regexes()
    hits = {name: sum(len(p.findall(text)) for p in pats) for name, pats in _JUDGE.items()}
    return {name: n for name, n in hits.items() if n}


def top_concept(text: str) -> str | None:
    """The judge's single answer: the concept with most hits (None if nothing matched).

    An unsafe construct inside code makes the answer `unsafe_code`: the snippet around it is
    ordinary code, and the insecure expression is what makes it worth flagging.
    """
    hits = concept_hits(text)
    if not hits:
        return None
    if all(hits.get(c) for c in CODE_FAMILY):
        return "unsafe_code"
    return max(hits, key=lambda k: (hits[k], -CONCEPT_ID[k]))


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentence_concepts(text: str) -> list[str | None]:
    """The judge's answer (`top_concept`) for each sentence (or line) of `text`: how much of a text
    is on a concept, where `top_concept` gives one answer for all of it."""
    return [top_concept(s) for s in _SENTENCE_END.split(text) if s.strip()]


# ----------------------------------------------------------------------------- real text
def _read_text_file(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise ValueError(f"{path} looks like a binary file (it contains NUL bytes); pass text files only (.txt, .md, .py)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not valid UTF-8 (byte {e.start}: "
                         f"{data[e.start:e.start + 1]!r}); re-encode it, e.g. "
                         f"`iconv -f latin1 -t utf-8 {path.name} > fixed.txt`") from None


def _split_of(name: str) -> str:
    """Deterministic train/val/test split of a file by the hash of its name (80/10/10)."""
    h = int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % 10
    return "val" if h == 0 else "test" if h == 1 else "train"


def _stdlib_files() -> list[tuple[str, str]]:
    """(name, text) of this interpreter's stdlib .py sources and pydoc topics, sorted by name."""
    root = Path(sysconfig.get_paths()["stdlib"])
    items = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "test/", "idlelib/idle_test/")) or "/test" in rel:
            continue
        try:
            items.append((rel, p.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue  # a few stdlib test fixtures are deliberately not UTF-8
    try:
        from pydoc_data.topics import topics
        items += [(f"pydoc_data/{k}", v) for k, v in sorted(topics.items())]
    except ImportError:
        pass
    return items


def text_files(source: str, split: str = "train") -> list[tuple[str, str]]:
    """Unlabelled real text as `(name, text)` pairs: `pystdlib`, a file, or a directory.

    A directory is searched recursively for `.txt`, `.md` and `.py` files, split 80/10/10 into
    train/val/test by a hash of each file's relative path. A single file is used whole for every
    split (there is nothing to split).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if source == "pystdlib":
        return [(n, t) for n, t in _stdlib_files() if _split_of(n) == split]
    path = Path(source)
    if not path.exists():
        raise ValueError(f"corpus {source!r} is neither 'toy', 'pystdlib' nor an existing file or directory")
    if path.is_file():
        return [(path.name, _read_text_file(path))]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    if not files:
        raise ValueError(f"no {'/'.join(TEXT_SUFFIXES)} files under {path}; point --corpus at a folder of text files")
    items = [(p.relative_to(path).as_posix(), _read_text_file(p)) for p in files]
    chosen = [(n, t) for n, t in items if _split_of(n) == split]
    return chosen or items  # tiny folders: better to reuse a file than to return nothing


def text_tokens(tokenizer, source: str, split: str = "train", n_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise real text (labels all `NO_CONCEPT`), files separated by end-of-text."""
    docs = ([(NO_CONCEPT, text)] for _, text in text_files(source, split))
    return tokenize_documents(tokenizer, docs, n_tokens)


def concept_token_counts(tokens_labels: tuple[np.ndarray, np.ndarray]) -> dict[str, int]:
    """Tokens per concept label in a `(tokens, labels)` stream (plus `none` for NO_CONCEPT)."""
    counts = Counter(tokens_labels[1].tolist())
    out = {name: counts.get(i, 0) for i, name in enumerate(CONCEPTS)}
    return out | {"none": counts.get(NO_CONCEPT, 0)}
