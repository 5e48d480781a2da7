"""Every benchmark script runs and prints its table (the figures themselves are not asserted:
speed is measured by the benchmarks, never by tests)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script, expect", [("bench_sae.py", "sparse / dense TopK"), ("bench_ddp.py", "processes"),
                                            ("bench_recovery.py", "| topk |"), ("bench_evaluate.py", "tok/s"),
                                            ("bench_lm.py", "train tok/s")])
def test_benchmark_runs_in_quick_mode(script, expect, tmp_path):
    module = "benchmarks." + script.removesuffix(".py")  # run as the docstrings say: python -m benchmarks.NAME
    args = [sys.executable, "-m", module, "--quick"]
    if script in ("bench_sae.py", "bench_recovery.py", "bench_evaluate.py"):
        args += ["--out", str(tmp_path / "bench.json")]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert expect in r.stdout


def test_gpu_check_runs_on_a_cpu_in_quick_mode(tmp_path):
    """`benchmarks/gpu_check.py` is run on a GPU by hand; its CPU form must keep working."""
    import json

    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--quick", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["machine"]["device"] == "cpu" and res["machine"]["fp32_tflops"] > 0
    assert [k for k, v in res["smoke"]["stages"].items() if v.get("seconds", 0) > 0] == \
        ["tokenizer", "lm", "sae", "evaluate"]
    assert 0 < res["smoke"]["metrics"]["fvu"] < 1
    assert {(x["variant"], x["precision"]) for x in res["trainer"] if x["tokens_per_s"] > 0} == \
        {("relu", "fp32"), ("relu", "bf16"), ("topk sparse", "fp32"), ("topk sparse", "bf16")}
    assert "## SAE trainer" in (tmp_path / "gpu_check.md").read_text()
