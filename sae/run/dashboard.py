"""A static HTML feature browser (after Towards Monosemanticity's), and the same view as text.

`build_dashboard` writes a folder that opens from disk (no server, no network): `index.html`, a
table of every alive feature (a click on a column header sorts it: a few lines of inline JS, the
page works without them), and `features/f{id}.html`, one feature's statistics, activation
histogram (inline SVG), top and quantile contexts with every token coloured by its activation,
the tokens its decoder direction promotes and suppresses, and its mass per concept.

Every token string goes through `html.escape`: the text is data, never markup. Each token is an
isolated bidirectional run (`<bdi>`), so right-to-left text (Arabic) keeps the model's reading
order. `format_feature` prints one feature for a terminal, marking active tokens as «token 1.23».
"""

from __future__ import annotations

import html
import os
import random
import re
from collections import Counter
from pathlib import Path

import torch

from sae.run._html import page, table
from sae.world.corpus import CONCEPTS
from sae.interpret import (Context, FeatureStats, contexts_many, features_for_concept, logit_effects,
                           quantile_indices)
from sae.evaluation.detectors import DETECTOR_RECALL, DETECTOR_SHARE
from sae.utils import atomic_write_text

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


def _tok_html(s: str) -> str:
    """A token's text, escaped, with newlines shown as ↵ so that contexts stay on one line. Callers
    put it in a `<bdi>`, so a right-to-left token cannot reorder its neighbours."""
    return html.escape(s.replace("\n", "↵"), quote=True)


def _concept_name(c: int) -> str:
    return CONCEPTS[c] if 0 <= c < len(CONCEPTS) else "none"


# ----------------------------------------------------------------------------- pieces of pages
def context_html(tok, ctx: Context, scale: float) -> str:
    """One context, every token's background opacity proportional to its activation / `scale`."""
    spans, texts = [], tok.token_texts(ctx.token_ids)  # a character split over tokens shows whole
    for j, (s, a) in enumerate(zip(texts, ctx.acts)):
        alpha = min(max(a / scale, 0.0), 1.0) if scale > 0 else 0.0
        cls = "t focus" if j == ctx.focus else "t"
        style = f' style="background: rgba(255, 120, 0, {alpha:.2f})"' if alpha > 0 else ""
        spans.append(f'<bdi class="{cls}" title="{a:.3f}"{style}>{_tok_html(s)}</bdi>')
    return f'<div class="ctx"><span class="act">{ctx.acts[ctx.focus]:.2f}</span>{"".join(spans)}</div>'


def histogram_svg(acts: torch.Tensor, bins: int = 30, width: int = 420, height: int = 140,
                  max_act: float | None = None) -> str:
    """An inline SVG bar chart of sampled non-zero activations (x: activation, y: count).

    The sample (`FeatureStats.sample_acts`, 200 tokens) rarely holds the feature's largest
    activation, so the axis runs to `max_act` (the true maximum over all held-out tokens) when
    given, and a red tick marks it: the empty stretch before it is the rare tail the sample missed."""
    acts = acts[acts > 0]
    if len(acts) == 0:
        return '<p class="muted">no activations</p>'
    hi = max(float(acts.max()), float(max_act or 0.0))
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
    if max_act:
        x = width - 5
        axis += (f'<line x1="{x}" y1="{height - pad + 4}" x2="{x}" y2="6" stroke="#c00" stroke-dasharray="3,2">'
                 f'<title>max activation {hi:.3f} (all held-out tokens)</title></line>'
                 f'<text x="{x - 3}" y="16" font-size="11" fill="#c00" text-anchor="end">max</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="activation histogram">{"".join(bars)}{axis}</svg>')


def top_tokens(stats: FeatureStats, feature: int, n: int = 4) -> list[tuple[int, int]]:
    """The most common token ids among the feature's top activations: [(token id, count)]."""
    idx = stats.top_idx[feature]
    return Counter(stats.tokens[idx[idx >= 0]].tolist()).most_common(n)


def top_token_summary(stats: FeatureStats, tok, feature: int, n: int = 4) -> str:
    """The most common token strings among the feature's top activations, e.g. "' A' ×5, ' G' ×3"."""
    return ", ".join(f"{tok.token_str(t)!r} ×{c}" for t, c in top_tokens(stats, feature, n))


def _top_tokens_html(stats: FeatureStats, tok, feature: int, n: int = 4) -> str:
    """`top_token_summary` as HTML, each token in its own `<bdi>`: in one string, an Arabic token
    would pull its quotes and its "×20" into right-to-left order ("'20× 'و")."""
    return ", ".join(f'<bdi class="tok">{html.escape(repr(tok.token_str(t)))}</bdi> ×{c}'
                     for t, c in top_tokens(stats, feature, n))


def _logit_table(tok, rows: list[tuple[int, float]], title: str) -> str:
    cells = [[f'<bdi class="tok">{_tok_html(tok.token_str(t))}</bdi>', f"{v:+.4f}"]
             for t, v in rows]
    return f"<div><h3>{title}</h3>{table(cells, head=['token', 'logit effect'], num=(1,))}</div>"


def _examples(stats: FeatureStats, feature: int, n_top: int, per_quantile: int) -> list[tuple[str, list[int]]]:
    """The sections of examples of a feature: [(heading, token indices)], top activations first."""
    idx = stats.top_idx[feature]
    sections = [(f"Top {int((idx >= 0).sum().clamp_max(n_top))} activations", idx[idx >= 0][:n_top].tolist())]
    return sections + [(f"Quantile {lo:.2f} – {hi:.2f}", q)
                       for lo, hi, q in quantile_indices(stats, feature, per_bin=per_quantile)]


Sections = list[tuple[str, list[Context]]]  # [(heading, contexts)] of one feature's page


def _section_contexts(stats, model, sae, sections: dict[int, list[tuple[str, list[int]]]]) -> dict[int, Sections]:
    """Contexts for the example sections of several features, each window run once."""
    flat = {f: [i for _, idx in secs for i in idx] for f, secs in sections.items()}
    got = contexts_many(stats, model, sae, flat)
    out = {}
    for f, secs in sections.items():
        ctxs = iter(got[f])
        out[f] = [(head, [next(ctxs) for _ in idx]) for head, idx in secs]
    return out


def feature_page(stats: FeatureStats, tok, model, sae, feature: int, examples: Sections) -> str:
    """The HTML of one feature's page (links are relative to `features/`), with the context
    sections `examples` (`_section_contexts`, batched over many features by `build_dashboard`)."""
    f = feature
    scale = float(stats.max_act[f])
    share = None  # (n_concepts,) its column of `FeatureStats.concept_share`, not all d_sae of them
    if stats.concept_mass is not None:
        col = stats.concept_mass[:, f]
        share = (col[:-1] / col.sum().clamp_min(1e-12)).float()
    head = [f'<p><a href="../index.html">← all features</a></p><h1>Feature {f}</h1>',
            f"<p>site <code>{html.escape(stats.site)}</code> · density {float(stats.density[f]):.4%} "
            f"({int(stats.fire_count[f]):,} of {stats.n_tokens:,} tokens) · max activation {scale:.3f} · "
            f"mean activation when firing {float(stats.mean_act[f]):.3f}"]
    if share is not None and stats.fire_count[f] > 0:
        head.append(f" · best concept <b>{html.escape(_concept_name(int(share.argmax())))}</b> "
                    f"({float(share.max()):.0%} of its activation mass)")
    head.append("</p>")
    hist = f'<div style="max-width: 430px"><h2>Activation histogram</h2>' \
           f"{histogram_svg(stats.sample_acts[f], max_act=scale)}" \
           f'<p class="muted">{int((stats.sample_idx[f] >= 0).sum())} sampled non-zero activations; the axis ' \
           f"runs to the largest activation on all {stats.n_tokens:,} tokens (red)</p></div>"
    concept_rows = ""
    if share is not None:
        order = share.argsort(descending=True)[:5]
        rows = [[html.escape(CONCEPTS[c]), f"{float(share[c]):.1%}"] for c in order.tolist() if share[c] > 0]
        concept_rows = f"<div><h2>Activation mass by concept</h2>{table(rows, num=(1,))}</div>"
    parts = ["\n".join(head), f'<div class="cols">{hist}{concept_rows}</div>']
    eff = logit_effects(model, sae, f, k=10, site=sae.cfg.target_site or stats.site)
    parts.append('<h2>Logit effects</h2><p class="muted">W_dec[i] through the MLP output, the final '
                 'LayerNorm (as linear) and the unembedding: direct effect on the next-token logits.</p>'
                 f'<div class="cols">{_logit_table(tok, eff.promoted, "promoted")}'
                 f'{_logit_table(tok, eff.suppressed, "suppressed")}</div>')
    parts.append('<p class="muted">Hover a token for its activation; the framed token is the example. Tokens '
                 'run left to right in the order the model read them, right-to-left scripts included.</p>')
    for j, (head, ctxs) in enumerate(examples):
        tag = "h2" if j == 0 else "h3"
        parts.append(f"<{tag}>{head}</{tag}>" + "".join(context_html(tok, c, scale) for c in ctxs))
    return page(f"Feature {f}", "\n".join(parts))


# Every alive feature gets a page up to this many; a larger dictionary (the `base` preset's 16,384
# features: ~0.7 GB of pages) gets `default_features`' selection, and the index says so.
ALL_PAGES_MAX = 2048
DEFAULT_PER_CONCEPT, DEFAULT_RANDOM = 3, 20
RUN_HINT = "python -m sae dashboard --run RUN --features ID,ID,..."  # how the index says to add pages


def _legend(concepts: bool, detectors: bool) -> str:
    """What each column of the index means (the concept columns only where there are concepts)."""
    items = [("feature", "the feature's id; linked where it has a page"),
             ("detects", f"the concept this feature is a detector of: at least {DETECTOR_SHARE:.0%} of its "
                         f"activation mass on the concept, and it lights up in at least {DETECTOR_RECALL:.0%} of "
                         "the concept's held-out segments") if detectors else None,
             ("density", "share of the held-out tokens on which the feature fires (activation > 0)"),
             ("max act", "its largest activation on the held-out tokens (steering clamps to multiples of it)"),
             ("mean act", "its mean activation on the tokens where it fires"),
             ("best concept", "the concept that gets the largest share of its activation mass") if concepts else None,
             ("share", "that concept's share of its activation mass (Towards Monosemanticity's Arabic "
                       "feature: 81%)") if concepts else None,
             ("top tokens", "the most common tokens among its 20 largest activations, with counts")]
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in filter(None, items))
    return f'<dl class="legend">{rows}</dl>'


def _pages_note(n_pages: int, n_alive: int, run_hint: str) -> str:
    """Which features have a page and why, so that an unlinked id is not mistaken for a broken build."""
    if n_pages >= n_alive:
        return "Every alive feature has a page (click its id)."
    return (f"{n_pages} of the {n_alive} alive features have a page (their ids are linked); the others were not "
            f"built, to keep the folder small. By default every alive feature gets a page when there are at most "
            f"{ALL_PAGES_MAX:,}; beyond that, each concept's {DEFAULT_PER_CONCEPT} purest features, the features the "
            f"report links to and {DEFAULT_RANDOM} random ones. Add pages with <code>{html.escape(run_hint)}</code> "
            "(earlier pages are kept).")


def index_page(stats: FeatureStats, tok, pages: set[int], title: str = "SAE features",
               detectors: dict[int, str] | None = None, run_hint: str = RUN_HINT) -> str:
    """The table of every alive feature; ids with a page link to it. `detectors` {feature: concept}
    marks each concept's detector features (`sae.evaluation.detectors`) in a column and names each
    concept's chosen one in the intro; real text (no concept labels) gets no concept columns."""
    detectors = detectors or {}
    best = stats.best_concept()
    alive = stats.alive.nonzero()[:, 0].tolist()
    cols = ["feature"] + (["detects"] if detectors else []) + ["density", "max act", "mean act"] \
        + (["best concept", "share"] if best is not None else []) + ["top tokens"]
    head = "".join(f'<th data-col="{i}" title="click to sort">{c}</th>' for i, c in enumerate(cols))

    def link(f: int) -> str:
        return f'<a href="features/f{f}.html">{f}</a>' if f in pages else str(f)

    numbers = [(stats.density, ".3%"), (stats.max_act, ".2f"), (stats.mean_act, ".2f")]
    rows = []
    for f in alive:
        cells = [f'<td data-v="{f}">{link(f)}</td>']
        if detectors:
            d = html.escape(detectors.get(f, ""))
            cells.append(f'<td data-v="{d}"><b>{d}</b></td>')
        cells += [f'<td class="num" data-v="{float(v[f]):.6g}">{float(v[f]):{fmt}}</td>'
                  for v, fmt in numbers]
        if best is not None:
            concept, share = html.escape(_concept_name(int(best[1][f]))), float(best[0][f])
            cells += [f'<td data-v="{concept}">{concept}</td>', f'<td class="num" data-v="{share:.4f}">{share:.0%}</td>']
        summary = html.escape(top_token_summary(stats, tok, f), quote=True)
        cells.append(f'<td data-v="{summary}">{_top_tokens_html(stats, tok, f)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    n_dead = stats.d_sae - len(alive)
    n_linked = len(set(alive) & pages)
    intro = (f"<h1>{html.escape(title)}</h1><p>{len(alive)} alive features of {stats.d_sae} ({n_dead} never fired) "
             f"on {stats.n_tokens:,} held-out tokens at <code>{html.escape(stats.site)}</code>. "
             f"{_pages_note(n_linked, len(alive), run_hint)} Click a column header to sort.</p>"
             + _legend(best is not None, bool(detectors)))
    if detectors:
        by_concept: dict[str, list[int]] = {}
        for f, c in detectors.items():  # each concept's chosen detector comes first
            by_concept.setdefault(c, []).append(f)
        items = [f"{html.escape(c)} {link(fs[0])}" + (f" (+{len(fs) - 1} more)" if len(fs) > 1 else "")
                 for c, fs in sorted(by_concept.items())]
        intro += (f"<p><b>Concept detectors</b> (column <i>detects</i>; sort by it to list them). Each concept's "
                  f"chosen detector (of several, the one with the highest token AUROC): {', '.join(items)}.</p>")
    return page(title, f"{intro}<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows)
                + "\n</tbody></table>", SORT_JS)


# ----------------------------------------------------------------------------- the folder
# Memory for the batched contexts of one chunk of pages (`contexts_many` keeps windows × n_ctx ×
# features floats). Large chunks share each window among many features, so the model reads the
# held-out windows fewer times.
CONTEXT_MEMORY_BYTES = 256 * 2**20


def default_features(stats: FeatureStats, per_concept: int = DEFAULT_PER_CONCEPT, n_random: int = DEFAULT_RANDOM,
                     seed: int = 0, all_max: int = ALL_PAGES_MAX) -> list[int]:
    """Every alive feature when there are at most `all_max` of them (the README promises one page
    per feature). Otherwise, for each concept its `per_concept` features with the largest mass
    share on it, plus a seeded random sample of `n_random` alive features."""
    alive = stats.alive.nonzero()[:, 0].tolist()
    if len(alive) <= all_max:
        return alive
    concepts = CONCEPTS if stats.concept_mass is not None else []  # none on real text
    chosen = [f for c in concepts for f, _ in features_for_concept(stats, c, k=per_concept)]
    rest = sorted(set(alive) - set(chosen))
    chosen += random.Random(seed).sample(rest, min(n_random, len(rest)))
    return list(dict.fromkeys(chosen))


def build_dashboard(model, sae, tok, stats: FeatureStats, out_dir: str | os.PathLike,
                    features: list[int] | None = None, title: str = "SAE features", chunk: int | None = None,
                    detectors: dict[int, str] | None = None, run_hint: str | None = None) -> Path:
    """Write `out_dir/index.html` and `out_dir/features/f{id}.html` for `features` (default:
    `default_features(stats)`); return the index's path. `detectors` and `run_hint` go to
    `index_page`. `chunk` features share one batched pass over their contexts (default: as many
    as `CONTEXT_MEMORY_BYTES` allows, >= 16)."""
    out = Path(out_dir)
    features = default_features(stats) if features is None else [int(f) for f in features]
    chunk = chunk or max(16, CONTEXT_MEMORY_BYTES // (4 * max(len(stats.tokens), 1)))
    for start in range(0, len(features), chunk):  # chunks bound the memory of the batched contexts
        group = features[start:start + chunk]
        examples = _section_contexts(stats, model, sae, {f: _examples(stats, f, 20, 5) for f in group})
        for f in group:
            atomic_write_text(out / "features" / f"f{f}.html",
                              feature_page(stats, tok, model, sae, f, examples=examples[f]))
    # earlier builds' pages stay linked: `--features 5` adds a page, it does not unlink the rest
    found = (re.fullmatch(r"f(\d+)\.html", p.name) for p in (out / "features").glob("f*.html"))
    pages = set(features) | {int(m.group(1)) for m in found if m and int(m.group(1)) < stats.d_sae}
    return atomic_write_text(out / "index.html", index_page(stats, tok, pages, title, detectors, run_hint or RUN_HINT))


# ----------------------------------------------------------------------------- terminal
def _context_text(tok, ctx: Context, threshold: float) -> str:
    texts = (s.replace("\n", "↵") for s in tok.token_texts(ctx.token_ids))
    marked = (f"«{s} {a:.2f}»" if a > threshold or j == ctx.focus else s
              for j, (s, a) in enumerate(zip(texts, ctx.acts)))
    return f"{ctx.acts[ctx.focus]:6.2f} | " + "".join(marked)


def format_feature(stats: FeatureStats, tok, model, sae, feature: int, n_top: int = 8, per_quantile: int = 2) -> str:
    """One feature as text: statistics, best concept, logit effects, top and quantile contexts,
    with the example token and those above 10% of the max activation marked «token activation»."""
    f = feature
    lines = [f"feature {f} at {stats.site}: density {float(stats.density[f]):.4%}, "
             f"max {float(stats.max_act[f]):.3f}, mean when firing {float(stats.mean_act[f]):.3f}"]
    best = stats.best_concept()
    if best is not None and stats.fire_count[f] > 0:
        lines.append(f"best concept: {_concept_name(int(best[1][f]))} ({float(best[0][f]):.0%} of its activation mass)")
    eff = logit_effects(model, sae, f, k=6, site=sae.cfg.target_site or stats.site)
    lines.append("promotes:   " + ", ".join(f"{tok.token_str(t)!r} {v:+.3f}" for t, v in eff.promoted))
    lines.append("suppresses: " + ", ".join(f"{tok.token_str(t)!r} {v:+.3f}" for t, v in eff.suppressed))
    threshold = 0.1 * float(stats.max_act[f])
    for head, ctxs in _section_contexts(stats, model, sae, {f: _examples(stats, f, n_top, per_quantile)})[f]:
        lines.append(head + ":")
        lines += ["  " + _context_text(tok, c, threshold) for c in ctxs]
    return "\n".join(lines)
