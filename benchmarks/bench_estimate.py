"""How close `reproduce`'s estimate comes: a preset run into a fresh folder, each stage's estimated
seconds (`sae.run.estimate`, from the same half-second probe `reproduce` takes) beside the seconds
it took, with the thread count and the machine's fp32 matmul rate.

    python -m benchmarks.bench_estimate --preset smoke     # about 30 s on a 2-core CPU
    python -m benchmarks.bench_estimate --preset tiny      # the default run, about 6 min
    python -m benchmarks.bench_estimate --quick            # smoke up to the SAE stage: a test

`CALIBRATION` in sae/run/estimate.py holds the smoke and tiny runs' seconds and rates from this
script; re-measure both on one quiet machine to recalibrate.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from sae.run.command import Parser, run_command
from sae.run.config import get_preset
from sae.run.estimate import estimate_seconds, matmul_gflops
from sae.run.pipeline import reproduce
from sae.utils import resolve_device

PROG = "python -m benchmarks.bench_estimate"


def main(argv: list[str] | None = None) -> None:
    ap = Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="smoke", help="smoke (default) | tiny | base")
    ap.add_argument("--quick", action="store_true", help="the smoke preset up to its SAE stage")
    args = ap.parse_args(argv)
    preset = get_preset("smoke" if args.quick else args.preset)
    rate = matmul_gflops(resolve_device(preset.device))
    print(f"{PROG}: preset {preset.name!r}, {torch.get_num_threads()} threads, fp32 matmul {rate:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        stages = reproduce(preset, Path(tmp) / preset.name, until="sae" if args.quick else None)
    seconds = {s: r["seconds"] for s, r in stages.items() if "seconds" in r}
    guess = estimate_seconds(preset, rate, seconds)
    print("\n| stage | estimate (s) | actual (s) | actual / estimate |\n|---|---|---|---|")
    for s in guess:
        print(f"| {s} | {guess[s]:.1f} | {seconds[s]:.1f} | {seconds[s] / max(guess[s], 1e-9):.2f} |")
    est, act = sum(guess.values()), sum(seconds[s] for s in guess)
    print(f"| total | {est:.1f} | {act:.1f} | {act / max(est, 1e-9):.2f} |")


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
