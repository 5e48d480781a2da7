"""The HTML of the run's pages, shared by the report (`sae.run.report`) and the feature dashboard
(`sae.run.dashboard`): one page shell and stylesheet, tables, and the small Markdown subset that the
report is written in. Text from files and from the model (run names, warnings, sampled text,
tokens) is data, never markup: whatever is not a tag written here goes through `html.escape`, and
a link or an image goes only where `safe_link_target` allows (never `javascript:`).
"""

from __future__ import annotations

import base64
import html
import re
from itertools import groupby
from pathlib import Path

CSS = """
body { font-family: system-ui, sans-serif; color: #222; max-width: 1100px; margin: 1.5em auto; padding: 0 1em; }
p { line-height: 1.45; }  code { background: #f3f3f3; }  img { max-width: 100%; }  figure { margin: 1.5em 0; }
figcaption { color: #444; font-size: 92%; max-width: 900px; margin-top: .3em; }
p.warning { background: #fff3cd; border: 1px solid #e0b000; padding: .5em .8em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; }  th[data-col] { cursor: pointer; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ctx { font-family: ui-monospace, monospace; font-size: 13px; white-space: pre-wrap; border-bottom: 1px solid #eee;
       padding: 2px 0; }
.ctx .t { border-radius: 2px; }  .ctx .focus { outline: 1px solid #444; }
.act { display: inline-block; width: 4.5em; color: #666; }
.tok { font-family: ui-monospace, monospace; background: #f4f4f4; padding: 0 3px; white-space: pre; }
.cols { display: flex; gap: 2em; flex-wrap: wrap; }  .muted { color: #777; }
dl.legend { display: grid; grid-template-columns: max-content auto; gap: 2px 1em; font-size: 14px; }
dl.legend dt { font-weight: bold; }  dl.legend dd { margin: 0; }
"""


def page(title: str, body: str, script: str = "") -> str:
    """A whole HTML document: `title` is text (escaped here), `body` HTML and `script` JavaScript."""
    js = f"<script>{script}</script>" if script else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head>\n<body>\n{body}\n{js}</body></html>\n")


def table(rows: list[list[str]], head: list[str] | None = None, num: tuple[int, ...] = ()) -> str:
    """A table of HTML cells under the header row `head`; the columns in `num` are right-aligned."""
    th = "<tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>" if head else ""
    tds = ("".join(f'<td class="num">{c}</td>' if j in num else f"<td>{c}</td>" for j, c in enumerate(r)) for r in rows)
    return f"<table>{th}" + "".join(f"<tr>{r}</tr>" for r in tds) + "</table>"


def safe_link_target(target: str, image: bool = False) -> bool:
    """Whether `target` may become a link: http(s), or a relative path (no scheme, so never
    `javascript:`; no leading `/`). An image must be a relative path inside the run (it is read
    and inlined), so `..` is refused there."""
    if re.search(r"[\s\x00-\x1f\x7f<>\"'`\\]", target) or not target:
        return False
    if re.match(r"https?://", target, re.I):
        return not image
    if ":" in target or target.startswith("/"):
        return False
    return not (image and ".." in target.split("/"))


# ----------------------------------------------------------------------------- Markdown

# At each position, in this order: a backslash escape of an ASCII punctuation character; a code
# span (a run of backticks, closed by a run of the same length); a run of backticks that closes
# nothing (literal). The lookarounds keep a run of backticks whole.
_ESCAPE_OR_CODE = re.compile(r"\\([!-/:-@\[-`{-~])|(`+)(?!`)(.*?)(?<!`)\2(?!`)|`+")
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^()\s]*)\)")


def _emphasis(t: str) -> str:
    t = html.escape(t, quote=False)
    t = re.sub(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"<b>\1</b>", t)
    return re.sub(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])", r"<em>\1</em>", t)


def _inline(text: str, root: Path) -> str:
    """Markdown inline syntax to HTML. Backslash escapes and code spans are read first, left to
    right, and set aside as placeholders, so nothing inside them becomes a link or bold. A link
    or an image to a target that is not safe stays text."""
    kept: list[tuple[str, str]] = []  # (raw text, HTML) of each placeholder

    def keep(raw: str, out: str) -> str:
        kept.append((raw, out))
        return f"\x00{len(kept) - 1}\x00"

    def restore(t: str, raw: bool) -> str:
        return re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m[1])][0 if raw else 1], t)

    def escape_or_code(m: re.Match) -> str:
        if m[2] is None:  # an escape, or backticks that close nothing
            return keep(m[1], html.escape(m[1])) if m[1] else m[0]
        code = m[3][1:-1] if len(m[3]) > 1 and m[3][0] == m[3][-1] == " " and m[3].strip() else m[3]
        return keep(code, f"<code>{html.escape(code)}</code>")

    def link_or_image(m: re.Match) -> str:
        label, target = restore(m[2], raw=True), restore(m[3], raw=True)
        if m[1]:  # an image: a file inside `root`, inlined as base64 so that the page can be mailed
            if not safe_link_target(target, image=True) or not (root / target).is_file():
                return m[0]
            data = base64.b64encode((root / target).read_bytes()).decode("ascii")
            return keep(m[0], f'<img alt="{html.escape(label)}" src="data:image/png;base64,{data}">')
        if not safe_link_target(target):
            return m[0]
        return keep(m[0], f'<a href="{html.escape(target)}">{restore(_emphasis(m[2]), raw=False)}</a>')

    t = _LINK.sub(link_or_image, _ESCAPE_OR_CODE.sub(escape_or_code, text.replace("\x00", "")))
    return restore(_emphasis(t), raw=False)


def _kind(line: str) -> str:
    return "table" if line.startswith("|") else "list" if line.startswith("- ") else "line"


def markdown_to_html(md: str, title: str, root: Path) -> str:
    """A small Markdown subset as an HTML page: headings, paragraphs, tables (GitHub's `\\|` in
    cells), `- ` lists, links, images, code spans, bold, italics and backslash escapes. Images are
    read from `root` and inlined; a line that is one image is a figure, and an italic line after
    it is its caption. A paragraph that opens with **Warning:** is set apart."""
    body: list[str] = []
    for kind, lines in groupby(md.splitlines(), key=_kind):
        if kind == "table":
            rows = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
                    for line in lines]
            rows = [[_inline(c, root) for c in r] for r in rows if not all(re.fullmatch(r":?-+:?", c) for c in r)]
            body += [table(rows[1:], head=rows[0])] if rows else []
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(line[2:], root)}</li>" for line in lines) + "</ul>")
        else:
            for line in filter(None, map(str.strip, lines)):
                out, caption = _inline(line, root), re.fullmatch(r"\*(?=[^\s*])(.+)(?<=[^\s*])\*", line)
                if re.fullmatch(r"<img [^>]*>", out):
                    body.append(f"<figure>{out}</figure>")
                elif caption and body and body[-1].endswith("</figure>"):
                    caption = f"<figcaption>{_inline(caption[1], root)}</figcaption>"
                    body[-1] = body[-1].replace("</figure>", caption + "</figure>")
                elif line.startswith("#"):
                    level = len(line) - len(line.lstrip("#"))
                    body.append(f"<h{level}>{_inline(line[level:].strip(), root)}</h{level}>")
                else:
                    body.append(f'<p class="warning">{out}</p>' if line.startswith("**Warning:**") else f"<p>{out}</p>")
    return page(title, "\n".join(body))
