"""The seed study: the default reproduction for several seeds, and one table of its headline numbers.

A result is a property of the method only if it holds across seeds and machines: the same seed
trains a slightly different model on another CPU (float addition is not associative, math kernels
sum in an order that depends on the processor and its threads, and the differences grow during
training). So the headlines are reported over seeds 0-4, each a whole `reproduce` (text, tokenizer,
LM, SAE, evaluation, steering, circuits) with `seed=N` in `OUT/seedN/`, and nothing else changed.
An analysis a run skipped (`circuits=false`) has no columns, and its targets say so.

`seed_study` is resumable as `reproduce` is (finished stages are skipped), prints progress with
an ETA, and writes `OUT/seeds.json` (one row a seed, with the spread) and `OUT/seeds.md`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

from sae.run.pipeline import reproduce
from sae.run.config import Preset
from sae.run import analyses
from sae.run.files import Run, read_run_json
from sae.utils import atomic_write_json, atomic_write_text, format_duration

FORMATS = {"%": ".0%"}  # a headline's format in the table, where it differs


def seed_row(run: str | Path, seed: int) -> tuple[dict, list[tuple[str, str, str]]]:
    """One seed's headline numbers from its finished run directory: the LM's validation loss, then
    every analysis's headlines (`sae.run.analyses`), and the targets it met; and the table's
    columns, (key, heading, format) each."""
    opened = Run(run)
    row, columns = {"seed": seed}, [("seed", "seed", "d"), ("lm_val_loss", "LM val loss", ".3f")]
    row["lm_val_loss"] = read_run_json(run, "stages.json")["lm"]["val_loss"]
    met, row["skipped"] = [], []
    for a in analyses.ANALYSES:
        if a.stage in analyses.FILES and read_run_json(run, opened.file_of(a.stage), missing={}).get("skipped"):
            row["skipped"].append(a.module.NAME)  # e.g. circuits=false: no columns, and its targets say so
            continue
        if a.module.NAME not in opened.results(a.stage):
            raise ValueError(f"{run} has no {a.module.NAME!r} results ({opened.file_of(a.stage)}): finish the run "
                             f"with `python -m sae reproduce --out {run}` (its config's preset and seed)")
        heads = {h.key: h for h in a.module.headline(opened.result(a.module.NAME))}
        row.update({k: h.value for k, h in heads.items()})
        columns += [(k, h.label, FORMATS.get(h.fmt, h.fmt)) for k, h in heads.items()]
        met += [claim for claim, ok in getattr(a.module, "TARGETS", {}).items() if ok(row)]
    row["targets_met"] = met
    return row, columns


def targets() -> list[tuple[str, str]]:
    """Every analysis's targets, which each seed must meet: (analysis name, claim) each."""
    return [(a.module.NAME, claim) for a in analyses.ANALYSES for claim in getattr(a.module, "TARGETS", {})]


def spread(rows: list[dict], columns: list[tuple[str, str, str]]) -> dict:
    """{column: {mean, sd, min, max}} over the rows (the numeric columns but seed and ids, format "d")."""
    out = {}
    for key, _, fmt in columns:
        if key == "seed" or (fmt == "d" and key.endswith("feature")) or any(r[key] is None for r in rows):
            continue
        v = [float(r[key]) for r in rows]
        out[key] = {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
                    "min": min(v), "max": max(v)}
    return out


def table_markdown(rows: list[dict], stats: dict, columns: list[tuple[str, str, str]], machine: str = "") -> str:
    """The study as Markdown: a row a seed, then mean ± sd and min–max, then which targets each met."""
    def cell(v, fmt: str) -> str:
        return "—" if v is None else format(v, fmt) if fmt != "g" else f"{v:g}"

    out = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(r[k], f) for k, _, f in columns) + " |" for r in rows]
    if len(rows) > 1:
        for label, show in [("mean ± sd", lambda s, f: f"{cell(s['mean'], f)} ± {cell(s['sd'], f)}"),
                            ("min–max", lambda s, f: f"{cell(s['min'], f)}–{cell(s['max'], f)}")]:
            cells = [label] + [show(stats[k], {"d": ".1f", "g": ".2g"}.get(f, f)) if k in stats else ""
                               for k, _, f in columns[1:]]
            out.append("| " + " | ".join(cells) + " |")
    out += ["", "Targets (every seed must meet each):", ""]
    for analysis, name in targets():
        met = [r["seed"] for r in rows if name in r["targets_met"]]
        skipped = [r["seed"] for r in rows if analysis in r.get("skipped", [])]
        out.append(f"- {name}: seeds {', '.join(map(str, met)) or 'none'} of {', '.join(str(r['seed']) for r in rows)}"
                   + (f" (skipped on seeds {', '.join(map(str, skipped))})" if skipped else ""))
    if machine:
        out += ["", machine]
    return "\n".join(out) + "\n"


def seed_study(preset: Preset, out: str | Path, seeds: list[int], log=print, machine: str = "") -> dict:
    """`reproduce` the preset once per seed into `out/seedN/` (finished stages are skipped), then
    write `out/seeds.json` and `out/seeds.md`. Returns {"rows", "spread"}."""
    out = Path(out)
    rows, spent, fresh = [], 0.0, 0
    for i, seed in enumerate(seeds):
        run = out / f"seed{seed}"
        done = (run / "report.md").exists()
        eta = "" if not fresh else f", ETA {format_duration(spent / fresh * (len(seeds) - i))}"
        log(f"seed study: seed {seed} ({i + 1}/{len(seeds)}){' done already' if done else ''}{eta} -> {run}")
        t0 = time.time()
        reproduce(replace(preset, seed=seed), run, log=log)
        if not done:
            spent, fresh = spent + time.time() - t0, fresh + 1
        row, columns = seed_row(run, seed)
        rows.append(row)
    result = {"preset": preset.name, "seeds": seeds, "rows": rows, "spread": spread(rows, columns), "machine": machine}
    atomic_write_json(out / "seeds.json", result)
    atomic_write_text(out / "seeds.md", table_markdown(rows, result["spread"], columns, machine))
    log(f"seed study: wrote {out / 'seeds.md'} and {out / 'seeds.json'}")
    return result
