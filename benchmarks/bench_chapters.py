"""Benchmark: every tutorial chapter (and its answers) run top to bottom in full mode, on the
default run, as a class would run them; the time of each, with the machine's matmul rate.

The test suite runs the chapters in fast mode only (`SAE_FAST=1`, the smoke run). This is the
check that they also hold on the run `python -m sae reproduce` makes: no assertion about one
run's luck, no crash, and how long a class waits. Chapters that need the default run make it
(or reuse it) themselves, so the first one pays for the reproduction.

    python -m benchmarks.bench_chapters                     # chapters 01-09 and their answers, runs/tiny
    python -m benchmarks.bench_chapters --chapters 06 08    # some of them
    python -m benchmarks.bench_chapters --quick             # chapter 02 in fast mode: a test that it runs
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from sae.run.command import Parser, run_command
from sae.run.estimate import matmul_gflops
from sae.utils import atomic_write_text


PROG = "python -m benchmarks.bench_chapters"

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--chapters", nargs="*", default=None, help="chapter numbers, e.g. 06 08 (default: all)")
    ap.add_argument("--runs", default=str(ROOT / "runs"), help="the runs folder (SAE_RUNS; default: runs/)")
    ap.add_argument("--no-solutions", action="store_true", help="the chapters only, not tutorials/solutions/")
    ap.add_argument("--out", default=None, help="write the times as JSON here")
    ap.add_argument("--quick", action="store_true", help="chapter 02 in fast mode: a test that it runs")
    args = ap.parse_args(argv)
    wanted = args.chapters or (["02"] if args.quick else None)
    files = [p for p in sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py")) if not wanted or p.name[:2] in wanted]
    if args.chapters and (missing := sorted(set(args.chapters) - {p.name[:2] for p in files})):
        known = ", ".join(p.name[:2] for p in sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py")))
        raise ValueError(f"--chapters: no chapter {', '.join(missing)}; the chapters are {known}")
    if not args.no_solutions:
        files += [ROOT / "tutorials" / "solutions" / p.name for p in list(files)]
    env = dict(os.environ, MPLBACKEND="Agg", SAE_RUNS=str(Path(args.runs).resolve()))
    env.pop("SAE_FAST", None)
    if args.quick:
        env["SAE_FAST"] = "1"
    gflops = matmul_gflops()
    print(f"{'fast' if args.quick else 'full'} mode, runs in {env['SAE_RUNS']}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, fp32 matmul {gflops:.0f} GFLOP/s (1024²)")
    rows, failed = [], 0
    for path in files:
        name = str(path.relative_to(ROOT / "tutorials"))
        print(f"{name} ...", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        ok = proc.returncode == 0 and ("solutions" not in name or ("✓" in proc.stdout and "✗" not in proc.stdout))
        failed += not ok
        rows.append({"file": name, "seconds": round(seconds, 1), "ok": ok})
        print(f"{name}: {'ok' if ok else 'FAILED'} in {seconds:.0f} s")
        if not ok:
            print((proc.stdout[-2000:] + proc.stderr[-3000:]).rstrip())
    print("\n| file | time | result |\n|---|---|---|")
    for r in rows:
        print(f"| {r['file']} | {r['seconds']:.0f} s | {'ok' if r['ok'] else 'FAILED'} |")
    total = sum(r["seconds"] for r in rows)
    print(f"total {total / 60:.1f} min; {failed} failed; fp32 matmul {gflops:.0f} GFLOP/s, {torch.get_num_threads()} threads")
    if args.out:
        atomic_write_text(args.out, json.dumps({"mode": "fast" if args.quick else "full", "gflops": gflops,
                                                "threads": torch.get_num_threads(), "files": rows}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
