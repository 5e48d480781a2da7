"""Report text: what an analysis's section and headline are written with.

Text that comes from files (run and preset names, concept names, warnings, sampled text) is data,
never markup: `text` and `code` escape it for Markdown (and `sae.run._html` escapes it again for
HTML). Numbers go through `num`, `pct` and `times`, so every section prints them alike.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Headline(NamedTuple):
    """One headline number of an analysis: a row of the report's summary table and a column of the seed study."""

    key: str  # its column in the seed study (seeds.json)
    label: str  # what it is, for a reader
    value: float | int | None
    fmt: str = ".3f"  # format spec ("%" for a share, "g" for a multiple)
    paper: str = ""  # the papers' figure beside it, where they report one

    def shown(self) -> str:
        return pct(self.value) if self.fmt == "%" else times(self.value) if self.fmt == "g" else num(self.value, self.fmt)


def text(s) -> str:
    """Any text as literal Markdown: one line, Markdown's active characters backslash-escaped (so
    a run named `[x](javascript:...)` is text, not a link, in report.md as well as report.html)."""
    s = re.sub(r"[\r\n]+", " ↵ ", str(s))
    s = re.sub(r"([\\`*\[\]<>|&~!#])", r"\\\1", s)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", s)  # inside a word `_` is literal anyway


def code(s, cell: bool = False) -> str:
    """Text as one Markdown code span, literal however many backticks it holds; in a table `cell`
    its `|` are escaped, as GitHub tables need."""
    s = re.sub(r"[\r\n]+", "↵", str(s))
    if cell:
        s = s.replace("|", "\\|")
    run = max((len(r) for r in re.findall(r"`+", s)), default=0)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{'`' * (run + 1)}{pad}{s}{pad}{'`' * (run + 1)}"


def num(v, fmt: str = ".3f") -> str:
    """A float as `fmt`, "—" for None, anything else (an int too) as text."""
    if isinstance(v, float):
        return format(v, fmt)
    return "—" if v is None else text(v)


def times(m) -> str:
    """A clamp multiple: 0.5, 1, 10 (not 0.500)."""
    return f"{m:g}" if isinstance(m, (int, float)) else num(m)


def pct(v) -> str:
    return f"{v:.0%}" if isinstance(v, (int, float)) else "—"


def clip(s: str, n: int = 110) -> str:
    """The first ~n characters of `s` on one line, cut at a word boundary with an ellipsis."""
    s = " ".join(str(s).replace("\n", " ↵ ").split())
    if len(s) <= n:
        return s
    cut = s[:n + 1].rsplit(" ", 1)[0]
    return (cut if len(cut) > n // 2 else s[:n]).rstrip(" .,;:") + "…"


def clip_around(s: str, mark: str, before: int = 30, n: int = 60) -> str:
    """`clip(s, n)`, but keeping at most `before` characters before `mark` (cut with an ellipsis), so
    that what follows the mark shows however long the text before it."""
    s = " ".join(str(s).replace("\n", " ↵ ").split())
    i = s.find(mark)
    return clip(s, n) if i <= before else "…" + clip(s[i - before:], n)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table (cells already formatted), and the blank line after it."""
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(r) + " |" for r in rows] + [""])
