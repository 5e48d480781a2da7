"""The run-time estimate `reproduce` prints first (`sae.run.estimate`)."""

import pytest

from sae.run.estimate import CALIBRATION, estimate_seconds, matmul_gflops, stage_work
from sae.run.config import get_preset, with_overrides

STAGES = list(CALIBRATION["tiny"]["seconds"])


def test_each_calibration_run_gets_back_its_own_seconds_and_twice_as_fast_halves_them():
    """Both runs lie on each stage's line, the smoke run's fixed costs included (at its own rate)."""
    for name, c in CALIBRATION.items():
        assert estimate_seconds(get_preset(name), c["gflops"], STAGES) == pytest.approx(c["seconds"]), name
    tiny, rate = get_preset("tiny"), CALIBRATION["tiny"]["gflops"]
    half = estimate_seconds(tiny, 2 * rate, STAGES)
    assert half == pytest.approx({s: v / 2 for s, v in CALIBRATION["tiny"]["seconds"].items()})
    assert list(estimate_seconds(tiny, 10.0, ["lm", "report"])) == ["lm"], "stages without a cost model are left out"


def test_the_work_follows_the_sizes_that_cost_time():
    tiny = get_preset("tiny")
    longer = stage_work(with_overrides(tiny, ["train_lm.n_steps=4000", "train_sae.n_steps=1464"]))
    assert longer["lm"] == pytest.approx(2 * stage_work(tiny)["lm"])
    assert longer["sae"] == pytest.approx(2 * stage_work(tiny)["sae"])
    totals = {n: sum(estimate_seconds(get_preset(n), 50.0, STAGES).values()) for n in ("smoke", "tiny", "base")}
    assert totals["smoke"] < totals["tiny"] < totals["base"]


def test_the_probe_is_short_and_positive():
    assert matmul_gflops(seconds=0.05) > 0
