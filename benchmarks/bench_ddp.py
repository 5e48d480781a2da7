"""Data-parallel SAE training: tokens/s with 1 and 2 processes, and the share of communication.

    python -m benchmarks.bench_ddp                 # d_sae 1,024 and 16,384 at d_in 512, batch 1,024
    python -m benchmarks.bench_ddp --quick         # d_sae 256 at d_in 64, batch 256, 4 steps: a test
    python -m benchmarks.bench_ddp --device cuda   # NCCL, one GPU per process (needs 2 GPUs for 2)

Each configuration trains `train_sae` on a repeated random batch (no data cost) in this process
with the whole batch, then in 2 gloo (NCCL on CUDA) processes with half of it each, started by
`torch.multiprocessing` as torchrun would. On CPU the processes share the machine's cores:
1 process uses all of them as torch threads, 2 processes split them. "comm" is the share of
rank 0's step time spent in the gradient all-reduce and the small per-step collectives
(fired features, logged scalars). Expect little or no speed-up on 2 shared cores: the figure
tells a GPU user what the synchronisation costs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import queue
import socket
import sys
import time
from contextlib import contextmanager

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sae import distributed
from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.run.command import Parser, run_command
from sae.train_sae import TrainSAEConfig, train_sae
from sae.utils import resolve_device


PROG = "python -m benchmarks.bench_ddp"


COLLECTIVES = ("grads", "any", "mean")  # what a training step calls (methods of `distributed.Sync`)


@contextmanager
def timing_collectives(box: list):
    """Within the block, every call of a per-step collective of `sae.distributed.Sync` adds its seconds to box[0]."""
    originals = {name: getattr(distributed.Sync, name) for name in COLLECTIVES}

    def timed(fn):
        def wrapper(*args, **kw):
            t = time.perf_counter()
            out = fn(*args, **kw)
            box[0] += time.perf_counter() - t
            return out
        return wrapper

    for name, fn in originals.items():
        setattr(distributed.Sync, name, timed(fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(distributed.Sync, name, fn)


def _worker(rank: int, n_ranks: int, port: int, d_in: int, d_sae: int, batch: int, steps: int, threads: int,
            device: str, results) -> None:
    torch.set_num_threads(threads)
    if n_ranks > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(n_ranks),
                          LOCAL_RANK=str(rank))
        dev = distributed.init_from_env(device)
    else:
        dev = torch.device(device)
    comm = [0.0]
    x = torch.randn(batch // n_ranks, d_in, device=dev, generator=None)
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=d_sae)).to(dev)
    warmup = 3
    with timing_collectives(comm):
        hist = train_sae(sae, itertools.repeat(x), TrainSAEConfig(n_steps=warmup + steps, log_every=0,
                                                                    init_b_dec=False))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = hist[-1]["elapsed_s"] - hist[warmup - 1]["elapsed_s"]
    if rank == 0:
        results.put((batch * steps / seconds, comm[0] / hist[-1]["elapsed_s"]))
    if n_ranks > 1:  # both ranks leave their last collective before either tears gloo down: a rank
        dist.barrier()  # that exits first can make the other abort ("terminate called", seen once in CI)
        dist.destroy_process_group()


def run(n_ranks: int, d_in: int, d_sae: int, batch: int, steps: int, device: str) -> tuple[float, float]:
    cores = os.cpu_count() or 1
    threads = max(1, cores // n_ranks)
    if n_ranks == 1:  # no process group: this process is the one rank
        results = queue.SimpleQueue()
        _worker(0, 1, 0, d_in, d_sae, batch, steps, threads, device, results)
        return results.get()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    mp.start_processes(_worker, args=(n_ranks, port, d_in, d_sae, batch, steps, threads, device, results),
                       nprocs=n_ranks, join=True, start_method="spawn")
    return results.get()


def main(argv: list[str] | None = None) -> None:
    ap = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="d_sae 256 at d_in 64, batch 256, 4 steps: a test")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    resolve_device(args.device)  # an unknown device: one line, before any process starts
    d_in, batch, configs = (64, 256, [(256, 4)]) if args.quick else (512, 1024, [(1024, 40), (16_384, 6)])
    cores = os.cpu_count()
    print(f"torch {torch.__version__}, {cores} CPU cores, device {args.device}; d_in {d_in}, global batch {batch}")
    print(f"{'d_sae':>7} {'processes':>9} {'threads each':>12} {'tokens/s':>10} {'speed-up':>8} {'comm':>6}")
    for d_sae, steps in configs:
        base = None
        for n in (1, 2):
            tps, comm = run(n, d_in, d_sae, batch, steps, args.device)
            base = base or tps
            print(f"{d_sae:>7,} {n:>9} {max(1, cores // n):>12} {tps:>10,.0f} {tps / base:>7.2f}x {comm:>6.1%}",
                  flush=True)


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
