"""The evaluation: tokens/s of the `evaluate` stage's first pass (`Evaluator` and
`FeatureStatsBuilder` over `held_out_batches`), the memory of what it accumulates, and the whole
stage's work (`sae.evaluation.evaluate`: that pass and the ground-truth pass, `sae.evaluation.ground_truth`).

    python -m benchmarks.bench_evaluate --run runs/tiny            # a trained run (the figures that count)
    python -m benchmarks.bench_evaluate --quick                    # an untrained smoke-sized pair, 2,048 tokens: a test

Prints the thread count and the machine's fp32 matmul rate beside the figures (machines here
differ about 4x), the pass's tokens/s and seconds, and the accumulators' sizes: the two concept
histograms, the kept segment peaks (against the n_segments x n_units float32 matrix that a
dense record would need) and the probe's scores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_sae import matmul_peak
from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.run.command import Parser, positive_int, run_command
from sae.world.corpus import CONCEPTS
from sae.gpt import GPT, GPTConfig
from sae.interpret import FeatureStatsBuilder
from sae.evaluation.evaluator import Evaluator
from sae.evaluation.held_out import held_out_batches
from sae.run.analyses import of_stage
from sae.evaluation.evaluate import evaluate, held_out_pass
from sae.run.config import preset_of_run
from sae.run.files import corpus_tokens, load_run, load_sae
from sae.utils import atomic_write_json, resolve_device


PROG = "python -m benchmarks.bench_evaluate"


def nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def main(argv: list[str] | None = None) -> None:
    ap = Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a run directory with lm.pt and sae.pt (default: an untrained smoke-sized pair)")
    ap.add_argument("--tokens", type=positive_int, default=None, help="held-out tokens (default: the run's eval_tokens)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="an untrained smoke-sized model and SAE, 2,048 tokens")
    ap.add_argument("--out", help="the results as JSON (default runs/bench/bench_evaluate.json; with --quick "
                    "a new temporary folder's)")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    if args.run and not args.quick:
        p = preset_of_run(args.run)
        tok, model = load_run(args.run, str(device))
        sae = load_sae(args.run, device=str(device))
        n = args.tokens or p.eval_tokens
        tokens, labels = corpus_tokens(p, tok, "val", n + model.cfg.n_ctx)
    else:
        torch.manual_seed(0)
        model = GPT(GPTConfig(d_model=64, n_head=2, d_mlp=256, n_ctx=64, vocab_size=512)).to(device)
        sae = SparseAutoencoder(SAEConfig(d_in=256, d_sae=512, site="blocks.0.mlp.hook_post")).to(device)
        n = args.tokens or (2048 if args.quick else 8192)
        rng = np.random.default_rng(0)
        tokens = rng.integers(0, 512, n + 64)
        labels = np.repeat(rng.integers(-1, len(CONCEPTS), (n + 64) // 16 + 1), 16)[: n + 64]
    peak = matmul_peak(device, n=512 if args.quick else 1024)
    print(f"device {device}, {torch.get_num_threads()} threads, fp32 matmul {peak / 1e9:.0f} GFLOP/s; "
          f"d_in {sae.cfg.d_in}, d_sae {sae.cfg.d_sae}, {n:,} tokens")
    ev = Evaluator(model, sae, n_concepts=len(CONCEPTS))
    fs = FeatureStatsBuilder(sae, tokens, labels)
    t = time.perf_counter()
    with torch.no_grad():
        for b in held_out_batches(model, sae, tokens, labels, n):
            ev.add(b)
            fs.add(b)
    seconds = time.perf_counter() - t
    n_tokens = ev.n
    hist = nbytes(ev.features.counts, ev.features.mass, ev.neurons.counts, ev.neurons.mass)
    peaks = sum(nbytes(*pk.pairs, *pk.peaks, *pk.segments, *pk.labels) for pk in (ev.feature_peaks, ev.neuron_peaks))
    n_segments = len(torch.unique(torch.cat(ev.feature_peaks.segments)))
    dense = n_segments * (sae.cfg.d_sae + sae.cfg.d_in) * 4
    probe = nbytes(*ev.probe.scores, *ev.probe.labels)
    ev.result()
    fs.result()
    print(f"evaluation pass: {n_tokens:,} tokens in {seconds:.1f}s = {n_tokens / seconds:,.0f} tok/s")
    t = time.perf_counter()
    evaluate(held_out_pass(model, sae, tokens, labels, n, CONCEPTS, also=FeatureStatsBuilder(sae, tokens, labels), log=False),
             of_stage("evaluate"))
    stage = time.perf_counter() - t
    print(f"the evaluate stage's work (both passes: held_out_pass, then the analyses): {stage:.1f}s = {n_tokens / stage:,.0f} tok/s")
    print(f"accumulated: concept histograms {hist / 2**20:.1f} MiB; segment peaks kept {peaks / 2**20:.1f} MiB "
          f"(a dense record: {n_segments:,} segments x {sae.cfg.d_sae + sae.cfg.d_in:,} units = {dense / 2**20:.1f} MiB); "
          f"probe scores {probe / 2**20:.1f} MiB")
    out = Path(args.out or (tempfile.mkdtemp(prefix="bench_evaluate_") + "/bench_evaluate.json" if args.quick
                            else "runs/bench/bench_evaluate.json"))
    atomic_write_json(out, {"device": str(device), "threads": torch.get_num_threads(),
                            "matmul_gflops": peak / 1e9, "tokens": n_tokens, "seconds": seconds,
                            "tokens_per_s": n_tokens / seconds, "stage_seconds": stage,
                            "stage_tokens_per_s": n_tokens / stage, "histogram_mib": hist / 2**20,
                            "peaks_mib": peaks / 2**20, "dense_peaks_mib": dense / 2**20})
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
