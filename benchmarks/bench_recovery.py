"""Ground-truth recovery: how well, and how fast, each SAE variant finds a known dictionary.

    python -m benchmarks.bench_recovery                   # six architectures, two tasks (~1 min per run on 2 cores)
    python -m benchmarks.bench_recovery --quick           # 20 steps of 256 rows, 4,096 held-out rows: a test
    python -m benchmarks.bench_recovery --arch relu --task flat --set train_sae.lr=3e-4 --set train_sae.l1_coeff=4
    python -m benchmarks.bench_recovery --seeds 0-4       # five instances of each task

The tasks (after Sharkey et al. 2022; `sae.evaluation.compare.TOY_TASKS`): 512 random unit
directions in d_in = 128 dimensions, feature i firing with probability p_i ∝ (i+1)^-0.7 (about 10
active per row), with a magnitude uniform on [0, 1] ("flat", the one `bench_peers.py` gives the
peer libraries) or on [0.5, 1.5] ("bounded"); "hierarchy" is "bounded" with 16 parents of 4
children each, which fire only with their parent. A dictionary of 1,024; 1,500 steps of batch
1,024 (1.536M rows); metrics on 100k held-out rows. `--seeds` picks the task instances (each its
own dictionary, probabilities and data); a recipe counts only if it holds on all:

    FVU    Σ‖x - x̂‖² / Σ‖x - mean(x)‖²
    L0     mean number of active latents per row
    dead   share of latents that never fire on the held-out rows
    MMCS   mean over true directions of the best cosine with any decoder row
    found  share of true directions with a decoder row at cosine >= 0.9
    MCC, uniq, prec, rec, thirds, absorbed: one latent per true feature (`sae.evaluation.matching`):
           the mean cosine of the best one-to-one assignment, the share of live latents whose best
           true feature is their own, the matched latent's firing precision and recall against
           its feature's, MCC over the common/middle/rare thirds, and (hierarchy) the share of a
           child's rows on which its latent fires and its parent's is silent
    tok/s  training rows per second (the training loop's wall time; the batches are made
           before the clock starts), with the thread count

Same command, same quality numbers (seeded); speed depends on the machine, so take it on a quiet one.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import torch

from sae.autoencoder import SAEConfig
from sae.run.command import Parser, positive_int, seed_int, run_command
from sae.evaluation.compare import TOY_RECIPES, TOY_TASKS, recipe, toy_recovery
from sae.train_sae import TrainSAEConfig
from sae.utils import atomic_write_json


PROG = "python -m benchmarks.bench_recovery"

DEFAULTS = TOY_RECIPES


def run(arch: str, settings: dict[str, str], n_steps: int, n_eval: int, batch: int = 1024, d_sae: int = 1024,
        seed: int = 0, task_seed: int = 0, task: str = "flat") -> dict:
    """Train `arch` with its DEFAULTS and `settings` on instance `task_seed` of `TOY_TASKS[task]`
    from the SAE seed `seed` (`sae.evaluation.compare.toy_recovery`)."""
    sae_cfg, train_cfg = recipe(arch, n_steps, settings, d_sae=d_sae, seed=seed)
    return {"settings": settings, "task": task,
            **toy_recovery(sae_cfg, train_cfg, n_eval, batch, task_seed, TOY_TASKS[task])}


def parse_seeds(text: str) -> list[int]:
    """"0-4" -> [0, 1, 2, 3, 4]; "0,2" -> [0, 2]. ValueError on anything else."""
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-", 1))
        if hi < lo:
            raise ValueError(text)
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--arch", default=",".join(DEFAULTS), help="comma-separated: " + ", ".join(DEFAULTS))
    p.add_argument("--task", default="bounded,hierarchy", help="comma-separated: " + ", ".join(TOY_TASKS))
    p.add_argument("--set", action="append", default=[], metavar="sae.FIELD=V|train_sae.FIELD=V")
    p.add_argument("--steps", type=positive_int, default=1500)
    p.add_argument("--quick", action="store_true", help="20 steps of 256 rows, 4,096 held-out rows: a test")
    p.add_argument("--seed", type=seed_int, default=0, help="the SAE's seed (initialisation, batch order)")
    p.add_argument("--seeds", default="0", metavar="0-4|0,2",
                   help="task instances: each draws its own dictionary, probabilities and data")
    p.add_argument("--out", help="the results as JSON (default runs/bench/bench_recovery.json; with --quick "
                   "a new temporary folder's)")
    args = p.parse_args(argv)
    archs, tasks = args.arch.split(","), args.task.split(",")
    if bad := [a for a in archs if a not in DEFAULTS]:
        p.error(f"--arch: unknown {', '.join(bad)}; choose from {', '.join(DEFAULTS)}")
    if bad := [t for t in tasks if t not in TOY_TASKS]:
        p.error(f"--task: unknown {', '.join(bad)}; choose from {', '.join(TOY_TASKS)}")
    known = {f"sae.{f.name}" for f in fields(SAEConfig)} | {f"train_sae.{f.name}" for f in fields(TrainSAEConfig)}
    if bad := [s for s in args.set if s.split("=", 1)[0] not in known or "=" not in s]:
        p.error(f"--set {bad[0]!r}: write sae.FIELD=VALUE or train_sae.FIELD=VALUE with a field of "
                "SAEConfig or TrainSAEConfig")
    try:
        task_seeds = parse_seeds(args.seeds)
    except ValueError:
        p.error(f"--seeds {args.seeds!r}: write a range such as 0-4 or a list such as 0,2")
    settings = dict(s.split("=", 1) for s in args.set)
    n_steps, batch, n_eval = (20, 256, 4096) if args.quick else (args.steps, 1024, 100_000)
    print(f"{torch.get_num_threads()} threads; {n_steps} steps of {batch:,} rows; d_in 128, 512 true directions, "
          f"dictionary 1,024; {n_eval:,} held-out rows; tasks {args.task}, instances {args.seeds}\n")
    print("| arch | task | instance | settings | tokens/s | FVU | L0 | dead | MMCS | found (cos >= 0.9) | MCC | uniq | "
          "prec | rec | MCC common/middle/rare | absorbed | AuxK steps |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    rows = []
    for arch, task in itertools.product(archs, tasks):
        for task_seed in task_seeds:
            r = run(arch, settings, n_steps, n_eval, batch=batch, seed=args.seed, task_seed=task_seed, task=task)
            rows.append(r)
            shown = ", ".join(f"{k}={v}" for k, v in {**DEFAULTS[arch], **settings}.items()) or "defaults"
            thirds = "/".join(f"{v:.2f}" for v in r["mcc_thirds"])
            absorbed = f"{r['absorbed']:.1%}" if "absorbed" in r else "-"
            print(f"| {arch} | {task} | {task_seed} | {shown} | {r['tokens_per_s']:,.0f} | {r['fvu']:.3f} | "
                  f"{r['l0']:.1f} | {r['dead']:.1%} | {r['mmcs']:.3f} | {r['found']:.0%} | {r['mcc']:.3f} | "
                  f"{r['uniqueness']:.2f} | {r['precision']:.2f} | {r['recall']:.2f} | {thirds} | {absorbed} | "
                  f"{r['aux_steps']:.0%} |", flush=True)
    if len(task_seeds) > 1:
        print("\n| arch | task | worst MMCS | worst found | worst MCC | most dead | mean absorbed | "
              "instances with MMCS >= 0.95 and found >= 90% |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for arch, task in itertools.product(archs, tasks):
            mine = [r for r in rows if r["arch"] == arch and r["task"] == task]
            ok = sum(r["mmcs"] >= 0.95 and r["found"] >= 0.9 for r in mine)
            absorbed = f"{sum(r['absorbed'] for r in mine) / len(mine):.1%}" if "absorbed" in mine[0] else "-"
            print(f"| {arch} | {task} | {min(r['mmcs'] for r in mine):.3f} | {min(r['found'] for r in mine):.0%} | "
                  f"{min(r['mcc'] for r in mine):.3f} | {max(r['dead'] for r in mine):.1%} | {absorbed} | "
                  f"{ok}/{len(mine)} |")
    out = Path(args.out or (tempfile.mkdtemp(prefix="bench_recovery_") + "/bench_recovery.json" if args.quick
                            else "runs/bench/bench_recovery.json"))
    atomic_write_json(out, {"threads": torch.get_num_threads(), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
