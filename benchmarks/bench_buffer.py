"""Benchmark: activation harvesting through the buffer vs the model's bare forward pass.

Target (issue #5): harvesting overhead <= 15% over the bare forward tokens/s, and the peak memory
of the default buffer. Run after `python -m sae train-lm` (uses runs/tiny), or on a random model:
`python benchmarks/bench_buffer.py [RUN]`.
"""

import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sae.buffer import ActivationBuffer, ContextSource
from sae.gpt import GPT, GPTConfig

SITE = "blocks.0.mlp.hook_post"


def main() -> None:
    run = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/tiny")
    model = GPT.load(run / "lm.pt") if (run / "lm.pt").exists() else GPT(GPTConfig())
    model.eval().requires_grad_(False)
    tokens = np.random.default_rng(0).integers(0, model.cfg.vocab_size, 4_000_000).astype(np.int32)
    n_ctx, model_batch = model.cfg.n_ctx, 64

    src = ContextSource(tokens, n_ctx, seed=0)
    batches = [src.contexts(model_batch) for _ in range(40)]
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
    buf = ActivationBuffer(model, tokens, SITE, buffer_tokens=2**17, batch_size=4096, model_batch=model_batch)
    n = 0
    t0 = time.perf_counter()
    while buf.refills < 20:
        buf.next_batch()
        n += 4096
    served = n / (time.perf_counter() - t0)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"bare forward (full model): {bare:,.0f} tokens/s")
    print(f"forward stopped at {SITE}: {to_site:,.0f} tokens/s")
    print(f"buffer serving (harvest + shuffle + refill): {served:,.0f} rows/s "
          f"-> time per row vs the bare full forward {bare / served - 1:+.1%} (target <= +15%), "
          f"vs the forward stopped at the site {to_site / served - 1:+.1%}")
    print(f"buffer: {buf.buffer.numel() * 4 / 2**20:.0f} MiB of rows; peak RSS grew by {(rss1 - rss0) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
