"""SAE training throughput: tokens/s and achieved FLOP/s as a fraction of a large fp32 matmul.

    python -m benchmarks.bench_sae            # all configurations (a few minutes on a 2-core CPU)
    python -m benchmarks.bench_sae --quick    # one tiny configuration, a test that it runs

A dense SAE step costs 10·d_in·d_sae FLOPs per token: encoder and decoder forward (2 + 2), the
two weight gradients (2 + 2) and the decoder's input gradient (2); the encoder needs no input
gradient (b_dec is folded into the encoder bias, see sae/autoencoder.py). "peak" is the FLOP/s of
a large square fp32 matmul measured in the same process, so the fraction says how close the whole
training step (Adam, decoder renormalisation and bookkeeping included) comes to pure matmul speed.

TopK is measured twice: dense (multiply out the mostly-zero (batch, d_sae) matrix) and sparse
(decode and back-propagate through the k active latents only, Gao et al. 2024 section 5.3 in
plain torch). For TopK the fraction is still computed with the dense FLOP count, so the sparse
path can exceed 1: that is the speed-up, not a measurement error.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.run.command import Parser, positive_int, run_command
from sae.train_sae import TrainSAEConfig, train_sae
from sae.utils import atomic_write_json, resolve_device


PROG = "python -m benchmarks.bench_sae"


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of an (n, n) @ (n, n) fp32 matmul, best of `repeats`."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 2):
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_one(d_in: int, d_sae: int, batch: int, arch: str, sparse: bool, k: int, device: torch.device,
              seconds: float = 1.5, precision: str = "fp32") -> float:
    """Tokens/s of `train_sae` on one repeated batch (no data cost), after warm-up steps."""
    cfg = SAEConfig(d_in=d_in, d_sae=d_sae, arch=arch, k=k, sparse_topk=sparse)
    x = torch.randn(batch, d_in, device=device)
    est = 10 * d_in * d_sae * batch / 50e9  # a first guess of the step time at 50 GFLOP/s
    n_steps = max(6, int(seconds / est))
    warmup = 3
    with torch.device(device):  # built where it trains: a 4096 x 128k dictionary takes seconds to make on a CPU
        sae = SparseAutoencoder(cfg)
    hist = train_sae(sae, itertools.repeat(x), TrainSAEConfig(n_steps=warmup + n_steps, l1_coeff=1.0, log_every=0,
                                                                init_b_dec=False, precision=precision))
    elapsed = hist[-1]["elapsed_s"] - hist[warmup - 1]["elapsed_s"]
    return n_steps * batch / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d_in 64, d_sae 256, batch 256, a few steps each: a test")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--k", type=positive_int, default=16, help="TopK's k")
    parser.add_argument("--out", help="the results as JSON (default runs/bench/bench_sae.json; with --quick "
                        "a new temporary folder's)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    torch.manual_seed(0)

    sizes = [(64, 256)] if args.quick else [(128, 1024), (512, 2048), (512, 4096)]
    batches = [256] if args.quick else [4096, 1024]
    peak = matmul_peak(device, n=512 if args.quick else 2048)
    print(f"device {device}, {torch.get_num_threads()} threads, fp32 matmul peak {peak / 1e9:.1f} GFLOP/s\n")
    print("| d_in | d_sae | batch | variant | tokens/s | GFLOP/s (dense count) | fraction of peak |")
    print("|---:|---:|---:|---|---:|---:|---:|")
    rows = []
    for (d_in, d_sae), batch in itertools.product(sizes, batches):
        for name, arch, sparse in (("relu", "relu", False), ("topk dense", "topk", False), ("topk sparse", "topk", True)):
            tok_s = bench_one(d_in, d_sae, batch, arch, sparse, args.k, device, seconds=0.003 if args.quick else 1.5)
            flops = 10 * d_in * d_sae * tok_s
            rows.append({"d_in": d_in, "d_sae": d_sae, "batch": batch, "variant": name, "k": args.k,
                         "tokens_per_s": tok_s, "gflops": flops / 1e9, "fraction_of_peak": flops / peak})
            print(f"| {d_in} | {d_sae} | {batch} | {name} | {tok_s:,.0f} | {flops / 1e9:.1f} | {flops / peak:.2f} |",
                  flush=True)
    print()
    for (d_in, d_sae), batch in itertools.product(sizes, batches):
        get = lambda v: next(r["tokens_per_s"] for r in rows if (r["d_in"], r["d_sae"], r["batch"], r["variant"]) == (d_in, d_sae, batch, v))
        print(f"sparse / dense TopK (k={args.k}) at d_in={d_in}, d_sae={d_sae}, batch={batch}: "
              f"{get('topk sparse') / get('topk dense'):.2f}x")
    out = Path(args.out or (tempfile.mkdtemp(prefix="bench_sae_") + "/bench_sae.json" if args.quick
                            else "runs/bench/bench_sae.json"))
    atomic_write_json(out, {"device": str(device), "threads": torch.get_num_threads(), "peak_gflops": peak / 1e9,
                            "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
