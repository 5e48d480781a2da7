"""The run's report: every number and figure of `runs/NAME/`, readable on its own.

`write_report(run)` reads what the stages wrote (config.json, stages.json, metrics.json,
steering.json, figures/) and writes `report.md` (Markdown, figures linked relatively) and
`report.html` (the same content, figures inlined as base64 PNG, so the file can be mailed).
The paper's value stands beside ours wherever the papers report one: Towards Monosemanticity
run A/1 and Anthropic's April 2024 update (1L MLP, λ = 10).
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from sae.run import preset_fields, preset_of_run
from sae.utils import atomic_write_text

PAPER = {
    "l0": "20.1 (April update, 1L MLP, λ=10)",
    "nmse": "0.131 (April update, λ=10)",
    "ce_recovered_zero": "0.79 (Towards Monosemanticity A/1); 0.914 (April update, λ=10)",
    "dead_fraction": "168 / 4,096 = 4.1% (A/1)",
}


def _load(run: Path, name: str) -> dict:
    p = run / name
    return json.loads(p.read_text()) if p.exists() else {}


def _f(v, nd: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return "—" if v is None else str(v)


def report_markdown(run: str | Path) -> str:
    """The report as Markdown (figures as relative links)."""
    run = Path(run)
    cfg, stages, m, steer = (_load(run, n) for n in ("config.json", "stages.json", "metrics.json", "steering.json"))
    out = [f"# Report: run `{run.name}` (preset `{cfg.get('name', '?')}`, seed {cfg.get('seed', '?')})", ""]
    out += ["Dictionary learning on a one-layer toy transformer: Towards Monosemanticity's experiment and "
            "Scaling Monosemanticity's steering demonstrations, reproduced on a labelled toy world.", ""]

    out += _detector_section(m, run)
    lm = stages.get("lm", {})
    out += ["## Language model", "",
            f"Validation loss {_f(lm.get('val_loss'))} nats/token; on-concept rate of sampled continuations "
            f"{_f(lm.get('on_concept_rate'), 2)} (prompted with a held-out segment's first words).", ""]
    if lm.get("val_loss_by_concept"):
        out += ["| concept | validation loss (nats/token) |", "|---|---|"]
        out += [f"| {k} | {v:.3f} |" for k, v in lm["val_loss_by_concept"].items()]
        out += [""]

    s = m.get("sae", {})
    if s:
        out += ["## Sparse autoencoder", "",
                f"{s.get('arch')} SAE with {s.get('d_sae')} features on `{s.get('site')}`, evaluated on "
                f"{s.get('n_tokens', 0):,} held-out tokens.", "",
                "| metric | ours | paper |", "|---|---|---|"]
        rows = [("L0 (active features / token)", "l0"), ("FVU", "fvu"), ("NMSE", "nmse"),
                ("CE loss recovered (zero-ablation)", "ce_recovered_zero"),
                ("CE loss recovered (mean-ablation)", "ce_recovered_mean"),
                ("CE added by the splice (nats/token)", "ce_added_nats"), ("KL (nats/token)", "kl"),
                ("dead fraction", "dead_fraction"), ("ultralow fraction (< 1e-5)", "ultralow_fraction"),
                ("dense fraction (> 10%)", "dense_fraction")]
        out += [f"| {label} | {_f(s.get(k))} | {PAPER.get(k, '')} |" for label, k in rows]
        out += [""]

    if m.get("concepts"):
        out += ["## Absorption diagnostic: token AUROC of the best single unit", "",
                "Token-level AUROC of the best single unit at detecting each concept's tokens. It punishes a dictionary "
                "that splits a concept into narrower features (absorption), so read it beside the detectors above, not "
                "instead of them. The feature's "
                "precision/recall at its best threshold and the share of its activation mass on the concept "
                "(Towards Monosemanticity's Arabic feature: 81%). The last column is a linear probe on the same "
                "activations (difference of class means, fitted and scored on disjoint halves of the held-out "
                "tokens): what one direction can do when it is *told* the concept.", "",
                "| concept | feature | AUROC | precision | recall | mass share | neuron | neuron AUROC | probe AUROC |",
                "|---|---|---|---|---|---|---|---|---|"]
        for name, c in m["concepts"].items():
            out.append(f"| {name} | [{c['feature']}](dashboard/features/f{c['feature']}.html) | {c['auroc']:.3f} | "
                       f"{c['precision']:.2f} | {c['recall']:.2f} | {c['mass_share']:.2f} | {c.get('neuron', '')} | "
                       f"{_f(c.get('neuron_auroc'))} | {_f(c.get('probe_auroc'))} |")
        out += [""]

    if steer.get("golden_gate"):
        gg = steer["golden_gate"]
        out += ["## Steering", "",
                f"**Golden Gate** (feature {gg['feature']}, max activation {gg['max_act']:.2f}; Scaling "
                f"Monosemanticity clamped theirs at 10×): on-topic rate without clamping {gg['rate_baseline']:.0%}.", "",
                "| clamp (× max) | on topic | mentions | CE of the text (nats/token) | example |", "|---|---|---|---|---|"]
        for r in gg["sweep"]:
            ex = r["example"][:80].replace("|", "\\|").replace("\n", "↵")
            out.append(f"| {r['multiple']} | {r['rate']:.0%} | {r['mention_rate']:.0%} | {r['ce']:.2f} | `{ex}` |")
        us = steer.get("unsafe_code", {})
        if us:
            out += ["", f"**Unsafe code** (feature {us['feature']}): unsafe completions {us['rate_baseline']:.0%} "
                    f"unsteered, {us['rate_clamped']:.0%} clamped at {us['multiple']}×; on prompts that start unsafe "
                    f"{us['rate_unsafe_start']:.0%}, {us['rate_suppressed']:.0%} with the feature at 0; as a detector of "
                    f"unsafe snippets, AUROC {us['detector_auroc']:.3f}."]
            if us.get("lm_context"):
                lc = us["lm_context"]
                out += ["", f"Does the model know unsafe code comes in unsafe files? It gives an insecure construct "
                        f"probability {lc['p_after_unsafe']:.2f} after insecure snippets and {lc['p_after_safe']:.2f} "
                        f"after the same snippets made safe ({lc['n_segments']} held-out segments); if these are "
                        "equal, no feature can carry an unsafe context."]
            out += [""]

    figs = sorted((run / "figures").glob("*.png")) if (run / "figures").exists() else []
    figs = [f for f in figs if f.name != "concept_detectors.png"]  # shown with the detectors
    if figs:
        out += ["## Figures", ""]
        out += [f"![{f.stem}](figures/{f.name})" for f in figs]
        out += [""]
    if (run / "dashboard" / "index.html").exists():
        out += ["## Dashboard", "", "Every feature's contexts, density and logit effects: "
                "[dashboard/index.html](dashboard/index.html).", ""]

    out += ["## Configuration", "", "| field | value |", "|---|---|"]
    out += [f"| {k} | `{v}` |" for k, v in preset_fields(preset_of_run(run)).items()]
    out += ["", "## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
    out += [f"| {k} | {v.get('seconds', 0):.1f} |" for k, v in stages.items()]
    total = sum(v.get("seconds", 0) for v in stages.values())
    out += [f"| **total** | **{total:.1f}** |", ""]
    return "\n".join(out)


def _detector_section(m: dict, run: Path) -> list[str]:
    """Towards Monosemanticity's claim, measured: concepts with a detector feature vs a detector neuron."""
    d, concepts = m.get("detectors"), m.get("concepts", {})
    if not d or not concepts:
        return []
    mono = m["monosemanticity"]
    out = ["## Concept detectors: features against neurons", "",
           f"**{d['features']} of {d['of']} concepts have a detector feature; {d.get('neurons', '—')} of {d['of']} have a "
           f"detector neuron.** A unit detects a concept when at least {d['share_threshold']:.0%} of its activation mass "
           f"on held-out text falls on the concept (Towards Monosemanticity's Arabic feature: 81%) and it fires above "
           f"{d['fire_threshold']:.0%} of its maximum in at least {d['recall_threshold']:.0%} of the concept's held-out "
           f"segments. Mean top-concept share of alive units: features {mono['features']['mean_top_concept_share']:.2f}"
           + (f", neurons {mono['neurons']['mean_top_concept_share']:.2f}" if "neurons" in mono else "") + ". "
           "Each row shows the concept's detector in bold, or the closest unit when none passes.", ""]
    out += ["| concept | feature | share | segment recall | neuron | share | segment recall |",
            "|---|---|---|---|---|---|---|"]
    for name, c in concepts.items():
        cells = []
        for key, unit in [("detector", "feature"), ("neuron_detector", "neuron")]:
            e = c.get(key) or c.get(f"closest_{unit}")
            if not e:
                cells += ["—"] * 3
                continue
            u = e[unit]
            label = f"[{u}](dashboard/features/f{u}.html)" if unit == "feature" else str(u)
            cells += [f"**{label}**" if c.get(key) else f"none (closest: {label})",
                      f"{e['share']:.2f}", f"{e['segment_recall']:.2f}"]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out += [""]
    if (run / "figures" / "concept_detectors.png").exists():
        out += ["![concept_detectors](figures/concept_detectors.png)", ""]
    return out


def _markdown_to_html(md: str, run: Path) -> str:
    """A small Markdown subset (headings, tables, images, links, code, bold) to HTML, images inlined."""
    def inline(t: str) -> str:
        t = html.escape(t, quote=False)
        t = re.sub(r"`([^`]*)`", r"<code>\1</code>", t)
        t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
        return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', t)

    body, table = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            if not set("".join(cells)) <= set("-|"):
                table.append(cells)
            continue
        if table:
            head, *rows = table
            body.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows)
                        + "</table>")
            table = []
        img = re.match(r"!\[([^\]]*)\]\(([^)]+)\)", line)
        if img:
            data = base64.b64encode((run / img.group(2)).read_bytes()).decode("ascii")
            body.append(f'<p><img alt="{html.escape(img.group(1))}" src="data:image/png;base64,{data}"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}"
             "img{max-width:100%}code{background:#f3f3f3}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>sae report</title><style>{style}</style></head><body>{''.join(body)}</body></html>"


def write_report(run: str | Path) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` into the run directory."""
    run = Path(run)
    md = report_markdown(run)
    return atomic_write_text(run / "report.md", md), atomic_write_text(run / "report.html", _markdown_to_html(md, run))
