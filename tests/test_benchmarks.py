"""Every benchmark script runs and prints its table (the figures themselves are not asserted:
speed is measured by the benchmarks, never by tests)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script, expect", [("bench_sae.py", "sparse / dense TopK"), ("bench_ddp.py", "processes"),
                                            ("bench_recovery.py", "| topk |")])
def test_benchmark_runs_in_quick_mode(script, expect, tmp_path):
    args = [sys.executable, str(ROOT / "benchmarks" / script), "--quick"]
    if script in ("bench_sae.py", "bench_recovery.py"):
        args += ["--out", str(tmp_path / "bench.json")]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert expect in r.stdout
