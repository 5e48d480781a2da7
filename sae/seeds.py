"""The seed study: the default reproduction for several seeds, and one table of its headline numbers.

A result is a property of the method only if it holds across seeds, and across machines: the
same seed trains a slightly different model on another CPU, because float addition is not
associative and math kernels sum in an order that depends on the processor (and on the number
of threads), and the small differences grow during training. So the headlines are reported over
seeds 0-4, each a whole `reproduce` (text, tokenizer, LM, SAE, evaluation, steering) with
`seed=N` in `OUT/seedN/`, and nothing else changed.

`seed_study` is resumable as `reproduce` is (finished stages are skipped), prints progress with
an ETA, and writes `OUT/seeds.json` (one row a seed, with the spread) and `OUT/seeds.md`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

from sae.pipeline import reproduce
from sae.run import Preset, read_run_json, run_steering
from sae.utils import atomic_write_json, atomic_write_text, format_duration

# (column, heading, format) of the table, in order; the row's values come from `seed_row`.
COLUMNS = [
    ("seed", "seed", "d"),
    ("lm_val_loss", "LM val loss", ".3f"),
    ("l0", "L0", ".1f"),
    ("fvu", "FVU", ".3f"),
    ("ce_recovered", "CE recovered", ".3f"),
    ("detector_features", "concepts with a detector feature", "d"),
    ("detector_neurons", "with a detector neuron", "d"),
    ("gg_feature", "Golden Gate feature", "d"),
    ("gg_multiple", "multiple", "g"),
    ("gg_rate", "on topic", ".0%"),
    ("gg_fluent", "steered (on topic, fluent)", ".0%"),
    ("gg_baseline", "steered unsteered", ".0%"),
    ("unsafe_baseline", "unsafe unsteered", ".0%"),
    ("unsafe_prompt", "unsafe, clamped over the prompt", ".0%"),
    ("unsafe_fluent", "of which well-formed and fluent", ".0%"),
    ("unsafe_start", "unsafe in insecure files", ".0%"),
    ("unsafe_suppressed", "clamped to 0", ".0%"),
    ("context_sensitivity", "posture ratio", ".1f"),
]

# The targets each seed must meet (the README states them), as {name: test on a row}.
TARGETS = {
    "Golden Gate steered >= 60%, unsteered <= 5%": lambda r: r["gg_fluent"] >= 0.6 and r["gg_baseline"] <= 0.05,
    "unsafe steered over the prompt >= 50% and >= 5x unsteered <= 10%":
        lambda r: r["unsafe_fluent"] >= 0.5 and r["unsafe_baseline"] <= 0.1
        and r["unsafe_fluent"] >= 5 * r["unsafe_baseline"],
    ">= 12 of 14 concepts with a detector feature, >= 8 more than neurons":
        lambda r: r["detector_features"] >= 12 and r["detector_features"] - r["detector_neurons"] >= 8,
}


def seed_row(run: str | Path, seed: int) -> dict:
    """One seed's headline numbers from its finished run directory (stages.json, metrics.json,
    steering.json)."""
    run = Path(run)
    m, lm = read_run_json(run, "metrics.json"), read_run_json(run, "stages.json")["lm"]
    steering = run_steering(run)
    if not {"golden_gate", "unsafe_code"} <= set(steering):
        raise ValueError(f"{run} has no steering results (steering.json): finish the run with "
                         f"`python -m sae reproduce --out {run}` (its config's preset and seed)")
    gg, us = steering["golden_gate"]["summary"], steering["unsafe_code"]["summary"]
    row = {"seed": seed, "lm_val_loss": lm["val_loss"], "l0": m["sae"]["l0"], "fvu": m["sae"]["fvu"],
           "ce_recovered": m["sae"]["ce_recovered_zero"], "detector_features": m["detectors"]["features"],
           "detector_neurons": m["detectors"]["neurons"], "gg_feature": gg["feature"], "gg_multiple": gg["multiple"],
           "gg_rate": gg["rate"], "gg_fluent": gg["fluent_rate"], "gg_baseline": gg["fluent_baseline"],
           "unsafe_baseline": us["rate_baseline"], "unsafe_prompt": us["rate_clamped_prompt"],
           "unsafe_fluent": us["fluent_clamped_prompt"], "unsafe_start": us["rate_unsafe_start"],
           "unsafe_suppressed": us["rate_suppressed"], "context_sensitivity": us["context_sensitivity"]}
    row["targets_met"] = [name for name, ok in TARGETS.items() if ok(row)]
    return row


def spread(rows: list[dict]) -> dict:
    """{column: {mean, sd, min, max}} over the rows (the numeric columns but seed and feature ids)."""
    out = {}
    for key, _, _ in COLUMNS:
        if key in ("seed", "gg_feature"):
            continue
        v = [float(r[key]) for r in rows]
        out[key] = {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
                    "min": min(v), "max": max(v)}
    return out


def table_markdown(rows: list[dict], stats: dict, machine: str = "") -> str:
    """The study as Markdown: a row a seed, then mean ± sd and min–max, then which targets each met."""
    def cell(v, fmt: str) -> str:
        return format(v, fmt) if fmt != "g" else f"{v:g}"

    out = ["| " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(cell(r[k], f) for k, _, f in COLUMNS) + " |" for r in rows]
    if len(rows) > 1:
        for label, show in [("mean ± sd", lambda s, f: f"{cell(s['mean'], f)} ± {cell(s['sd'], f)}"),
                            ("min–max", lambda s, f: f"{cell(s['min'], f)}–{cell(s['max'], f)}")]:
            cells = [label] + [show(stats[k], {"d": ".1f", "g": ".2g"}.get(f, f)) if k in stats else ""
                               for k, _, f in COLUMNS[1:]]
            out.append("| " + " | ".join(cells) + " |")
    out += ["", "Targets (every seed must meet each):", ""]
    for name in TARGETS:
        met = [r["seed"] for r in rows if name in r["targets_met"]]
        out.append(f"- {name}: seeds {', '.join(map(str, met)) or 'none'} of {', '.join(str(r['seed']) for r in rows)}")
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
        rows.append(seed_row(run, seed))
    result = {"preset": preset.name, "seeds": seeds, "rows": rows, "spread": spread(rows), "machine": machine}
    atomic_write_json(out / "seeds.json", result)
    atomic_write_text(out / "seeds.md", table_markdown(rows, result["spread"], machine))
    log(f"seed study: wrote {out / 'seeds.md'} and {out / 'seeds.json'}")
    return result
