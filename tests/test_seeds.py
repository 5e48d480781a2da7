"""The seed study's table (`sae.run.seeds`): one row a seed from a run's files, the spread, the targets."""

import json
import shutil

import pytest

from sae import circuit_checks
from sae.run.cli import main
from sae.run.seeds import seed_row, spread, table_markdown, targets


def make_seed_run(smoke, path, fluent: float, detectors: int = 12):
    """A copy of the smoke run whose files say what the test needs (the layout the stages write)."""
    shutil.copytree(smoke, path, ignore=shutil.ignore_patterns("dashboard", "*.pt", "figures"))
    (path / "stages.json").write_text(json.dumps({"lm": {"val_loss": 0.98}}))
    m = json.loads((path / "metrics.json").read_text())
    m["sae"].update(l0=17.0, fvu=0.22, ce_recovered_zero=0.966)
    m["concepts"]["detectors"].update(features=detectors, neurons=2)
    st = json.loads((path / "steering.json").read_text())
    st["golden_gate"]["summary"].update(feature=848, multiple=3, rate=0.7, fluent_rate=fluent, fluent_baseline=0.0)
    st["unsafe_code"]["summary"].update(rate_baseline=0.01, rate_clamped_prompt=0.83, fluent_clamped_prompt=0.8,
                                        rate_unsafe_start=0.84, rate_suppressed=0.46, context_sensitivity=33.3)
    se = json.loads((path / "steer_eval.json").read_text())
    for c, row in se["steer_eval"]["concepts"].items():
        row["methods"]["random"]["on_target"] = 0.0
        if c == "golden_gate":
            row["methods"][row["sae_best"]]["steered"] = fluent
    ci = json.loads((path / "circuits.json").read_text())
    ci["circuits"]["transcoders"][0].update(fvu=0.05, ce_added=0.03)
    ci["circuits"]["sae"].update(ce_added=0.11)
    ci["circuits"]["golden_gate"].update(golden_gate_share=0.8, ablation_correlation=0.95)
    ci["circuits"]["unsafe"].update(comment_in_top3=0.9, ablation_correlation=0.93)
    (path / "circuits.json").write_text(json.dumps(ci))
    (path / "metrics.json").write_text(json.dumps(m))
    (path / "steering.json").write_text(json.dumps(st))
    (path / "steer_eval.json").write_text(json.dumps(se))
    return path


def test_a_row_a_seed_with_its_targets_and_the_spread(smoke_run, tmp_path):
    made = [seed_row(make_seed_run(smoke_run[0], tmp_path / "seed0", 0.6), 0),
            seed_row(make_seed_run(smoke_run[0], tmp_path / "seed1", 0.5, detectors=9), 1)]
    rows, columns = [r for r, _ in made], made[0][1]
    assert rows[0]["gg_fluent"] == 0.6 and rows[0]["unsafe_fluent"] == 0.8 and rows[0]["lm_val_loss"] == 0.98
    assert rows[0]["targets_met"] == [claim for _, claim in targets()], "seed 0 meets every target"
    assert rows[0]["circuit_gg_share"] == 0.8 and rows[0]["tc_ce_added"] == 0.03
    assert len(rows[1]["targets_met"]) == 2 + len(circuit_checks.TARGETS), ("seed 1 misses Golden Gate, clamped and in the benchmark (50% < 60%), "
                                              "and the detectors (9 < 12)")
    s = spread(rows, columns)
    assert s["gg_fluent"]["mean"] == pytest.approx(0.55) and s["gg_fluent"]["min"] == 0.5
    assert s["gg_fluent"]["sd"] == pytest.approx(0.0707, abs=1e-4)
    md = table_markdown(rows, s, columns, machine="Machine: test")
    assert md.splitlines()[2].startswith("| 0 | 0.980 | 17.0 | ") and "| 848 | 3 | 70% | 60% | 0% |" in md
    assert "| mean ± sd |" in md and "| min–max |" in md and "50%–60%" in md
    assert "Golden Gate steered >= 60%, unsteered <= 5%: seeds 0 of 0, 1" in md
    assert md.rstrip().endswith("Machine: test")


def test_a_run_without_circuits_has_no_circuit_columns_and_says_so(smoke_run, tmp_path):
    run = make_seed_run(smoke_run[0], tmp_path / "seed0", 0.6)
    (run / "circuits.json").write_text(json.dumps({"version": 2, "skipped": "circuits=false"}))
    row, columns = seed_row(run, 0)
    assert row["skipped"] == ["circuits"] and not any(k.startswith(("tc_", "circuit_")) for k, _, _ in columns)
    md = table_markdown([row], spread([row], columns), columns)
    assert f"{next(iter(circuit_checks.TARGETS))}: seeds none of 0 (skipped on seeds 0)" in md


@pytest.mark.parametrize("bad", ["4-1", "a", "0,0", "-1"])
def test_the_seed_list_is_checked_before_any_work(bad, capsys):
    with pytest.raises(SystemExit) as e:
        main(["seeds", f"--seeds={bad}"])
    assert e.value.code == 2 and "--seeds" in capsys.readouterr().err
