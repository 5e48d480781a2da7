"""The run's report: every number and figure of `runs/NAME/`, readable on its own.

`write_report(run)` writes `report.md` (figures linked) and `report.html` (the same, figures
inlined as base64 PNG, so the file can be mailed). This module is the layout only: the warnings
first, since every number below is read in their light; a summary of every analysis's headline
numbers beside the papers'; the language model; each analysis's own section (`sae.run.analyses`);
the figures; the configuration and wall time. On real text there are no concept labels, so the
analyses that need them have no section. Text from files is data, never markup (`sae.markdown`).
"""

from __future__ import annotations

from pathlib import Path

from sae.markdown import code, num, text
from sae.run import analyses
from sae.run._html import markdown_to_html
from sae.run.config import preset_fields
from sae.run.files import Run, read_run_json
from sae.utils import atomic_write_text

# The figures of `sae.run.pipeline.write_figures`, in reading order, each with its caption: what it
# shows and how to read it. A figure not listed here is shown last, captioned by its name.
CAPTIONS = {
    "steer_eval.png":
        "The steering benchmark's validation curves: for each concept, each method across its strengths, the share "
        "of the continuations' sentences on the concept against the clean model's CE of them; a good handle climbs "
        "high left of the dotted fluency bound, a broken model drifts right.",
    "concept_detectors.png":
        "Left: for each concept, the share of its activation mass that its detector (or closest) SAE feature "
        "(circle) and MLP neuron (square) put on that concept; a filled marker passes the detector test, and "
        "the dotted line is the share it needs. Right: the same share for every alive unit, on its top concept: "
        "the further right, the more monosemantic; features sit right of neurons.",
    "training_curves.png":
        "Training, step by step. The language model's cross-entropy (per batch, and on validation text) should "
        "fall and flatten; for the SAE, FVU (the share of the activations' variance it fails to reconstruct) and "
        "L0 (features active per token, log scale) should fall together, with dead features near zero; red "
        "dotted lines, if any, mark the steps where dead features were resampled.",
    "log_density.png":
        "How often each feature fires on held-out text, one count per feature, on a log scale. A healthy "
        "dictionary is one bump between the dotted lines: left of 'ultralow' a feature fires on fewer than 1 "
        "token in 100,000 (nearly dead), right of 'dense' on more than 1 in 10 (nearly always on).",
    "concept_auroc.png":
        "How well one unit alone picks out each concept's tokens (token-level AUROC: 1 is perfect, 0.5 is "
        "chance), for the best SAE feature, the best MLP neuron and a linear probe. A short feature bar beside a "
        "long probe bar means the SAE split the concept into narrower features (absorption), not that it lacks it.",
}

_TITLES = {"training_curves.png": "training curves", "log_density.png": "feature density",
           "concept_detectors.png": "concept detectors", "concept_auroc.png": "concept AUROC"}


class Page:
    """What a section may show of the run beside its numbers: links to dashboard pages, and figures."""

    def __init__(self, run: Path):
        self.run = run

    def feature(self, f) -> str:
        """A feature id, linked to its dashboard page when that page exists."""
        page = f"dashboard/features/f{int(f)}.html"
        return f"[{int(f)}]({page})" if (self.run / page).exists() else str(int(f))

    def figures(self) -> list[Path]:
        """The run's figures, in `CAPTIONS` order, then any other."""
        d = self.run / "figures"
        found = {f.name: f for f in d.glob("*.png")} if d.is_dir() else {}
        return [found[n] for n in CAPTIONS if n in found] + [found[n] for n in sorted(found) if n not in CAPTIONS]

    def figure(self, name: str) -> list[str]:
        """The figure `name` and its caption (an italic line: `markdown_to_html` makes it a <figcaption>), if the run has it."""
        if not (self.run / "figures" / name).exists():
            return []
        caption = CAPTIONS.get(name) or f"Figure {Path(name).stem}."
        return [f"![{text(Path(name).stem)}](figures/{name})", "", f"*{text(caption)}*", ""]


def report_markdown(run: str | Path) -> str:
    """The report as Markdown (figures as relative links)."""
    run = Path(run)
    cfg, stages = (read_run_json(run, n, missing={}) for n in ("config.json", "stages.json"))
    opened, page = Run(run), Page(run)
    results = [(a.module, r) for a in analyses.ANALYSES if (r := opened.results(a.stage).get(a.module.NAME))]
    out = [f"# Report: run {code(run.name)} (preset {code(cfg.get('name', '?'))}, seed {num(cfg.get('seed', '?'))})", ""]
    if cfg.get("name") == "smoke":
        out += ["**A plumbing test.** The smoke preset trains a toy-sized model for seconds to check that every stage "
                "runs; its numbers mean nothing. Run the default preset (`python -m sae reproduce`) for results.", ""]
    warnings = [w for s in stages.values() if isinstance(s, dict) for w in s.get("warnings", [])]
    warnings += [w for _, r in results for w in getattr(r, "warnings", [])]
    out += [line for w in warnings for line in (f"**Warning:** {text(w)}", "")]
    out += [_intro(cfg.get("corpus", "toy")), ""]
    if results:
        out += ["## Summary", "", "| result | this run | the papers |", "|---|---|---|"]
        out += [f"| {h.label} | {h.shown()} | {h.paper} |" for a, r in results for h in a.headline(r)]
        out += ["", *_links(page)]
    lm = stages.get("lm", {})
    if lm:
        out += ["## Language model", "", f"Validation loss {num(lm.get('val_loss'))} nats/token"
                + (f"; on-concept rate of sampled continuations {num(lm.get('on_concept_rate'), '.2f')} (prompted with "
                   "a held-out segment's first words)." if "on_concept_rate" in lm else "."), ""]
        if lm.get("val_loss_by_concept"):
            out += ["| concept | validation loss (nats/token) |", "|---|---|"]
            out += [f"| {text(k)} | {num(v)} |" for k, v in lm["val_loss_by_concept"].items()] + [""]
    for a, r in results:
        out += a.section(r, page)
    figs = [f for f in page.figures() if page.figure(f.name)[0] not in out]  # those no section showed
    if figs:
        out += ["## Figures", ""] + [line for f in figs for line in page.figure(f.name)]
    if (run / "dashboard" / "index.html").exists():
        out += ["## Dashboard", "", "Every feature's contexts, density and logit effects: "
                "[dashboard/index.html](dashboard/index.html).", ""]
    if (run / "config.json").exists():
        out += ["## Configuration", "", "| field | value |", "|---|---|"]
        out += [f"| {text(k)} | {code(v, cell=True)} |" for k, v in preset_fields(opened.preset).items()] + [""]
    out += ["## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
    out += [f"| {text(k)} | {v.get('seconds', 0):.1f} |" for k, v in stages.items()]
    total = sum(v.get("seconds", 0) for v in stages.values())
    return "\n".join(out + [f"| **total** | **{total:.1f}** |", ""])


def _intro(corpus: str) -> str:
    if corpus == "toy":
        return ("Dictionary learning on a one-layer toy transformer: Towards Monosemanticity's experiment and "
                "Scaling Monosemanticity's steering demonstrations, reproduced on a labelled toy world.")
    source = "the Python standard library's source" if corpus == "pystdlib" else f"the text of {code(corpus)}"
    return (f"Dictionary learning on a one-layer transformer trained on real text ({source}): Towards "
            "Monosemanticity's experiment. Real text has no concept labels, so this report has the "
            "reconstruction, sparsity and loss numbers and the feature dashboard, but no concept detectors, "
            "on-concept rate or steering demonstrations (those need the labelled toy world).")


def _links(page: Page) -> list[str]:
    links = []
    if (page.run / "dashboard" / "index.html").exists():
        links.append("browse every feature in the [dashboard](dashboard/index.html)")
    figs = page.figures()
    if figs:
        links.append("figures: " + ", ".join(f"[{_TITLES.get(f.name, text(f.stem))}](figures/{f.name})" for f in figs))
    return ["Next: " + "; ".join(links) + ".", ""] if links else []


def write_report(run: str | Path) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` into the run directory."""
    run = Path(run)
    md = report_markdown(run)
    return (atomic_write_text(run / "report.md", md),
            atomic_write_text(run / "report.html", markdown_to_html(md, f"sae report: {run.name}", run)))
