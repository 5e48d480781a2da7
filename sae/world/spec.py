"""What a concept of the toy world is: `ConceptSpec`, the data `sae.world.corpus` turns into labelled text."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable


@dataclass(frozen=True)
class ConceptSpec:
    """One concept: its sentence templates, their vocabularies, and what the judge counts as it."""

    # sentences with `{slot}` holes (`{Slot}`: the filler with its first letter upper-cased; `{{`, `}}`:
    # literal braces; `{R:kind}`: a site that `finish` fills), or functions rng -> sentence
    templates: list
    # the concept's own vocabularies, so the model must learn the concept, not a string: a list of
    # fillers or a function rng -> str per slot
    slots: dict = field(default_factory=dict)
    keywords: list[str] = field(default_factory=list)  # the judge's words (lower case, whole words; `stem*`: any ending)
    patterns: list[str] = field(default_factory=list)  # extra regular expressions the judge counts
    joiner: str = " "  # what separates the sentences of one segment (a newline for code)
    sentences: tuple[int, int] = (3, 6)  # how many sentences a segment has, (min, max)
    sites: dict = field(default_factory=dict)  # the kinds of `{R:kind}` holes
    finish: Callable | None = None  # (name, chunks, kinds, rng) -> [(concept, text)]: fills the sites and labels them

    @classmethod
    def of(cls, spec: "ConceptSpec | dict", name: str = "a concept") -> "ConceptSpec":
        """`spec` as a ConceptSpec; a dict's misspelled key is refused with the valid ones named."""
        if isinstance(spec, cls):
            return spec
        valid = [f.name for f in fields(cls)]
        unknown = [k for k in spec if k not in valid]
        if unknown or "templates" not in spec:
            raise ValueError(f"the spec of {name} has unknown key(s) {unknown} or no 'templates'; its keys: {', '.join(valid)}")
        return cls(**spec)
