"""A static HTML feature browser (after Towards Monosemanticity's), and the same view as text.

`build_dashboard` writes a folder that opens from disk, with no server, no network and no
JavaScript required:

    index.html           every alive feature: id, density, max and mean activation, best concept
                         and its share of the feature's activation mass, its most common top tokens.
                         Clicking a column header sorts the table (a few lines of inline JS; without
                         JS the table stays in id order and every link still works).
    features/f{id}.html  one feature: its statistics, an activation histogram (inline SVG), the
                         top-k contexts and examples from each activation quantile with every token
                         coloured by the activation (hover a token for its value), the tokens its
                         decoder direction promotes and suppresses (`sae.interpret.logit_effects`),
                         and its activation mass per concept.

Every token string goes through `html.escape`: the text is data, never markup. `format_feature`
prints one feature for a terminal, marking active tokens as «token 1.23».
"""

from __future__ import annotations

import html
import os
import random
from collections import Counter
from pathlib import Path

import torch

from sae.corpus import CONCEPTS
from sae.interpret import (Context, FeatureStats, contexts_many, features_for_concept, logit_effects,
                           quantile_indices)
from sae.metrics import DETECTOR_RECALL, DETECTOR_SHARE
from sae.utils import atomic_write_text

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; cursor: pointer; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ctx { font-family: ui-monospace, monospace; font-size: 13px; white-space: pre-wrap;
       border-bottom: 1px solid #eee; padding: 2px 0; }
.ctx span.t { border-radius: 2px; }
.ctx span.focus { outline: 1px solid #444; }
.act { display: inline-block; width: 4.5em; color: #666; }
.tok { font-family: ui-monospace, monospace; background: #f4f4f4; padding: 0 3px; white-space: pre; }
.cols { display: flex; gap: 2em; flex-wrap: wrap; }
.muted { color: #777; }
"""

SORT_JS = """
document.querySelectorAll("th[data-col]").forEach(function (th) {
  th.addEventListener("click", function () {
    var tbody = th.closest("table").tBodies[0], col = +th.dataset.col;
    var asc = th.dataset.asc !== "1"; th.dataset.asc = asc ? "1" : "0";
    var rows = Array.from(tbody.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  });
});
"""


def _page(title: str, body: str, script: str = "") -> str:
    js = f"<script>{script}</script>" if script else ""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head>\n<body>\n{body}\n{js}</body></html>\n")


def _tok_html(tok, i: int) -> str:
    """A token as visible, escaped text (newlines shown as ↵ so that contexts stay on one line)."""
    return html.escape(tok.token_str(i).replace("\n", "↵"), quote=True)


def _concept_name(c: int) -> str:
    return CONCEPTS[c] if 0 <= c < len(CONCEPTS) else "none"


# ----------------------------------------------------------------------------- pieces of pages


def context_html(tok, ctx: Context, scale: float) -> str:
    """One context, every token's background opacity proportional to its activation / `scale`."""
    spans = []
    for j, (t, a) in enumerate(zip(ctx.token_ids, ctx.acts)):
        alpha = min(max(a / scale, 0.0), 1.0) if scale > 0 else 0.0
        cls = "t focus" if j == ctx.focus else "t"
        style = f' style="background: rgba(255, 120, 0, {alpha:.2f})"' if alpha > 0 else ""
        spans.append(f'<span class="{cls}" title="{a:.3f}"{style}>{_tok_html(tok, t)}</span>')
    return f'<div class="ctx"><span class="act">{ctx.acts[ctx.focus]:.2f}</span>{"".join(spans)}</div>'


def histogram_svg(acts: torch.Tensor, bins: int = 30, width: int = 420, height: int = 140) -> str:
    """An inline SVG bar chart of sampled non-zero activations (x: activation, y: count)."""
    acts = acts[acts > 0]
    if len(acts) == 0:
        return '<p class="muted">no activations</p>'
    hi = float(acts.max())
    counts = torch.histc(acts, bins=bins, min=0.0, max=hi)
    top = float(counts.max())
    pad, w = 24, (width - 30) / bins
    bars = []
    for b, c in enumerate(counts.tolist()):
        h = (height - pad - 6) * c / top
        lo_edge, hi_edge = hi * b / bins, hi * (b + 1) / bins
        bars.append(f'<rect x="{25 + b * w:.1f}" y="{height - pad - h:.1f}" width="{w - 1:.1f}" height="{h:.1f}" '
                    f'fill="#f07800"><title>{lo_edge:.2f}–{hi_edge:.2f}: {int(c)}</title></rect>')
    axis = (f'<line x1="25" y1="{height - pad}" x2="{width - 5}" y2="{height - pad}" stroke="#444"/>'
            f'<text x="25" y="{height - 8}" font-size="11">0</text>'
            f'<text x="{width - 5}" y="{height - 8}" font-size="11" text-anchor="end">{hi:.2f}</text>'
            f'<text x="{width / 2}" y="{height - 8}" font-size="11" text-anchor="middle">activation</text>'
            f'<text x="2" y="12" font-size="11">{int(top)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="activation histogram">{"".join(bars)}{axis}</svg>')


def top_token_summary(stats: FeatureStats, tok, feature: int, n: int = 4) -> str:
    """The most common token strings among the feature's top activations, e.g. "' A' ×5, ' G' ×3"."""
    idx = stats.top_idx[feature]
    ids = stats.tokens[idx[idx >= 0]].tolist()
    common = Counter(ids).most_common(n)
    return ", ".join(f"{tok.token_str(t)!r} ×{c}" for t, c in common)


def _logit_table(tok, rows: list[tuple[int, float]], title: str) -> str:
    body = "".join(f'<tr><td><span class="tok">{_tok_html(tok, t)}</span></td><td class="num">{v:+.4f}</td></tr>'
                   for t, v in rows)
    return f"<div><h3>{title}</h3><table><tr><th>token</th><th>logit effect</th></tr>{body}</table></div>"


def _examples(stats: FeatureStats, feature: int, n_top: int, per_quantile: int) -> list[tuple[str, list[int]]]:
    """The sections of examples of a feature: [(heading, token indices)], top activations first."""
    idx = stats.top_idx[feature]
    sections = [(f"Top {int((idx >= 0).sum().clamp_max(n_top))} activations", idx[idx >= 0][:n_top].tolist())]
    for lo, hi, q in quantile_indices(stats, feature, per_bin=per_quantile):
        sections.append((f"Quantile {lo:.2f} – {hi:.2f}", q))
    return sections


Sections = list[tuple[str, list[Context]]]  # [(heading, contexts)] of one feature's page


def _section_contexts(stats, model, sae, sections: dict[int, list[tuple[str, list[int]]]]) -> dict[int, Sections]:
    """Contexts for the example sections of several features, each window run once."""
    flat = {f: [i for _, idx in secs for i in idx] for f, secs in sections.items()}
    got = contexts_many(stats, model, sae, flat)
    out = {}
    for f, secs in sections.items():
        ctxs, out[f] = iter(got[f]), []
        for head, idx in secs:
            out[f].append((head, [next(ctxs) for _ in idx]))
    return out


def feature_page(stats: FeatureStats, tok, model, sae, feature: int, top_k: int = 20, per_quantile: int = 5,
                 examples: Sections | None = None) -> str:
    """The HTML of one feature's page (links are relative to `features/`). `examples` are the
    context sections, computed here unless `build_dashboard` batched them for many features."""
    f = feature
    if examples is None:
        examples = _section_contexts(stats, model, sae, {f: _examples(stats, f, top_k, per_quantile)})[f]
    scale = float(stats.max_act[f])
    best = stats.best_concept()
    head = [f'<p><a href="../index.html">← all features</a></p><h1>Feature {f}</h1>',
            f"<p>site <code>{html.escape(stats.site)}</code> · density {float(stats.density[f]):.4%} "
            f"({int(stats.fire_count[f]):,} of {stats.n_tokens:,} tokens) · max activation {scale:.3f} · "
            f"mean activation when firing {float(stats.mean_act[f]):.3f}"]
    if best is not None and stats.fire_count[f] > 0:
        head.append(f" · best concept <b>{html.escape(_concept_name(int(best[1][f])))}</b> "
                    f"({float(best[0][f]):.0%} of its activation mass)")
    head.append("</p>")

    hist = f"<div><h2>Activation histogram</h2>{histogram_svg(stats.sample_acts[f])}" \
           f'<p class="muted">{int((stats.sample_idx[f] >= 0).sum())} sampled non-zero activations</p></div>'
    concept_rows = ""
    share = stats.concept_share()
    if share is not None:
        order = share[:, f].argsort(descending=True)[:5]
        concept_rows = "".join(f'<tr><td>{html.escape(CONCEPTS[c])}</td><td class="num">{float(share[c, f]):.1%}</td></tr>'
                               for c in order.tolist() if share[c, f] > 0)
        concept_rows = f"<div><h2>Activation mass by concept</h2><table>{concept_rows}</table></div>"
    parts = ["\n".join(head), f'<div class="cols">{hist}{concept_rows}</div>']

    eff = logit_effects(model, sae, f, k=10, site=stats.site)
    parts.append('<h2>Logit effects</h2><p class="muted">W_dec[i] through the MLP output, the final '
                 'LayerNorm (as linear) and the unembedding: direct effect on the next-token logits.</p>'
                 f'<div class="cols">{_logit_table(tok, eff.promoted, "promoted")}'
                 f'{_logit_table(tok, eff.suppressed, "suppressed")}</div>')

    parts.append('<p class="muted">Hover a token for its activation; the framed token is the example.</p>')
    for j, (head, ctxs) in enumerate(examples):
        tag = "h2" if j == 0 else "h3"
        parts.append(f"<{tag}>{head}</{tag}>" + "".join(context_html(tok, c, scale) for c in ctxs))
    return _page(f"Feature {f}", "\n".join(parts))


def index_page(stats: FeatureStats, tok, pages: set[int], title: str = "SAE features",
               detectors: dict[int, str] | None = None) -> str:
    """The table of every alive feature; ids with a page link to it. `detectors` {feature: concept}
    marks each concept's detector feature (`sae.metrics.Detectors`) and lists them first."""
    detectors = detectors or {}
    best = stats.best_concept()
    alive = stats.alive.nonzero()[:, 0].tolist()
    cols = ["feature", "detects", "density", "max act", "mean act", "best concept", "share", "top tokens"]
    head = "".join(f'<th data-col="{i}" title="click to sort">{c}</th>' for i, c in enumerate(cols))
    rows = []
    for f in alive:
        fid = f'<a href="features/f{f}.html">{f}</a>' if f in pages else str(f)
        concept, share = ("—", -1.0)
        if best is not None:
            concept, share = _concept_name(int(best[1][f])), float(best[0][f])
        summary = html.escape(top_token_summary(stats, tok, f).replace("\n", "↵"))
        rows.append(
            f'<tr><td data-v="{f}">{fid}</td>'
            f'<td data-v="{html.escape(detectors.get(f, ""))}"><b>{html.escape(detectors.get(f, ""))}</b></td>'
            f'<td class="num" data-v="{float(stats.density[f]):.6g}">{float(stats.density[f]):.3%}</td>'
            f'<td class="num" data-v="{float(stats.max_act[f]):.6g}">{float(stats.max_act[f]):.2f}</td>'
            f'<td class="num" data-v="{float(stats.mean_act[f]):.6g}">{float(stats.mean_act[f]):.2f}</td>'
            f'<td data-v="{html.escape(concept)}">{html.escape(concept)}</td>'
            f'<td class="num" data-v="{share:.4f}">{"" if share < 0 else f"{share:.0%}"}</td>'
            f'<td data-v="{summary}"><span class="tok">{summary}</span></td></tr>')
    n_dead = stats.d_sae - len(alive)
    intro = (f"<h1>{html.escape(title)}</h1><p>{len(alive)} alive features of {stats.d_sae} ({n_dead} never fired) "
             f"on {stats.n_tokens:,} held-out tokens at <code>{html.escape(stats.site)}</code>; "
             f"{len(pages)} have a page (linked). Click a column header to sort.</p>")
    if detectors:
        by_concept: dict[str, list[int]] = {}
        for f, c in detectors.items():  # each concept's chosen detector comes first
            by_concept.setdefault(c, []).append(f)

        def link(f: int) -> str:
            return f'<a href="features/f{f}.html">{f}</a>' if f in pages else str(f)

        items = [f"{html.escape(c)} {link(fs[0])}" + (f" (+{len(fs) - 1} more)" if len(fs) > 1 else "")
                 for c, fs in sorted(by_concept.items())]
        intro += (f"<p><b>Concept detectors</b>: a feature with at least {DETECTOR_SHARE:.0%} of its activation mass "
                  f"on one concept that lights up in at least {DETECTOR_RECALL:.0%} of the concept's segments (column "
                  f"<i>detects</i>; sort by it to list them). Each concept's chosen detector (of several, the one "
                  f"with the highest token AUROC): {', '.join(items)}.</p>")
    return _page(title, f"{intro}<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows)
                 + "\n</tbody></table>", SORT_JS)


# ----------------------------------------------------------------------------- the folder


def default_features(stats: FeatureStats, per_concept: int = 3, n_random: int = 20, seed: int = 0) -> list[int]:
    """For each concept its `per_concept` features with the largest mass share on it, plus a
    seeded random sample of `n_random` alive features."""
    chosen: list[int] = []
    if stats.concept_mass is not None:
        for c in CONCEPTS:
            chosen += [f for f, _ in features_for_concept(stats, c, k=per_concept)]
    alive = stats.alive.nonzero()[:, 0].tolist()
    rest = sorted(set(alive) - set(chosen))
    chosen += random.Random(seed).sample(rest, min(n_random, len(rest)))
    return list(dict.fromkeys(chosen))


def build_dashboard(model, sae, tok, stats: FeatureStats, out_dir: str | os.PathLike,
                    features: list[int] | None = None, title: str = "SAE features", chunk: int = 32,
                    detectors: dict[int, str] | None = None) -> Path:
    """Write `out_dir/index.html` and `out_dir/features/f{id}.html` for `features` (default:
    `default_features(stats)`); return the index's path. `detectors` {feature: concept} are
    marked in the index."""
    out = Path(out_dir)
    features = default_features(stats) if features is None else [int(f) for f in features]
    for start in range(0, len(features), chunk):  # chunks bound the memory of the batched contexts
        group = features[start:start + chunk]
        examples = _section_contexts(stats, model, sae, {f: _examples(stats, f, 20, 5) for f in group})
        for f in group:
            atomic_write_text(out / "features" / f"f{f}.html",
                              feature_page(stats, tok, model, sae, f, examples=examples[f]))
    return atomic_write_text(out / "index.html", index_page(stats, tok, set(features), title, detectors))


# ----------------------------------------------------------------------------- terminal


def _context_text(tok, ctx: Context, threshold: float) -> str:
    out = []
    for j, (t, a) in enumerate(zip(ctx.token_ids, ctx.acts)):
        s = tok.token_str(t).replace("\n", "↵")
        out.append(f"«{s} {a:.2f}»" if a > threshold or j == ctx.focus else s)
    return f"{ctx.acts[ctx.focus]:6.2f} | " + "".join(out)


def format_feature(stats: FeatureStats, tok, model, sae, feature: int, n_top: int = 8, per_quantile: int = 2) -> str:
    """One feature as text: statistics, best concept, logit effects, top and quantile contexts;
    tokens on which the feature is active (above 10% of its max), and the example token itself,
    are marked «token activation»."""
    f = feature
    lines = [f"feature {f} at {stats.site}: density {float(stats.density[f]):.4%}, "
             f"max {float(stats.max_act[f]):.3f}, mean when firing {float(stats.mean_act[f]):.3f}"]
    best = stats.best_concept()
    if best is not None and stats.fire_count[f] > 0:
        lines.append(f"best concept: {_concept_name(int(best[1][f]))} ({float(best[0][f]):.0%} of its activation mass)")
    eff = logit_effects(model, sae, f, k=6, site=stats.site)
    lines.append("promotes:   " + ", ".join(f"{tok.token_str(t)!r} {v:+.3f}" for t, v in eff.promoted))
    lines.append("suppresses: " + ", ".join(f"{tok.token_str(t)!r} {v:+.3f}" for t, v in eff.suppressed))
    threshold = 0.1 * float(stats.max_act[f])
    for head, ctxs in _section_contexts(stats, model, sae, {f: _examples(stats, f, n_top, per_quantile)})[f]:
        lines.append(head + ":")
        lines += ["  " + _context_text(tok, c, threshold) for c in ctxs]
    return "\n".join(lines)
