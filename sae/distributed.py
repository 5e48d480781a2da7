"""Data parallelism for SAE training under `torchrun`: N processes train one SAE.

    torchrun --nproc_per_node 2 -m sae -- train-sae --run runs/tiny --name sae_ddp

(the `--` keeps torchrun's own parser from reading `--run` as its `--run-path`). Every process
(a *rank*) holds a full copy of the SAE and of Adam's state and reads its own shard of the token
stream through its own activation buffer. One step of N ranks with batch B/N each equals one
step of one process with batch B, because the loss is a mean over rows:

    ∇ mean_{rows of B} ℓ = (1/N) Σ_r ∇ mean_{rows of rank r} ℓ          (equal shard sizes)

so the ranks average their gradients (one all-reduce) and then take identical Adam steps: same
gradients in, same parameters out, with no parameter ever sent. What else must agree, and how:

- the decoder-norm projection and renormalisation: computed on identical parameters and
  gradients, so identical (nothing to send);
- dead features: a feature fired in the step if it fired on any rank (an all-reduce of the
  per-feature maximum), so every rank keeps the same "steps since fired" counters;
- b_dec's initial geometric median and resampling's inputs: every rank draws its share, the rows
  are gathered (rank-major per batch, the order one process with batch B would see), and every
  rank computes the same new rows (same seeded generator) and zeroes the same Adam moments;
- checkpoints, logs and progress lines come from rank 0 alone. A resumed run reloads rank 0's
  checkpoint on every rank and replays each rank's own stream up to the same batch.

The rule that keeps the ranks in step: **every collective is called on every rank, at the same
step, for the same reason.** So whether a collective runs may depend only on what every rank
shares (the configuration, the step, a value that came out of an earlier collective), never on
the rank: "rank 0 logs, so rank 0 flushes its numbers" breaks it (only rank 0 enters the flush's
collective while the others go on to the next step's gradients), and gloo then fails with
"Received data size doesn't match expected size". Only what a collective does not follow may
depend on the rank: printing, writing files. With `SAE_CHECK_SYNC=1` in the environment, `Sync`
checks the rule before each of its collectives (one extra small all-gather each, off by default)
and a broken rule stops every rank with `RanksDiverged`, naming the step and each rank's call.

Backend from the device: gloo on CPU, NCCL on CUDA (one GPU per rank, `cuda:LOCAL_RANK`). With
one process nothing here creates a process group, and training runs the single-process code.
Multi-node: torchrun's rendezvous flags (`--nnodes 2 --node_rank I --rdzv_backend c10d
--rdzv_endpoint HOST:PORT`); nothing in this module depends on the node count.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when no process group is running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def launched() -> bool:
    """Started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str | torch.device = "cpu") -> torch.device:
    """This rank's device, after starting the process group under torchrun (else `device` as is)."""
    device = torch.device(device)
    if not launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # a long timeout: under `reproduce` the other ranks wait at a barrier while rank 0 trains
        # the LM (torchrun stops every rank at once if one of them fails, so nothing hangs)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=4))
    return device


def shutdown() -> None:
    """End the process group, if one is running. Leaving it to the interpreter's exit can abort a
    rank after its work is done ("terminate called without an active exception": gloo's threads
    outlive the objects they use), which torchrun then reports as a failed run."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_same(what: str, value) -> None:
    """Fail on every rank, with one line, if the ranks disagree on `value` (JSON-serialisable)."""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).digest()[:8]
    mine = torch.tensor(list(digest), dtype=torch.int64)
    everyone = [torch.empty_like(mine) for _ in range(world()[1])]
    dist.all_gather(everyone, mine)
    differ = [r for r, d in enumerate(everyone) if not torch.equal(d, everyone[0])]
    if differ:
        raise ValueError(f"the ranks disagree on the {what} (ranks {differ} differ from rank 0): start every "
                         "rank with the same command and files")


class RanksDiverged(RuntimeError):
    """The ranks reached different collectives (`SAE_CHECK_SYNC=1`): a bug in the training loop."""


class Sync:
    """What the ranks of one training must agree on, as four verbs that do nothing in one process
    (so a training loop reads the same with or without `torchrun`):

    - `rows(x, why)`: every rank's rows, rank 0's first (b_dec's initial median, resampling's inputs);
    - `any(flags, why)`: element-wise OR over the ranks (a feature fired, a loss stopped being finite);
    - `mean(values, why)`: the mean over the ranks (the logged numbers);
    - `grads(params)`: every gradient replaced by its mean over the ranks.

    `why` names the call for `SAE_CHECK_SYNC=1` (see the module docstring); the training loop
    keeps `step` current so that a divergence names it. `start(module, config)` checks every rank
    trains the same configuration and copies rank 0's parameters to the others."""

    def __init__(self, check: bool | None = None) -> None:
        self.rank, self.n_ranks = world()
        self.active = self.n_ranks > 1
        self.check = os.environ.get("SAE_CHECK_SYNC", "") not in ("", "0") if check is None else check
        self.step = 0  # set by the training loop; only for the divergence message
        self.calls = 0  # collectives made so far through this object

    def _agree(self, call: str) -> None:
        """With `check` on: all-gather (call number, step, call) and stop every rank if they differ."""
        self.calls += 1
        if not self.check:
            return
        everyone: list = [None] * self.n_ranks
        dist.all_gather_object(everyone, (self.calls, self.step, call))
        if len(set(everyone)) > 1:
            said = "; ".join(f"rank {r} made call {n} at step {s}: {c}" for r, (n, s, c) in enumerate(everyone))
            raise RanksDiverged(f"the ranks reached different collectives ({said}); every collective must run on "
                                "every rank at the same step for the same reason (see sae/distributed.py)")

    def rows(self, x: Tensor, why: str = "rows") -> Tensor:
        if not self.active:
            return x
        self._agree(f"rows({why})")
        parts = [torch.empty_like(x) for _ in range(self.n_ranks)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    def any(self, flags: Tensor, why: str = "any") -> Tensor:
        if not self.active:
            return flags
        self._agree(f"any({why})")
        out = flags.to(torch.uint8)
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
        return out.bool()

    def mean(self, values: Tensor, why: str = "mean") -> Tensor:
        if not self.active:
            return values
        self._agree(f"mean({why})")
        out = values.clone()
        dist.all_reduce(out)
        return out / self.n_ranks

    def grads(self, params) -> None:
        """All gradients laid end to end: one all-reduce instead of one per tensor."""
        if not self.active:
            return
        self._agree("grads")
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.n_ranks
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))

    def start(self, module: torch.nn.Module, config) -> None:
        if self.active:
            check_same("SAE and training configuration", config)
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, 0)


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def shard(n_rows: int, what: str) -> int:
    """This rank's share of `n_rows` (a batch): n_rows / world size, or a one-line error."""
    _, n = world()
    if n_rows % n:
        raise ValueError(f"the {what} of {n_rows} rows does not split evenly over {n} processes: make it a "
                         f"multiple of {n} (e.g. --set sae_batch_size={n_rows - n_rows % n or n})")
    return n_rows // n
