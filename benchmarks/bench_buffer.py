"""Benchmark: activation harvesting through the buffer vs the model's bare forward pass.

Target: harvesting overhead <= 15% over the bare forward tokens/s, and the peak memory
of the default buffer.

    python -m benchmarks.bench_buffer          # runs/tiny's model (after `python -m sae train-lm`), or a random one
    python -m benchmarks.bench_buffer RUN      # the model of another run directory
    python -m benchmarks.bench_buffer --quick  # a random smoke-sized model, a small buffer, 2 refills: a test
"""

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sae.buffer import ActivationBuffer, ContextSource
from sae.run.command import Parser, run_command
from sae.gpt import GPT, GPTConfig


PROG = "python -m benchmarks.bench_buffer"

SITE = "blocks.0.mlp.hook_post"


def main(argv: list[str] | None = None) -> None:
    ap = Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", default=None, help="a run directory with lm.pt (default runs/tiny, or a "
                    "random model when that has none)")
    ap.add_argument("--quick", action="store_true", help="a random smoke-sized model (RUN is not read), "
                    "an 8k-row buffer refilled twice")
    args = ap.parse_args(argv)
    # sizes: (tokens, contexts per model call, timed model calls, buffer rows, rows per batch, refills)
    n_tokens, model_batch, n_calls, buffer_tokens, batch, refills = (
        (100_000, 16, 4, 2**13, 512, 2) if args.quick else (4_000_000, 64, 40, 2**17, 4096, 20))
    if args.run is not None and not args.quick and not (Path(args.run) / "lm.pt").is_file():
        raise FileNotFoundError(f"{args.run} has no lm.pt; give a run directory with a trained LM (or none, for "
                                "runs/tiny or a random model)")
    path = Path(args.run or "runs/tiny") / "lm.pt"
    if args.quick:
        model = GPT(GPTConfig(d_model=64, n_head=2, d_mlp=256, n_ctx=64, vocab_size=512))
    elif path.exists():
        model = GPT.load(path)
    else:
        model = GPT(GPTConfig())
    model.eval().requires_grad_(False)
    tokens = np.random.default_rng(0).integers(0, model.cfg.vocab_size, n_tokens).astype(np.int32)
    n_ctx = model.cfg.n_ctx

    src = ContextSource(tokens, n_ctx, seed=0)
    batches = [src.contexts(model_batch) for _ in range(n_calls)]
    with torch.no_grad():
        model(batches[0])
        t0 = time.perf_counter()
        for b in batches:
            model(b)
        bare = len(batches) * model_batch * n_ctx / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for b in batches:
            model.run_with_cache(b, [SITE], stop_at=SITE)
        to_site = len(batches) * model_batch * n_ctx / (time.perf_counter() - t0)

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    buf = ActivationBuffer(model, tokens, SITE, buffer_tokens=buffer_tokens, batch_size=batch, model_batch=model_batch)
    n = 0
    t0 = time.perf_counter()
    while buf.refills < refills:
        buf.next_batch()
        n += batch
    served = n / (time.perf_counter() - t0)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"bare forward (full model): {bare:,.0f} tokens/s")
    print(f"forward stopped at {SITE}: {to_site:,.0f} tokens/s")
    print(f"buffer serving (harvest + shuffle + refill): {served:,.0f} rows/s "
          f"-> time per row vs the bare full forward {bare / served - 1:+.1%} (target <= +15%), "
          f"vs the forward stopped at the site {to_site / served - 1:+.1%}")
    print(f"buffer: {buf.buffer.numel() * 4 / 2**20:.0f} MiB of rows; peak RSS grew by {(rss1 - rss0) / 1024:.0f} MiB")


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
