"""Sampling speed of `GPT.generate`, with and without its key/value cache, at the batch sizes the
steering benchmark uses, on a model of the `tiny` preset's shape (random weights: speed does not
depend on them), with the thread count and the machine's fp32 matmul rate.

    python -m benchmarks.bench_generate            # about 40 s on a 2-core CPU
    python -m benchmarks.bench_generate --quick    # a smaller model and batch: a test

Both ways sample the same distribution; greedy decoding gives the same tokens (checked here).
"""

from __future__ import annotations

import sys
import time

import torch

from sae.gpt import GPT, GPTConfig
from sae.run.command import Parser, run_command
from sae.run.estimate import matmul_gflops

PROG = "python -m benchmarks.bench_generate"


def main(argv: list[str] | None = None) -> None:
    ap = Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller model and batch (seconds)")
    args = ap.parse_args(argv)
    cfg = GPTConfig(d_model=64, n_head=2, d_mlp=256, n_ctx=64, vocab_size=512) if args.quick else GPTConfig()
    batches, prompt, new = ((8,), 6, 16) if args.quick else ((16, 128, 512), 8, 40)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    print(f"{PROG}: {torch.get_num_threads()} threads, fp32 matmul {matmul_gflops():.0f} GFLOP/s; "
          f"model d_model {cfg.d_model}, n_ctx {cfg.n_ctx}, vocab {cfg.vocab_size}; prompt {prompt} tokens, {new} new")
    x = torch.randint(0, cfg.vocab_size, (2, prompt))
    same = torch.equal(model.generate(x, new, temperature=0), model.generate(x, new, temperature=0, use_cache=True))
    print(f"greedy tokens equal with and without the cache: {same}")
    print("| batch | no cache (continuations/s) | cache (continuations/s) | speed-up |")
    print("|---|---|---|---|")
    for b in batches:
        x = torch.randint(0, cfg.vocab_size, (b, prompt))
        rate = {}
        for cache in (False, True):
            t0 = time.perf_counter()
            model.generate(x, new, temperature=0.8, use_cache=cache)
            rate[cache] = b / (time.perf_counter() - t0)
        print(f"| {b} | {rate[False]:.0f} | {rate[True]:.0f} | {rate[True] / rate[False]:.1f}x |")


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
