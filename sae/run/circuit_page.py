"""The attribution graph's page: a static SVG (no script, no external file) and a table of the top nodes.

Input tokens run along the bottom, one column per position; above them one band per layer holds
that layer's error node (a grey square) and its kept features (circles, linked to their dashboard
page `features/f{id}.html`); the target logit sits at the top of the last column. An edge's width
grows with |weight| and its colour gives the sign (blue raises the target, red lowers it). Every
text (tokens, the prompt) is escaped: it is data, never markup.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from sae.circuits import Graph
from sae.run._html import page, table
from sae.run.dashboard import build_dashboard
from sae.utils import atomic_write_text

COL, ROW, PAD = 74, 16, 30  # pixels: a position's column, a node's row, the margins


def _layout(graph: Graph) -> tuple[dict[int, tuple[float, float]], int, int]:
    """Each kept node's (x, y), and the picture's width and height."""
    kept = [s for s in range(len(graph.adjacency)) if graph.node_mask[s]]
    stacks: dict[tuple[int, int], list[int]] = {}  # (layer, position) -> kept features and errors, most influential first
    for s in kept:
        kind, layer, pos, _ = graph.describe(s)
        if kind in ("feature", "error"):
            stacks.setdefault((layer, pos), []).append(s)
    for nodes in stacks.values():
        nodes.sort(key=lambda s: -float(graph.influence[s]))
    band = [max([len(v) for (lay, _), v in stacks.items() if lay == layer] + [1]) * ROW + ROW
            for layer in range(graph.n_layers)]
    height = PAD * 2 + ROW * 3 + sum(band)
    width = PAD * 2 + COL * graph.n_pos
    xy = {}
    for s in kept:
        kind, layer, pos, _ = graph.describe(s)
        x = PAD + COL * pos + COL / 2
        if kind == "token":
            xy[s] = (x, height - PAD - ROW)
        elif kind == "logit":
            xy[s] = (x, PAD)
        else:
            base = height - PAD - 2 * ROW - sum(band[:layer + 1])
            xy[s] = (x, base + ROW + stacks[(layer, pos)].index(s) * ROW)
    return xy, width, height


def graph_svg(graph: Graph, tok) -> str:
    """The pruned graph as an inline SVG (module docstring)."""
    if graph.node_mask is None:
        raise ValueError("graph_svg draws a pruned graph: call sae.circuits.prune(graph) first")
    xy, width, height = _layout(graph)
    weights = graph.adjacency * graph.edge_mask
    top = float(weights.abs().max()) or 1.0
    parts = []
    for t, s in weights.nonzero().tolist():
        if t in xy and s in xy:
            w = float(weights[t, s])
            (x1, y1), (x2, y2) = xy[s], xy[t]
            parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                         f'stroke="{"#2166ac" if w > 0 else "#b2182b"}" stroke-opacity="0.55" '
                         f'stroke-width="{0.4 + 4 * abs(w) / top:.2f}"><title>{w:+.3f}</title></line>')
    for s, (x, y) in xy.items():
        kind, layer, pos, index = graph.describe(s)
        tip = f"influence {float(graph.influence[s]):.3f}"
        if kind == "token":
            text = html.escape(tok.decode([graph.tokens[pos]]))
            parts.append(f'<text x="{x:.1f}" y="{y + 14:.1f}" font-size="11" text-anchor="middle" '
                         f'font-family="monospace" style="white-space:pre">{text}<title>position {pos}, {tip}</title></text>'
                         f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#555"/>')
        elif kind == "logit":
            text = html.escape(tok.decode([graph.target]))
            parts.append(f'<rect x="{x - 30:.1f}" y="{y - 9:.1f}" width="60" height="18" fill="#ffe9a8" stroke="#444"/>'
                         f'<text x="{x:.1f}" y="{y + 4:.1f}" font-size="11" text-anchor="middle" font-family="monospace" '
                         f'style="white-space:pre">{text}<title>logit {graph.logit:.2f}</title></text>')
        elif kind == "error":
            parts.append(f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="#aaa">'
                         f'<title>error, layer {layer}, position {pos}, {tip}</title></rect>')
        else:
            parts.append(f'<a href="features/f{index}.html"><circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="#f07800">'
                         f'<title>feature {index}, layer {layer}, position {pos}, {tip}</title></circle></a>')
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="attribution graph">'
            + "".join(parts) + "</svg>")


def top_nodes(graph: Graph, tok, n: int = 12) -> list[tuple]:
    """The `n` kept nodes of most influence on the logit: (kind, layer, position, token text,
    feature, influence, direct effect on the logit)."""
    kept = graph.node_mask[:-1]
    order = [s for s in graph.influence[:-1].argsort(descending=True).tolist() if kept[s]][:n]
    rows = []
    for s in order:
        kind, layer, pos, index = graph.describe(s)
        rows.append((kind, layer, pos, tok.decode([graph.tokens[pos]]), index, float(graph.influence[s]),
                     float(graph.adjacency[-1, s])))
    return rows


def graph_page(graph: Graph, tok, title: str, note: str = "") -> str:
    """The whole page: the prompt, the scores, the SVG and the top nodes."""
    prompt = html.escape(tok.decode(graph.tokens))
    target = html.escape(tok.decode([graph.target]))
    rows = [[html.escape(k), str(layer) if layer >= 0 else "", str(pos), f'<span class="tok">{html.escape(t)}</span>',
             f'<a href="features/f{i}.html">{i}</a>' if k == "feature" else "", f"{inf:.3f}", f"{d:+.3f}"]
            for k, layer, pos, t, i, inf, d in top_nodes(graph, tok)]
    s = graph.scores
    body = (f"<h1>{html.escape(title)}</h1>"
            f'<p>prompt <span class="tok">{prompt}</span> → target <span class="tok">{target}</span> '
            f"(logit {graph.logit:.2f}); {int(graph.node_mask.sum())} of {len(graph.adjacency)} nodes kept; "
            f"replacement score {s['replacement']:.3f}, completeness {s['completeness']:.3f}. "
            f"{html.escape(note)}</p>" + graph_svg(graph, tok)
            + "<h2>Top nodes by influence on the logit</h2>"
            + table(rows, ["kind", "layer", "position", "token", "feature", "influence", "direct effect"], num=(1, 2, 5, 6)))
    return page(title, body)


def write_circuit(out_dir: str | Path, graph: Graph, model, tok, transcoder, stats, title: str, note: str = "") -> Path:
    """Write the graph's page into `out_dir` (named after the prompt and target) and the dashboard
    pages of its kept features into `out_dir/features/` (from the transcoder's `FeatureStats`);
    return the page's path."""
    out = Path(out_dir)
    text = tok.decode(graph.tokens[1:] if graph.tokens[:1] == [tok.eot_token] else graph.tokens)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{text[-40:]}_{tok.decode([graph.target])}").strip("_") or "graph"
    path = atomic_write_text(out / f"{slug}.html", graph_page(graph, tok, title, note))
    kept = sorted({graph.features[s][2] for s in range(len(graph.features)) if graph.node_mask[s]})
    build_dashboard(model, transcoder, tok, stats, out, features=kept, title="transcoder features")
    return path
