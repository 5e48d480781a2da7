"""Every benchmark script runs in its quick mode and prints its table (the figures themselves are
not asserted: speed is measured by the benchmarks, never by tests).

Each script's `main(argv)` runs in this process, as `python -m benchmarks.NAME --quick ...` would
run it: a fresh interpreter per script would pay torch's import (seconds) ten times over."""

import contextlib
import importlib
import io
import json
import os
from pathlib import Path
from unittest import mock

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# every script of benchmarks/: (its arguments after --quick, a line of its output that shows it got
# to its table). "{out}" is a folder of the test's: a quick mode writes there or nowhere.
QUICK = {
    "bench_buffer": ([], "buffer serving"),
    "bench_chapters": (["--runs", "{out}"], "| 02_toy_world.py | "),
    "bench_corpus": ([], "BPE training"),
    "bench_ddp": ([], "processes threads each"),
    "bench_estimate": ([], "| total |"),
    "bench_evaluate": (["--out", "{out}/bench_evaluate.json"], "tok/s"),
    "bench_generate": ([], "greedy tokens equal with and without the cache: True"),
    "bench_lm": ([], "train tok/s"),
    "bench_peers": (["--out", "{out}/bench_peers.json"], "| sae_topk |"),
    "bench_recovery": (["--out", "{out}/bench_recovery.json"], "| matryoshka | hierarchy | 0 |"),
    "bench_sae": (["--out", "{out}/bench_sae.json"], "sparse / dense TopK"),
    "gpu_check": (["--device", "cpu", "--out", "{out}"], "gpu_check: trainer done"),
    "sweep_sae": (["--out", "{out}"], "sae.arch=topk,sae.k=8"),
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """run(name) -> (what `benchmarks.NAME.main(["--quick", ...])` returned, its output, its "{out}"
    folder, its working directory). Each script runs once (gpu_check has two tests), from an empty
    working directory (a relative default path such as runs/... would land there, not in the
    repository), and leaves this process's threads, environment and working directory as it found them."""
    done = {}

    def run(name: str):
        if name not in done:
            out, cwd = tmp_path_factory.mktemp(f"{name}_out"), tmp_path_factory.mktemp(f"{name}_cwd")
            stdout, threads = io.StringIO(), torch.get_num_threads()
            with pytest.MonkeyPatch.context() as mp, mock.patch.dict(os.environ):
                mp.syspath_prepend(str(ROOT))  # `benchmarks` is not installed; spawned processes inherit the path
                mp.chdir(cwd)
                try:
                    with contextlib.redirect_stdout(stdout):
                        status = importlib.import_module(f"benchmarks.{name}").main(
                            ["--quick", *(a.format(out=out) for a in QUICK[name][0])])
                finally:
                    torch.set_num_threads(threads)
            done[name] = (status, stdout.getvalue(), out, cwd)
        return done[name]

    return run


def test_every_benchmark_has_a_quick_test():
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    assert scripts == set(QUICK), (f"benchmarks/ has {sorted(scripts - set(QUICK))} that QUICK lacks, QUICK lists "
                                   f"{sorted(set(QUICK) - scripts)} that benchmarks/ lacks: give every script a "
                                   "--quick mode (tiny sizes, seconds) and list it in QUICK")


@pytest.mark.parametrize("name", sorted(QUICK))
def test_benchmark_runs_in_quick_mode(name, quick_run):
    status, stdout, out, cwd = quick_run(name)
    assert not status, f"exit status {status}:\n{stdout[-2000:]}"
    assert QUICK[name][1] in stdout, f"no {QUICK[name][1]!r} in the output:\n{stdout[-2000:]}"
    assert not list(cwd.iterdir()), (f"--quick wrote {[p.name for p in cwd.iterdir()]} into the working directory: "
                                     "a quick mode writes only under --out (or a temporary folder)")
    if any("{out}" in a for a in QUICK[name][0]):
        assert list(out.iterdir()), "--quick wrote nothing under --out"


def test_gpu_check_runs_on_a_cpu_in_quick_mode(quick_run):
    """`benchmarks/gpu_check.py` is run on a GPU by hand; its CPU form must keep working."""
    status, stdout, out, _ = quick_run("gpu_check")
    assert status == 0, stdout[-2000:]
    res = json.loads((out / "gpu_check.json").read_text())
    assert res["machine"]["device"] == "cpu" and res["machine"]["fp32_tflops"] > 0
    assert [k for k, v in res["smoke"]["stages"].items() if v.get("seconds", 0) > 0] == \
        ["tokenizer", "lm", "sae", "evaluate"]
    assert 0 < res["smoke"]["metrics"]["fvu"] < 1
    assert {(x["variant"], x["precision"]) for x in res["trainer"] if x["tokens_per_s"] > 0} == \
        {("relu", "fp32"), ("relu", "bf16"), ("topk sparse", "fp32"), ("topk sparse", "bf16")}
    assert "## SAE trainer" in (out / "gpu_check.md").read_text()
