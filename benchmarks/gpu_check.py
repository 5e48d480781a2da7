"""The GPU check: one command that runs the project end to end on a GPU and takes its figures.

    python -m benchmarks.gpu_check                          # on the GPU: about 8 minutes on one H200
    python -m benchmarks.gpu_check --device cpu --quick     # the same sections, small, on a CPU (tested)

Sections, in order (each one's figures are written as soon as it ends, so a run stopped by a time
limit keeps what it measured; `--budget` seconds skips whatever would start after it):

1. machine    the device, torch, and large-matmul rates (fp32, TF32, bf16 on a GPU);
2. smoke      `reproduce --preset smoke` on the device: the CUDA path end to end, each stage timed
              (with --quick: `quick_preset()`, up to `evaluate`);
3. trainer    tokens/s of a whole SAE training step (`benchmarks.bench_sae.bench_one`: one repeated
              batch of 4,096 rows, TopK k = 32) at d_in × d_sae = 512 × 16k ... 4096 × 128k and at
              `base`'s 1024 × 16k, fp32 and bf16, ReLU and sparse TopK; beside them sparsify's
              figures on an H200, measured once by hand (sparsify is not installed here);
4. base       `reproduce --preset base`, stage by stage: each stage's time and peak GPU memory, the
              evaluation's tokens/s, the SAE stage's overhead over the bare trainer, and the run's
              quality against the targets (L0 15-40, dead <= 5%, CE recovered >= 0.95, detectors);
5. sweep      if time is left: λ of `base`'s SAE at a sixth of its steps, on the trained LM.

Writes OUT/gpu_check.json and OUT/gpu_check.md (default OUT: runs/gpu_check, or a new temporary
folder with --quick); the run directories go to OUT/runs (`--work` to put them elsewhere).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.bench_sae import bench_one
from sae.run.command import Parser, positive_float, run_command
from sae.run.pipeline import STAGES, reproduce, train_sae_on_run
from sae.run.config import Preset, get_preset, with_overrides
from sae.run import analyses
from sae.run.files import Run
from sae.train_lm import lm_schedule
from sae.train_sae import sae_schedule
from sae.utils import atomic_write_json, atomic_write_text, resolve_device


PROG = "python -m benchmarks.gpu_check"

# sparsify's TopK trainer step (bf16 autocast + TF32), tokens/s on one H200, batch 4,096, k 32, measured by hand
SPARSIFY_H200 = {(512, 16384): 1.15e6, (1024, 32768): 597e3, (2048, 65536): 237e3, (4096, 131072): 41.1e3}
SIZES = [(512, 16384), (1024, 16384), (1024, 32768), (2048, 65536), (4096, 131072)]
VARIANTS = [("relu", "relu", False, "fp32"), ("relu", "relu", False, "bf16"),
            ("topk sparse", "topk", True, "fp32"), ("topk sparse", "topk", True, "bf16")]


def quick_preset() -> Preset:
    """The smoke preset smaller still: every stage in seconds on a CPU, to test that the code runs
    (its numbers mean nothing). The quick form of this check and of `sweep_sae` run it."""
    p = get_preset("smoke")
    return replace(p, name="quick", description="smoke, smaller still: a test that the code runs",
                   tokenizer_chars=100_000, lm_train_tokens=60_000, lm_val_tokens=4096, judge_samples=1,
                   buffer_tokens=4096, eval_tokens=2048,
                   train_lm=lm_schedule(20, batch_size=p.train_lm.batch_size, lr=p.train_lm.lr, warmup=5,
                                        eval_every=20),
                   train_sae=sae_schedule(60, lr=p.train_sae.lr, l1_coeff=p.train_sae.l1_coeff))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_gb(device: torch.device) -> float:
    """Peak GPU memory since the last reset, or the process's peak resident memory on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def matmul_tflops(device: torch.device, dtype: torch.dtype, tf32: bool = False, n: int = 4096) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        best = float("inf")
        for _ in range(8):
            sync(device)
            t = time.perf_counter()
            a @ b
            sync(device)
            best = min(best, time.perf_counter() - t)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return 2 * n**3 / best / 1e12


def section_machine(device: torch.device, quick: bool) -> dict:
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
            "threads": torch.get_num_threads()}
    n = 512 if quick else 8192
    info["fp32_tflops"] = matmul_tflops(device, torch.float32, n=n)
    if device.type == "cuda":
        info["tf32_tflops"] = matmul_tflops(device, torch.float32, tf32=True, n=n)
        info["bf16_tflops"] = matmul_tflops(device, torch.bfloat16, n=n)
    return info


def timed_stages(preset, out: Path, device: torch.device, deadline: float, log, until: str = "report",
                 progress=lambda res: None) -> dict:
    """`reproduce` one stage at a time, up to `until`: {stage: {seconds, peak_gb, ...summary}};
    stages that would start after `deadline` are listed as skipped."""
    res = {}
    names = [st.name for st in STAGES]
    for st in STAGES[: names.index(until) + 1]:
        if time.perf_counter() > deadline:
            res[st.name] = {"skipped": "over the time budget"}
            continue
        reset_peak(device)
        try:
            summary = reproduce(preset, out, until=st.name, log=log)
        except Exception as e:  # keep the stages that ran; the caller reports the error
            res[st.name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            print(res[st.name]["traceback"], file=sys.stderr, flush=True)
            break
        res[st.name] = {**summary.get(st.name, {}), "peak_gb": round(peak_memory_gb(device), 2)}
        progress(res)
    return res


def section_smoke(device: torch.device, work: Path, quick: bool, deadline: float) -> dict:
    p = with_overrides(quick_preset() if quick else get_preset("smoke"), [f"device={device.type}"])
    shutil.rmtree(work / "smoke", ignore_errors=True)  # timed from scratch
    # dashboard and steering take a minute on a CPU: the quick form stops after evaluate
    stages = timed_stages(p, work / "smoke", device, deadline, log=_quiet, until="evaluate" if quick else "report")
    return {"stages": stages, "metrics": _headline(work / "smoke")}


def section_trainer(device: torch.device, quick: bool, deadline: float) -> list[dict]:
    sizes, batch, k = ([(64, 512)], 256, 8) if quick else (SIZES, 4096, 32)
    rows = []
    for (d_in, d_sae) in sizes:
        for name, arch, sparse, precision in VARIANTS:
            if time.perf_counter() > deadline:
                return rows
            reset_peak(device)
            tok_s = bench_one(d_in, d_sae, batch, arch, sparse, k, device, seconds=0.003 if quick else 1.0,
                              precision=precision)
            row = {"d_in": d_in, "d_sae": d_sae, "batch": batch, "k": k, "variant": name, "precision": precision,
                   "tokens_per_s": round(tok_s), "peak_gb": round(peak_memory_gb(device), 2)}
            if arch == "topk" and (d_in, d_sae) in SPARSIFY_H200:
                row["sparsify_h200_tokens_per_s"] = SPARSIFY_H200[(d_in, d_sae)]
            rows.append(row)
            print(f"  trainer {d_in} x {d_sae} {name} {precision}: {tok_s:,.0f} tok/s", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def section_base(device: torch.device, work: Path, deadline: float, trainer: list[dict], progress) -> dict:
    p = with_overrides(get_preset("base"), [f"device={device.type}"])
    stages = timed_stages(p, work / "base", device, deadline, log=print, progress=progress)
    res = {"stages": stages, "metrics": _headline(work / "base"),
           "total_seconds": round(sum(v.get("seconds", 0) for v in stages.values()), 1)}
    ev = stages.get("evaluate", {})
    if "seconds" in ev:
        res["evaluate_tokens_per_s"] = round(p.eval_tokens / ev["seconds"])
    sae = stages.get("sae", {})
    bare = [r["tokens_per_s"] for r in trainer if (r["d_in"], r["d_sae"], r["variant"]) == (p.gpt.d_mlp, p.sae.d_sae,
                                                                                          "relu")
            and r["precision"] == "bf16"]
    if "seconds" in sae and bare:
        tokens = p.train_sae.n_steps * p.sae_batch_size
        res["sae_stage_tokens_per_s"] = round(tokens / sae["seconds"])
        res["sae_stage_overhead"] = round(1 - tokens / bare[0] / sae["seconds"], 3)
    return res


def section_sweep(device: torch.device, work: Path, deadline: float, lams=(0.4, 1.6)) -> list[dict]:
    base = work / "base"
    rows = []
    for lam in lams:
        if time.perf_counter() > deadline or not (base / "lm.pt").exists():
            break
        p = with_overrides(get_preset("base"), [f"device={device.type}", f"train_sae.l1_coeff={lam}"])
        steps = p.train_sae.n_steps // 6
        p = replace(p, train_sae=replace(p.train_sae, n_steps=steps, dead_window=steps // 10,
                                         resample_steps=(steps // 5, 2 * steps // 5), log_every=steps // 5))
        name = f"sweep_l1_{lam}"
        for f in (base / f"{name}.pt", base / f"{name}.ckpt"):
            f.unlink(missing_ok=True)
        t = time.perf_counter()
        info = train_sae_on_run(p, base, name)
        rows.append({"l1_coeff": lam, "steps": steps, "seconds": round(time.perf_counter() - t, 1), **info})
    return rows


def _headline(run: Path) -> dict:
    """Every analysis's headline numbers of the run (`sae.run.analyses`), {} before its evaluation."""
    if not (run / "metrics.json").exists():
        return {}
    opened, out = Run(run), {}
    for a in analyses.ANALYSES:
        r = opened.results(a.stage).get(a.module.NAME)
        if r is not None:
            out.update({h.key: round(h.value, 4) if isinstance(h.value, float) else h.value for h in a.module.headline(r)})
    return out


def _quiet(*_) -> None:
    pass


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# GPU check: {m['device']}, torch {m['torch']}, {m['threads']} CPU threads", "",
             "Matmul rates: " + ", ".join(f"{k.split('_')[0]} {v:.3g} TFLOP/s" for k, v in m.items() if k.endswith("tflops")),
             ""]
    for name in ("smoke", "base"):
        sec = r.get(name)
        if not sec:
            continue
        lines += [f"## `{name}` reproduce", "", "| stage | seconds | peak memory (GB) |", "|---|---:|---:|"]
        lines += [f"| {k} | {v.get('seconds', v.get('skipped', v.get('error', '-')))} | {v.get('peak_gb', '-')} |"
                  for k, v in sec["stages"].items()]
        lines += ["", "Metrics: " + ", ".join(f"{k} {v}" for k, v in sec["metrics"].items()), ""]
        for k in ("total_seconds", "evaluate_tokens_per_s", "sae_stage_tokens_per_s", "sae_stage_overhead"):
            if k in sec:
                lines.append(f"- {k.replace('_', ' ')}: {sec[k]:,}")
        lines.append("")
    if r.get("trainer"):
        lines += ["## SAE trainer, tokens/s (whole training step, one repeated batch)", "",
                  "| d_in × d_sae | variant | precision | tokens/s | sparsify on H200 | ours / sparsify | peak GB |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for x in r["trainer"]:
            sp = x.get("sparsify_h200_tokens_per_s")
            vs = f"{sp:,.0f} | {x['tokens_per_s'] / sp:.2f}" if sp else "- | -"
            lines.append(f"| {x['d_in']} × {x['d_sae']} | {x['variant']} | {x['precision']} | {x['tokens_per_s']:,} | "
                         f"{vs} | {x['peak_gb']} |")
        lines.append("")
    if r.get("sweep"):
        lines += ["## λ sweep of `base`'s SAE (a sixth of its steps)", "", "| λ | steps | L0 | FVU | dead | seconds |",
                  "|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {x['l1_coeff']} | {x['steps']} | {x['l0']} | {x['fvu']} | {x['dead_frac']:.1%} | {x['seconds']} |"
                  for x in r["sweep"]]
    for name, tb in r.get("errors", {}).items():
        lines += ["", f"**{name} failed:** `{tb.strip().splitlines()[-1]}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) | cpu | auto")
    ap.add_argument("--quick", action="store_true", help="small sizes, smoke only up to evaluate, no base: a test")
    ap.add_argument("--out", help="folder of gpu_check.json and gpu_check.md (default runs/gpu_check; "
                    "with --quick a new temporary folder)")
    ap.add_argument("--work", default=None, help="folder of the run directories (default OUT/runs)")
    ap.add_argument("--budget", type=positive_float, default=480, help="seconds; sections that would start later are skipped")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)  # an unknown device: one line, exit 2 (`run_command`)
    out = Path(args.out or (tempfile.mkdtemp(prefix="gpu_check_") if args.quick else "runs/gpu_check"))
    work = Path(args.work) if args.work else out / "runs"
    t0 = time.perf_counter()
    deadline = t0 + args.budget
    r: dict = {"quick": args.quick}

    def save(section: str) -> None:
        r["seconds"] = round(time.perf_counter() - t0, 1)
        atomic_write_json(out / "gpu_check.json", r)
        atomic_write_text(out / "gpu_check.md", markdown(r))
        print(f"gpu_check: {section} done at {r['seconds']:.0f}s -> {out / 'gpu_check.json'}", flush=True)

    sections = [("machine", lambda: section_machine(device, args.quick)),
                ("smoke", lambda: section_smoke(device, work, args.quick, deadline)),
                ("trainer", lambda: section_trainer(device, args.quick, deadline))]
    if not args.quick:
        def base_progress(stages: dict) -> None:  # a time limit mid-run keeps the stages that finished
            r["base"] = {"stages": dict(stages), "metrics": {}}
            save(f"base stage {list(stages)[-1]}")

        sections += [("base", lambda: section_base(device, work, deadline, r.get("trainer", []), base_progress)),
                     ("sweep", lambda: section_sweep(device, work, deadline))]
    failed = []
    for name, run in sections:
        try:
            r[name] = run()
        except Exception:  # one section's crash must not cost the others' figures
            r.setdefault("errors", {})[name] = traceback.format_exc()
            print(f"gpu_check: {name} FAILED:\n{r['errors'][name]}", file=sys.stderr, flush=True)
            failed.append(name)
        save(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
