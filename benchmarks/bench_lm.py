"""How fast does the tiny GPT train, compared with what this machine can do?

Reports, for the default model shape (1 layer, d_model 128, 4 heads, d_mlp 512, n_ctx 128,
vocab 2048):
- training tokens/s of the real loop (`train_lm`, no evaluation or checkpoints), and the achieved
  FLOP/s as a fraction of a large fp32 matmul timed in the same process (the best this machine's
  BLAS does; target >= 40%);
- forward-only tokens/s (what `generate` and evaluation cost), and up to the MLP neurons only
  (`run_with_cache(..., stop_at=...)`, what the activation buffer costs);
- the loss alone, forward + backward: `F.cross_entropy` against our `SoftmaxCrossEntropy`.

FLOPs per token follow nanoGPT / PaLM (appendix B): 6 N + 12 n_layer n_ctx d_model for a training
step, where N counts the parameters used in matmuls (the embeddings are lookups, the unembedding
is a matmul), and a third of that for a forward pass. Attention is counted in full, not halved
for the causal mask, as in those references.

    python -m benchmarks.bench_lm                  # from the repo root: CPU, batch sizes 32 and 64
    python -m benchmarks.bench_lm --device cuda --batch-sizes 256
    python -m benchmarks.bench_lm --quick          # the smoke preset's model shape, batch 4, 1 step: a test
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from sae.run.command import Parser, positive_int, run_command
from sae.gpt import GPT, GPTConfig
from sae.train_lm import SoftmaxCrossEntropy, TrainLMConfig, train_lm
from sae.utils import resolve_device, seed_everything


PROG = "python -m benchmarks.bench_lm"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, device: torch.device, repeats: int) -> float:
    """Fastest of `repeats` timed calls, after one untimed warm-up call."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_flops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return 2 * n**3 / best_time(lambda: a @ b, device, repeats)


def main(argv: list[str] | None = None) -> None:
    parser = Parser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[32, 64])
    parser.add_argument("--steps", type=positive_int, default=10, help="training steps per timed run (best of 3)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="a smoke-sized model, batch 4, 1 step, a 512 x 512 "
                        "reference matmul: a test that it runs")
    args = parser.parse_args(argv)
    cfg, matmul_n = GPTConfig(), 2048
    if args.quick:
        args.batch_sizes, args.steps = [4], 1
        cfg, matmul_n = GPTConfig(d_model=64, n_head=2, d_mlp=256, n_ctx=64, vocab_size=512), 512

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    seed_everything(0)
    model = GPT(cfg).to(device)
    n_matmul = model.num_params(non_embedding=True)
    train_flops_per_token = 6 * n_matmul + 12 * cfg.n_layer * cfg.n_ctx * cfg.d_model
    forward_flops_per_token = train_flops_per_token / 3
    data = np.random.default_rng(0).integers(0, cfg.vocab_size, 500_000)

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"model {cfg}")
    print(f"{n_matmul:,} non-embedding parameters; {train_flops_per_token / 1e6:.2f} MFLOP per training token")
    peak = matmul_flops(device, matmul_n)
    print(f"reference fp32 matmul {matmul_n}x{matmul_n} @ {matmul_n}x{matmul_n}: {peak / 1e9:.1f} GFLOP/s\n")

    rows = []
    for batch_size in args.batch_sizes:
        def run(steps: int) -> None:
            train_cfg = TrainLMConfig(
                n_steps=steps, batch_size=batch_size, warmup=2, eval_every=0, checkpoint_every=0, log_every=0,
                device=str(device),
            )
            train_lm(model, data, None, train_cfg)

        # best of 3 runs (after a warm-up run), like the matmul: on a shared machine the fastest run
        # is the one least disturbed by other processes
        train_tok_s = args.steps * batch_size * cfg.n_ctx / best_time(lambda: run(args.steps), device, 3)

        x = torch.randint(0, cfg.vocab_size, (batch_size, cfg.n_ctx), device=device)
        model.eval()
        with torch.no_grad():
            fwd_tok_s = x.numel() / best_time(lambda: model(x), device, 5)
            site = f"blocks.{cfg.n_layer - 1}.mlp.hook_post"
            acts_tok_s = x.numel() / best_time(lambda: model.run_with_cache(x, [site], stop_at=site), device, 5)
        model.train()

        logits = torch.randn(x.numel(), cfg.vocab_size, device=device, requires_grad=True)
        y = x.flatten()
        torch_ce = best_time(lambda: F.cross_entropy(logits, y).backward(), device, 3)
        ours_ce = best_time(lambda: SoftmaxCrossEntropy.apply(logits, y).backward(), device, 3)

        peak = max(peak, matmul_flops(device, matmul_n))  # re-measure: shared machines drift; keep the best
        rows.append((batch_size, train_tok_s, fwd_tok_s, acts_tok_s, torch_ce, ours_ce))
        print(
            f"batch {batch_size:>4}: train {train_tok_s:>10,.0f} tok/s "
            f"({train_tok_s * train_flops_per_token / 1e9:.1f} GFLOP/s) | forward {fwd_tok_s:>10,.0f} tok/s | "
            f"to {site} {acts_tok_s:>10,.0f} tok/s | loss fwd+bwd: F.cross_entropy {torch_ce * 1e3:.1f} ms, "
            f"SoftmaxCrossEntropy {ours_ce * 1e3:.1f} ms"
        )

    print(f"\nreference matmul (best seen): {peak / 1e9:.1f} GFLOP/s")
    print("batch | train tok/s | train FLOP/s / matmul | forward tok/s | forward FLOP/s / matmul")
    for batch_size, train_tok_s, fwd_tok_s, *_ in rows:
        print(
            f"{batch_size:>5} | {train_tok_s:>11,.0f} | {train_tok_s * train_flops_per_token / peak:>21.1%} | "
            f"{fwd_tok_s:>13,.0f} | {fwd_tok_s * forward_flops_per_token / peak:>23.1%}"
        )


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
