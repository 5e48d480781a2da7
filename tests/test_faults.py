"""Faults as users meet them: `reproduce` killed with SIGKILL (not a Python exception: nothing gets
to clean up) at twelve points of the smoke run, then the same command again. Each rerun finishes,
leaves no temporary file behind, and ends with the uninterrupted run's numbers, bit for bit:
`metrics.json`, `steering.json`, `steer_eval.json`, `circuits.json` (but its seconds) and the LM's,
SAE's and transcoder's weights. (docs/usage.md promises that the LM
and the SAE resume bit-identically; everything after them is a deterministic function of them.)

Each run is its own `python tests/kill_at.py POINT -- reproduce ...` process. They run two at a
time with one thread each, and so does the uninterrupted reference, because a CPU's float order
(and so the last bits of every number) depends on the thread count.
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent

# (name, where the process is killed, the stage it dies in, whether the rerun must resume a checkpoint)
POINTS = [
    ("lm-between-checkpoints", "write:lm_ckpt.pt:3", "lm", True),
    ("lm-checkpoint-half-written", "midwrite:lm_ckpt.pt:2", "lm", True),
    ("sae-mid-training", "call:sae.train_sae:_Training.train_step:60", "sae", True),
    ("sae-checkpoint-half-written", "midwrite:sae.ckpt:4", "sae", True),
    ("sae-files-written-stages-json-not", "write:stages.json:3", "sae", False),
    ("evaluate-mid-pass", "call:sae.evaluation.evaluator:Evaluator.add:2", "evaluate", False),
    ("evaluate-files-written-stages-json-not", "write:stages.json:4", "evaluate", False),
    ("steering-mid-demo", "call:sae.steering.unsafe_code:sample:10", "steering", False),
    ("steering-json-half-written", "midwrite:steering.json:1", "steering", False),
    ("steer-eval-json-half-written", "midwrite:steer_eval.json:1", "steer_eval", False),
    # the smoke SAE trains 195 steps, so the transcoder's 60th step is the process's 255th
    ("transcoder-mid-training", "call:sae.train_sae:_Training.train_step:255", "circuits", True),
    ("report-md-written-html-not", "write:report.html:1", "report", False),
]
STAGES = ["tokenizer", "lm", "sae", "evaluate", "dashboard", "steering", "steer_eval", "circuits", "report"]


def _reproduce(out: Path, point: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    argv = ["reproduce", "--preset", "smoke", "--out", str(out)]
    cmd = [sys.executable, str(HERE / "kill_at.py"), point, "--", *argv] if point else [sys.executable, "-m", "sae", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


def _killed_then_rerun(out: Path, point: str) -> dict:
    killed = _reproduce(out, point)
    after_kill = json.loads((out / "stages.json").read_text()) if (out / "stages.json").exists() else {}
    rerun = _reproduce(out)
    return {"killed": killed, "stages_after_kill": after_kill, "rerun": rerun}


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    with ThreadPoolExecutor(max_workers=2) as pool:
        reference = pool.submit(_reproduce, root / "reference")
        runs = {name: pool.submit(_killed_then_rerun, root / name, point) for name, point, _, _ in POINTS}
        assert reference.result().returncode == 0, reference.result().stderr[-3000:]
        return root / "reference", {name: (root / name, f.result()) for name, f in runs.items()}


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("name, point, stage, resumes", POINTS, ids=[p[0] for p in POINTS])
def test_a_killed_reproduce_reruns_to_the_uninterrupted_numbers(faults, name, point, stage, resumes):
    reference, runs = faults
    out, r = runs[name]
    killed, rerun = r["killed"], r["rerun"]
    assert killed.returncode == -9, (f"{point} was never reached (exit {killed.returncode}): the test would kill "
                                     f"nothing\n{killed.stderr[-2000:]}")
    done = STAGES[:STAGES.index(stage)]
    assert list(r["stages_after_kill"]) == done, f"killed in {stage}, stages.json lists {list(r['stages_after_kill'])}"
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    for s in done:
        assert f"{s:<10} done already" in rerun.stdout, f"the rerun did {s} again:\n{rerun.stdout[-2000:]}"
    if resumes:
        assert "resum" in rerun.stdout, f"the rerun of {stage} must resume its checkpoint:\n{rerun.stdout[-2000:]}"
    left = [str(p.relative_to(out)) for p in out.rglob("*.tmp")]
    assert not left, f"temporary files left behind: {left}"
    for f in ("metrics.json", "steering.json", "steer_eval.json", "tc_metrics.json", "circuits.json"):
        want, got = json.loads((reference / f).read_text()), json.loads((out / f).read_text())
        for d in (want, got):
            d.get("circuits", {}).pop("seconds_per_graph", None)  # wall time: differs, rightly
        assert got == want, f"{f} differs from the uninterrupted run's"
    for f in ("lm.pt", "sae.pt", "tc.pt"):
        want, got = _weights(reference / f), _weights(out / f)
        assert want.keys() == got.keys()
        for k in want:
            assert torch.equal(want[k], got[k]), f"{f}: {k} differs from the uninterrupted run's"
    assert (out / "report.md").is_file() and (out / "report.html").is_file()  # its stage times differ, rightly
