"""The run's report: every number and figure of `runs/NAME/`, readable on its own.

`write_report(run)` reads what the stages wrote (config.json, stages.json, metrics.json,
steering.json, figures/) and writes `report.md` (Markdown, figures linked relatively) and
`report.html` (the same content, figures inlined as base64 PNG, so the file can be mailed).
The paper's value stands beside ours wherever the papers report one: Towards Monosemanticity
run A/1 and Anthropic's April 2024 update (1L MLP, λ = 10).

The report reads top-down for a class: warnings of a degenerate SAE (metrics.json's
`warnings`) first, then a summary of the results beside the papers', then each analysis with its
figures (each with a caption saying how to read it), and the configuration and wall time last.
On real text (`--corpus pystdlib`, a file or a folder) there are no concept labels: the concept
sections, the on-concept rate and the steering demos are left out rather than shown empty.

Text that comes from files (run and preset names, concept names, warnings, sampled text) is
data, never markup: it is escaped for Markdown (`_md_text`, `_code`) and again for HTML, and
`sae._html.markdown_to_html` turns only relative paths and http(s) addresses into links or images.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sae._html import markdown_to_html
from sae.demos import UNSAFE_SENSITIVITY_MIN
from sae.metrics import DETECTOR_SHARE
from sae.run import preset_fields, preset_of_run
from sae.utils import atomic_write_text

PAPER = {
    "l0": "20.1 (April update, 1L MLP, λ=10)",
    "nmse": "0.131 (April update, λ=10)",
    "ce_recovered_zero": "0.79 (Towards Monosemanticity A/1); 0.914 (April update, λ=10)",
    "dead_fraction": "168 / 4,096 = 4.1% (A/1)",
}

# The figures of `sae.pipeline.write_figures`, in reading order, each with its caption: what it
# shows and how to read it. A figure not listed here is shown last, captioned by its name.
CAPTIONS = {
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


# ----------------------------------------------------------------------------- Markdown text


def _md_text(s) -> str:
    """Any text as literal Markdown: one line, Markdown's active characters backslash-escaped (so
    a run named `[x](javascript:...)` is text, not a link, in report.md as well as report.html)."""
    s = re.sub(r"[\r\n]+", " ↵ ", str(s))
    s = re.sub(r"([\\`*\[\]<>|&~!#])", r"\\\1", s)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", s)  # inside a word `_` is literal anyway


def _code(s, cell: bool = False) -> str:
    """Text as one Markdown code span, literal however many backticks it holds; in a table `cell`
    its `|` are escaped, as GitHub tables need."""
    s = re.sub(r"[\r\n]+", "↵", str(s))
    if cell:
        s = s.replace("|", "\\|")
    run = max((len(r) for r in re.findall(r"`+", s)), default=0)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{'`' * (run + 1)}{pad}{s}{pad}{'`' * (run + 1)}"


def _f(v, nd: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return "—" if v is None else _md_text(v)


def _x(m) -> str:
    """A clamp multiple: 0.5, 1, 10 (not 0.500)."""
    return f"{m:g}" if isinstance(m, (int, float)) else _f(m)


def _pct(v) -> str:
    return f"{v:.0%}" if isinstance(v, (int, float)) else "—"


def _clip(text: str, n: int = 110) -> str:
    """The first ~n characters of `text` on one line, cut at a word boundary with an ellipsis."""
    text = " ".join(str(text).replace("\n", " ↵ ").split())
    if len(text) <= n:
        return text
    cut = text[:n + 1].rsplit(" ", 1)[0]
    return (cut if len(cut) > n // 2 else text[:n]).rstrip(" .,;:") + "…"


def _load(run: Path, name: str) -> dict:
    p = run / name
    return json.loads(p.read_text()) if p.exists() else {}


def _feature_link(run: Path, f) -> str:
    """A feature id, linked to its dashboard page when that page exists."""
    f = int(f)
    page = f"dashboard/features/f{f}.html"
    return f"[{f}]({page})" if (run / page).exists() else str(f)


def _is_toy(cfg: dict) -> bool:
    return cfg.get("corpus", "toy") == "toy"


# ----------------------------------------------------------------------------- sections


def report_markdown(run: str | Path) -> str:
    """The report as Markdown (figures as relative links)."""
    run = Path(run)
    cfg, stages, m, steer = (_load(run, n) for n in ("config.json", "stages.json", "metrics.json", "steering.json"))
    out = [f"# Report: run {_code(run.name)} (preset {_code(cfg.get('name', '?'))}, seed {_f(cfg.get('seed', '?'))})", ""]
    out += _warnings(cfg, stages, m)
    out += [_intro(cfg), ""]
    out += _summary(run, m, steer, stages)
    out += _detector_section(m, run)
    out += _lm_section(stages, _is_toy(cfg))
    out += _sae_section(m)
    out += _absorption_section(m, run)
    out += _ground_truth_section(m, run)
    out += _steering_section(steer)
    out += _figures_section(run)
    if (run / "dashboard" / "index.html").exists():
        out += ["## Dashboard", "", "Every feature's contexts, density and logit effects: "
                "[dashboard/index.html](dashboard/index.html).", ""]
    out += _configuration_section(run, stages)
    return "\n".join(out)


def _warnings(cfg: dict, stages: dict, m: dict) -> list[str]:
    """First thing under the title, since every number below is to be read in their light: that a
    smoke run is a plumbing test, and every warning the run printed (metrics.json's degenerate-SAE
    `warnings`; the LM stage's: a model that does not track a file's security posture)."""
    out = []
    if cfg.get("name") == "smoke":
        out += ["**A plumbing test.** The smoke preset trains a toy-sized model for seconds to check that every "
                "stage runs; its numbers mean nothing. Run the default preset (`python -m sae reproduce`) for "
                "results.", ""]
    warnings = list(m.get("warnings", []))
    sens = stages.get("lm", {}).get("unsafe_context_sensitivity") or {}
    if sens.get("ratio") is not None and sens["ratio"] < UNSAFE_SENSITIVITY_MIN:
        warnings.append(f"the LM gives an insecure switch value probability {sens.get('p_after_unsafe', 0):.3f} in "
                        f"insecure files and {sens.get('p_after_safe', 0):.3f} in the same files made safe (ratio "
                        f"{sens['ratio']:.2f} < {UNSAFE_SENSITIVITY_MIN:g}): it does not track a file's security "
                        "posture, so the unsafe-code steering demo cannot work on this model")
    return out + [line for w in warnings for line in (f"**Warning:** {_md_text(w)}", "")]


def _intro(cfg: dict) -> str:
    corpus = cfg.get("corpus", "toy")
    if corpus == "toy":
        return ("Dictionary learning on a one-layer toy transformer: Towards Monosemanticity's experiment and "
                "Scaling Monosemanticity's steering demonstrations, reproduced on a labelled toy world.")
    text = ("the Python standard library's source" if corpus == "pystdlib"
            else f"the text of {_code(corpus)}")
    return (f"Dictionary learning on a one-layer transformer trained on real text ({text}): Towards "
            "Monosemanticity's experiment. Real text has no concept labels, so this report has the "
            "reconstruction, sparsity and loss numbers and the feature dashboard, but no concept detectors, "
            "on-concept rate or steering demonstrations (those need the labelled toy world).")


def _summary(run: Path, m: dict, steer: dict, stages: dict) -> list[str]:
    """The headline results beside the papers', the steering example, and where to look next."""
    s = m.get("sae", {})
    if not s:
        return []
    out = ["## Summary", "", "| result | this run | the papers |", "|---|---|---|",
           f"| L0 (features active per token; lower is sparser) | {_f(s.get('l0'), 1)} | {PAPER['l0']} |",
           f"| NMSE (FVU) of the reconstruction | {_f(s.get('nmse'))} ({_f(s.get('fvu'))}) | {PAPER['nmse']} |",
           f"| CE loss recovered (zero-ablation; 1 is perfect) | {_f(s.get('ce_recovered_zero'))} | "
           f"{PAPER['ce_recovered_zero']} |"]
    if isinstance(s.get("dead_fraction"), (int, float)) and isinstance(s.get("d_sae"), int):
        dead = round(s["dead_fraction"] * s["d_sae"])
        out.append(f"| dead features (never fire on held-out text) | {dead:,} / {s['d_sae']:,} = "
                   f"{s['dead_fraction']:.1%} | {PAPER['dead_fraction']} |")
    d = m.get("detectors")
    if d:
        out.append(f"| concepts with a detector (Towards Monosemanticity's claim: features, not neurons) | "
                   f"features {_f(d.get('features'))} of {_f(d.get('of'))}, neurons {_f(d.get('neurons'))} of "
                   f"{_f(d.get('of'))} | A/1's Arabic, DNA and base64 features; its neurons polysemantic |")
    out += [""] + _steering_summary(steer) + _links(run)
    return out


def _steering_example(r: dict) -> str:
    """A sweep row's example continuation, its prompt in bold when the row has one. The example is
    the row's first *steered* sample (on target and fluent); a row without one shows its first
    sample marked as broken, with its CE, never as a success."""
    text = str(r.get("example", ""))
    if r.get("prompt"):
        space = " " if text[:1].isspace() else ""  # the continuation may go on mid-word ("soup" + "ail ...")
        shown = f"**{_md_text(r['prompt'])}**{space}{_md_text(_clip(text))}"
    else:
        shown = _code(_clip(text, 60), cell=True)
    if r.get("example_steered", True):
        return shown
    ce = f", CE {r['example_ce']:.1f}" if isinstance(r.get("example_ce"), (int, float)) else ""
    return f"*not steered{ce}:* {shown}"


def _steering_summary(steer: dict) -> list[str]:
    """One paragraph a demo, from its `summary` (sae.demos)."""
    out = []
    gg = (steer.get("golden_gate") or {}).get("summary")
    if gg:
        out += [f"**Steering.** Clamping the Golden Gate feature ({_f(gg['feature'])}) at {_x(gg['multiple'])}× its "
                f"maximum activation makes continuations of neutral prompts fluent and on topic: "
                f"{_pct(gg['fluent_baseline'])} unsteered, **{_pct(gg['fluent_rate'])}** clamped (on topic "
                f"{_pct(gg['rate'])}, CE {_f(gg['ce'], 2)} nats/token against {_f(gg['ce_baseline'], 2)} unsteered; "
                f"fluent means the clean model's CE of the text is at most {_f(gg['fluent_ce'], 1)} nats/token). "
                f"Chosen on held-out evidence: {_md_text(gg['rule'])}. Scaling Monosemanticity clamped theirs at 10×."]
        row = next((r for r in steer["golden_gate"].get("sweep", []) if r.get("multiple") == gg["multiple"]), None)
        if row and row.get("example_steered"):
            out += ["", f"A steered continuation at {_x(gg['multiple'])}×: {_steering_example(row)}"]
        else:
            out += ["", f"No continuation at {_x(gg['multiple'])}× was both on topic and fluent, so none is shown."]
    us = (steer.get("unsafe_code") or {}).get("summary")
    if us:
        out += ["", f"Clamping the unsafe-code feature ({_f(us['feature'])}) at {_x(us['multiple'])}× over the prompt "
                f"makes the model turn a security check off in safe files, well-formed and fluent: "
                f"{_pct(us['rate_baseline'])} unsafe unsteered, **{_pct(us['fluent_clamped_prompt'])}** clamped "
                f"({_pct(us['rate_clamped_prompt'])} unsafe); clamped at every position {_pct(us['rate_clamped'])} "
                f"unsafe, {_pct(us['wellformed_clamped'])} well-formed. Clamped to 0 in insecure files: "
                f"{_pct(us['rate_unsafe_start'])} → {_pct(us['rate_suppressed'])} unsafe (keeping the check on: "
                f"{_pct(us['kept_unsafe_start'])} → {_pct(us['kept_suppressed'])}); detector AUROC "
                f"{_f(us['detector_auroc'], 2)}; the LM's posture ratio {_f(us['context_sensitivity'], 1)}."]
    return out + [""] if out else []


def _links(run: Path) -> list[str]:
    links = []
    if (run / "dashboard" / "index.html").exists():
        links.append("browse every feature in the [dashboard](dashboard/index.html)")
    figs = [f for f in _figures(run)]
    if figs:
        links.append("figures: " + ", ".join(f"[{_TITLES.get(f.name, _md_text(f.stem))}](figures/{f.name})"
                                            for f in figs))
    return ["Next: " + "; ".join(links) + ".", ""] if links else []


def _lm_section(stages: dict, toy: bool) -> list[str]:
    lm = stages.get("lm", {})
    if not lm:
        return []
    line = f"Validation loss {_f(lm.get('val_loss'))} nats/token"
    if toy:
        line += (f"; on-concept rate of sampled continuations {_f(lm.get('on_concept_rate'), 2)} (prompted with a "
                 "held-out segment's first words)")
    out = ["## Language model", "", line + ".", ""]
    if toy and lm.get("val_loss_by_concept"):
        out += ["| concept | validation loss (nats/token) |", "|---|---|"]
        out += [f"| {_md_text(k)} | {_f(v)} |" for k, v in lm["val_loss_by_concept"].items()]
        out += [""]
    return out


def _sae_section(m: dict) -> list[str]:
    s = m.get("sae", {})
    if not s:
        return []
    out = ["## Sparse autoencoder", "",
           f"{_md_text(s.get('arch'))} SAE with {_f(s.get('d_sae'))} features on {_code(s.get('site'))}, evaluated on "
           f"{s.get('n_tokens', 0):,} held-out tokens.", "",
           "| metric | ours | paper |", "|---|---|---|"]
    rows = [("L0 (active features / token)", "l0"), ("FVU", "fvu"), ("NMSE", "nmse"),
            ("CE loss recovered (zero-ablation)", "ce_recovered_zero"),
            ("CE loss recovered (mean-ablation)", "ce_recovered_mean"),
            ("CE added by the splice (nats/token)", "ce_added_nats"), ("KL (nats/token)", "kl"),
            ("dead fraction", "dead_fraction"), ("ultralow fraction (< 1e-5)", "ultralow_fraction"),
            ("dense fraction (> 10%)", "dense_fraction")]
    out += [f"| {label} | {_f(s.get(k))} | {PAPER.get(k, '')} |" for label, k in rows]
    return out + [""]


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
            label = _feature_link(run, e[unit]) if unit == "feature" else str(int(e[unit]))
            cells += [f"**{label}**" if c.get(key) else f"none (closest: {label})",
                      f"{e['share']:.2f}", f"{e['segment_recall']:.2f}"]
        out.append(f"| {_md_text(name)} | " + " | ".join(cells) + " |")
    out += [""]
    if (run / "figures" / "concept_detectors.png").exists():
        out += _figure("concept_detectors.png")
    return out


def _absorption_section(m: dict, run: Path) -> list[str]:
    if not m.get("concepts"):
        return []
    out = ["## Absorption diagnostic: token AUROC of the best single unit", "",
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
        out.append(f"| {_md_text(name)} | {_feature_link(run, c['feature'])} | {c['auroc']:.3f} | "
                   f"{c['precision']:.2f} | {c['recall']:.2f} | {c['mass_share']:.2f} | {_f(c.get('neuron', ''))} | "
                   f"{_f(c.get('neuron_auroc'))} | {_f(c.get('probe_auroc'))} |")
    return out + [""]


def _ground_truth_section(m: dict, run: Path) -> list[str]:
    """Absorption and k-sparse probing per concept (`sae.ground_truth`), with the means over concepts."""
    g = m.get("ground_truth")
    if not g:
        return []
    probing = g["sparse_probing"]
    ks = list(probing["features"])
    kinds = [k for k in ("features", "neurons") if k in probing]
    out = ["## Ground truth: absorption and k-sparse probing", "",
           f"Every token's concept is known, so both are exact counts on the held-out text. **Absorption:** on "
           f"{_pct(g['silent'])} of a concept's tokens (mean over concepts) its detector feature is silent, and on "
           f"{_pct(g['absorbed'])} it is silent while another feature specific to the concept (share >= "
           f"{DETECTOR_SHARE:.0%}) fires instead: the concept is there, absorbed by a narrower feature (Chanin et al. "
           "2024, with labels in place of probes). **k-sparse probing:** the k units with the largest class-mean "
           "difference on the first half of the held-out windows, combined by Fisher's discriminant fitted there, "
           "scored as AUROC on the second half (SAEBench's sparse probing). Mean AUROC: "
           + "; ".join(f"{kind} " + ", ".join(f"k={k} {probing[kind][k]:.3f}" for k in ks) for kind in kinds) + ". "
           "A sparse feature fires on a part of its concept's tokens and ranks the rest with every other token, so "
           "few features can rank a concept worse than few dense neurons: absorption again, seen from the probe's side.",
           "",
           "| concept | detector feature | silent | absorbed | specific features | "
           + " | ".join(f"{kind[:-1]}s k={k}" for kind in kinds for k in ks) + " |",
           "|---|---|---:|---:|---:|" + "---:|" * (len(kinds) * len(ks))]
    for name, c in m["concepts"].items():
        a, sp = c.get("absorption"), c.get("sparse_probing", {})
        if not a:
            continue
        cells = [_f(sp.get(kind, {}).get(k)) for kind in kinds for k in ks]
        out.append(f"| {_md_text(name)} | {_feature_link(run, a['feature'])} | {_pct(a['silent'])} | "
                   f"{_pct(a['absorbed'])} | {a['n_specific']} | " + " | ".join(cells) + " |")
    return out + [""]


def _steering_section(steer: dict) -> list[str]:
    gg, us = steer.get("golden_gate") or {}, steer.get("unsafe_code") or {}
    out = ["## Steering", ""] if gg.get("summary") or us.get("summary") else []
    if gg.get("summary"):
        s, choice = gg["summary"], gg["choice"]
        out += [f"**Golden Gate.** A continuation is *steered* when the judge finds it on topic and it is fluent (the "
                f"clean model's CE of it at most {_f(s['fluent_ce'], 1)} nats/token). The feature and the multiple are "
                f"chosen on validation prompts ({_md_text(', '.join(choice['validation_prompts']))}): "
                f"{_md_text(s['rule'])}. Each detector feature, at its best multiple there:", "",
                "| feature | best multiple | steered (validation) | on topic | CE | promotes |", "|---|---|---|---|---|---|"]
        for c in choice["candidates"]:
            name = f"**{_f(c['feature'])}** (chosen)" if c["feature"] == s["feature"] else _f(c["feature"])
            out.append(f"| {name} | {_x(c['multiple'])} | {_pct(c['fluent_rate'])} | {_pct(c['rate'])} | "
                       f"{_f(c['ce'], 2)} | {_code(' '.join(repr(t) for t in c['promotes']), cell=True)} |")
        out += ["", f"Feature {_f(s['feature'])} (max activation {gg['max_act']:.2f}) on the test prompts, unsteered and "
                "clamped at every position (Scaling Monosemanticity clamped theirs at 10×). The example is the first "
                "steered continuation (after the prompt in bold), or the first one marked *not steered*.", "",
                "| clamp (× max) | steered (on topic, fluent) | on topic | CE (nats/token) | example |",
                "|---|---|---|---|---|"]
        for r in [{**gg["baseline"], "multiple": "none"}] + gg["sweep"]:
            out.append(f"| {_x(r['multiple'])} | {_pct(r['fluent_rate'])} | {_pct(r['rate'])} | {_f(r['ce'], 2)} | "
                       f"{_steering_example(r)} |")
        out += [""]
    if us.get("summary"):
        s, cs = us["summary"], us["context_sensitivity"]
        out += [f"**Unsafe code** (feature {_f(s['feature'])}, max activation {us['max_act']:.2f}, chosen by its AUROC "
                f"at the decision on validation files: {_f(s['decision_auroc'], 3)}). Prompts are held-out *safe* "
                "files cut right before the value of a security switch (`verify=`); a continuation is unsafe when it "
                "turns a switch off, well-formed when the `False` is followed by what code would write next (`)`, "
                "`,`, a new line), and steered when it is well-formed and fluent. Clamped everywhere, the feature also "
                "edits every token the model writes; clamped over the prompt only, it edits the decision and the "
                f"model writes the rest unedited. The multiple ({_x(s['multiple'])}×) has the highest steered rate over "
                "the prompt on validation files (" + ", ".join(f"{_x(v['multiple'])}×: {_pct(v['fluent_rate'])}"
                                                            for v in us.get("validation", [])) + ").", "",
                "| clamp (× max) | unsafe | well-formed | CE | over the prompt only: unsafe | well-formed | steered | "
                "CE | example (over the prompt) |", "|---|---|---|---|---|---|---|---|---|"]
        base = us["baseline"]
        out.append(f"| none | {_pct(base['rate'])} | {_pct(base['wellformed_rate'])} | {_f(base['ce'], 2)} | | | | | "
                   f"{_steering_example(base)} |")
        for r in us["sweep"]:
            po = r["prompt_only"]
            out.append(f"| {_x(r['multiple'])} | {_pct(r['rate'])} | {_pct(r['wellformed_rate'])} | {_f(r['ce'], 2)} | "
                       f"{_pct(po['rate'])} | {_pct(po['wellformed_rate'])} | {_pct(po['fluent_rate'])} | "
                       f"{_f(po['ce'], 2)} | {_steering_example(po)} |")
        out += ["", f"On held-out *insecure* files cut the same way: {_pct(s['rate_unsafe_start'])} unsafe unsteered, "
                f"{_pct(s['rate_suppressed'])} with the feature clamped to 0; writing the safe value at the cut: "
                f"{_pct(s['kept_unsafe_start'])} → {_pct(s['kept_suppressed'])} (the rest writes neither). As a "
                f"detector of insecure files (its max activation over a file), AUROC {s['detector_auroc']:.3f}.", "",
                f"The LM itself tracks a file's posture: it gives the insecure value probability "
                f"{cs['p_after_unsafe']:.3f} in insecure files and {cs['p_after_safe']:.3f} in the same files made "
                f"safe (ratio {cs['ratio']:.1f}, {_f(cs['n_cuts'])} held-out cuts; below "
                f"{UNSAFE_SENSITIVITY_MIN:.0f} no feature can carry the posture).", ""]
    return out


def _figures(run: Path) -> list[Path]:
    """The run's figures, in `CAPTIONS` order, then any other."""
    d = run / "figures"
    found = {f.name: f for f in d.glob("*.png")} if d.is_dir() else {}
    return [found[n] for n in CAPTIONS if n in found] + [found[n] for n in sorted(found) if n not in CAPTIONS]


def _figure(name: str) -> list[str]:
    """An image and its caption (an italic line: `markdown_to_html` makes it a <figcaption>)."""
    caption = CAPTIONS.get(name) or f"Figure {Path(name).stem}."
    return [f"![{_md_text(Path(name).stem)}](figures/{name})", "", f"*{_md_text(caption)}*", ""]


def _figures_section(run: Path) -> list[str]:
    figs = [f for f in _figures(run) if f.name != "concept_detectors.png"]  # shown with the detectors
    if not figs:
        return []
    return ["## Figures", ""] + [line for f in figs for line in _figure(f.name)]


def _configuration_section(run: Path, stages: dict) -> list[str]:
    out = []
    if (run / "config.json").exists():
        out += ["## Configuration", "", "| field | value |", "|---|---|"]
        out += [f"| {_md_text(k)} | {_code(v, cell=True)} |" for k, v in preset_fields(preset_of_run(run)).items()]
        out += [""]
    out += ["## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
    out += [f"| {_md_text(k)} | {v.get('seconds', 0):.1f} |" for k, v in stages.items()]
    total = sum(v.get("seconds", 0) for v in stages.values())
    return out + [f"| **total** | **{total:.1f}** |", ""]


def write_report(run: str | Path) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` into the run directory."""
    run = Path(run)
    md = report_markdown(run)
    return (atomic_write_text(run / "report.md", md),
            atomic_write_text(run / "report.html", markdown_to_html(md, f"sae report: {run.name}", run)))
