"""The README's and the docs' numbers come from the runs, not from memory: docs/results.md's
seed table is the one `python -m sae seeds` wrote (benchmarks/seeds.md), and the seed-0 column
of the results tables (the README's headline rows, and docs/results.md's full table) is seed 0's
row of benchmarks/seeds.json. Rerun the seed study and these tests say which numbers to update.
The README stays a front door: at most 12,000 characters, no issue numbers in it or the docs."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
RESULTS = (ROOT / "docs" / "results.md").read_text()


def test_the_readme_seed_table_is_the_one_the_seed_study_wrote():
    study = (ROOT / "benchmarks" / "seeds.md").read_text()
    table = [line for line in study.splitlines() if line.startswith("|")]
    assert table and "\n".join(table) in RESULTS, "copy benchmarks/seeds.md's table into docs/results.md's seed section"
    machine = next(line for line in study.splitlines() if line.startswith("Machine:"))
    assert machine in RESULTS, f"docs/results.md's seed section lacks the study's machine line: {machine}"


def _row(metric: str, text: str = README) -> str:
    """The seed-0 cell of the results table's row that starts with `metric`, in `text`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith(metric):
            return cells[1]
    raise AssertionError(f"no row {metric!r} in the results table")


@pytest.mark.parametrize("where", ["README.md", "docs/results.md"])
def test_the_results_are_seed_0_of_the_seed_study(where):
    text = (ROOT / where).read_text()
    r = json.loads((ROOT / "benchmarks" / "seeds.json").read_text())["rows"][0]
    assert r["seed"] == 0
    pct = lambda x: f"{round(100 * x)}%"  # noqa: E731
    expect = {
        "LM validation loss": f"{r['lm_val_loss']:.3f}",
        "L0 (active features per token)": f"{r['l0']:.1f}",
        "FVU / NMSE": f"{r['fvu']:.3f} /",
        "CE loss recovered, zero-ablation": f"{r['ce_recovered']:.3f}",
        "**concepts with a detector feature**": f"**{r['detector_features']} of 14** (detector neuron: "
                                                 f"{r['detector_neurons']} of 14)",
        "**Golden Gate clamp**": f"**{pct(r['gg_baseline'])} → {pct(r['gg_fluent'])}** (on topic {pct(r['gg_rate'])}",
        "**unsafe-code clamp**": f"**{pct(r['unsafe_baseline'])} → {pct(r['unsafe_prompt'])}** ({pct(r['unsafe_fluent'])};",
        "unsafe-code feature at 0 in insecure files": f"{pct(r['unsafe_start'])} → {pct(r['unsafe_suppressed'])}",
        "the LM knows an insecure file": f"= {round(r['context_sensitivity'])}",
    }
    for metric, want in expect.items():
        assert want in _row(metric, text), f"{where}, {metric!r}: {_row(metric, text)!r} should say {want!r} (seeds.json)"
    gg = next(line for line in text.splitlines() if line.startswith("| **Golden Gate clamp**"))
    assert re.search(rf"feature {r['gg_feature']} at {r['gg_multiple']:.1f}×", gg), \
        f"the Golden Gate row should name feature {r['gg_feature']} at {r['gg_multiple']:.1f}× (seeds.json)"


def test_the_readme_is_a_front_door_and_neither_it_nor_the_docs_tell_the_projects_history():
    assert len(README) <= 12_000, f"README.md has {len(README):,} characters: move the depth to docs/"
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        found = re.findall(r"issue #?\d+|#\d\d\b", path.read_text(), re.I)
        assert not found, f"{path.name} cites {found}: the CHANGELOG keeps the history"
    for link in re.findall(r"\]\(([^)#]+)\)", README):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), f"README.md links to {link}, which does not exist"
    assert (ROOT / "LICENSE").is_file()
