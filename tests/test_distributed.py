"""Data-parallel SAE training (`sae.distributed`): two gloo processes with half a batch each take
the same steps as one process with the whole batch, stay identical to each other, and resume; the
command users run (`torchrun ... -m sae -- train-sae`) works; ranks that diverge stop with a message."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sae import distributed
from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.train_sae import TrainSAEConfig, train_sae

D_IN, D_SAE, BATCH, N_STEPS = 16, 48, 64, 12


def _data() -> torch.Tensor:
    """A fixed activation matrix: (batches, BATCH, D_IN) of sparse sums of 32 directions."""
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(32, D_IN, generator=g), dim=1)
    codes = torch.rand(40, BATCH, 32, generator=g) * (torch.rand(40, BATCH, 32, generator=g) < 0.1)
    return codes @ dirs


def _sae() -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        sae.b_enc[:6] = -100.0  # six features that never fire, so resampling has work to do
    return sae


def _cfg(**kw) -> TrainSAEConfig:
    return TrainSAEConfig(**{"n_steps": N_STEPS, "lr": 3e-3, "l1_coeff": 1.0, "dead_window": 3,
                             "resample_steps": (5,), "resample_inputs": 2 * BATCH, "log_every": 0, **kw})


def _stream(data: torch.Tensor, rank: int, n_ranks: int, sae=None, mismatches=None, crash_at=None):
    """This rank's rows of every batch. Before each batch (so after every step) it checks that
    all ranks hold bit-identical parameters; `crash_at` simulates a kill at that batch."""
    rows = BATCH // n_ranks
    for i, batch in enumerate(data):
        if crash_at is not None and i == crash_at:
            raise KeyboardInterrupt("simulated kill")
        if sae is not None and n_ranks > 1:
            flat = torch.cat([p.detach().reshape(-1) for p in sae.parameters()])
            everyone = [torch.empty_like(flat) for _ in range(n_ranks)]
            dist.all_gather(everyone, flat)
            if not all(torch.equal(everyone[0], e) for e in everyone):
                mismatches.append(i)
        yield batch[rank * rows:(rank + 1) * rows]


def _worker(rank: int, n_ranks: int, port: int, out: str, ckpt: str | None, crash_at, resume: bool) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=n_ranks)
    try:
        sae = _sae()
        mismatches: list[int] = []
        stream = _stream(_data(), rank, n_ranks, sae, mismatches, crash_at)
        try:
            history = train_sae(sae, stream, _cfg(checkpoint_every=2), checkpoint_path=ckpt, resume=resume)
            torch.save({"state": sae.state_dict(), "mismatches": mismatches, "history": history}, f"{out}.{rank}")
        except KeyboardInterrupt:
            pass  # the simulated kill: the checkpoint on disk is what the test reads
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's teardown: on some machines gloo's threads then abort the
    # process ("terminate called without an active exception") after its work is done and saved.
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(tmp_path, name: str, ckpt=None, crash_at=None, resume=False) -> list[dict]:
    out = str(tmp_path / name)
    mp.spawn(_worker, args=(2, _free_port(), out, ckpt, crash_at, resume), nprocs=2, join=True)
    return [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)] if crash_at is None else []


@pytest.fixture(scope="module")
def single_process():
    sae = _sae()
    history = train_sae(sae, _stream(_data(), 0, 1), _cfg())
    return sae.state_dict(), history


def test_two_ranks_with_half_batches_equal_one_process_with_the_whole_batch(tmp_path, single_process):
    want, history = single_process
    assert history[5]["resample"]["n_resampled"] >= 6, "the test must exercise resampling"
    ranks = _spawn(tmp_path, "ddp")
    for r in ranks:
        assert r["mismatches"] == [], f"the ranks' parameters differed after steps {r['mismatches']}"
        for k, v in want.items():
            torch.testing.assert_close(r["state"][k], v, rtol=1e-4, atol=1e-5, msg=f"{k} differs from one process")
    for k in want:
        assert torch.equal(ranks[0]["state"][k], ranks[1]["state"][k]), f"{k} differs between the ranks"
    assert ranks[0]["history"][5]["resample"]["n_resampled"] == history[5]["resample"]["n_resampled"]
    assert ranks[0]["history"][-1]["batch_size"] == BATCH
    assert ranks[0]["history"][-1]["loss"] == pytest.approx(history[-1]["loss"], rel=1e-4)


def test_kill_and_resume_under_two_ranks_gives_the_uninterrupted_weights(tmp_path):
    whole = _spawn(tmp_path, "whole", ckpt=str(tmp_path / "whole.ckpt"))
    ckpt = str(tmp_path / "cut.ckpt")
    # batch 11 is step 9's (resampling at step 5 drew two): killed there, the last checkpoint is step 8's
    _spawn(tmp_path, "cut", ckpt=ckpt, crash_at=11)
    assert torch.load(ckpt, weights_only=False)["step"] == 8
    resumed = _spawn(tmp_path, "resumed", ckpt=ckpt, resume=True)
    for k, v in whole[0]["state"].items():
        assert torch.equal(resumed[0]["state"][k], v), f"{k}: resumed run differs from the uninterrupted one"
        assert torch.equal(resumed[1]["state"][k], v)


def test_one_process_is_not_distributed_and_batches_must_split():
    assert distributed.world() == (0, 1) and not distributed.launched()
    assert distributed.shard(64, "batch") == 64


def test_a_batch_that_does_not_split_and_disagreeing_ranks_are_refused():
    mp.spawn(_shard_worker, args=(_free_port(),), nprocs=2, join=True)


def _shard_worker(rank: int, port: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        with pytest.raises(ValueError, match="does not split evenly over 2 processes"):
            distributed.shard(63, "batch")
        assert distributed.shard(64, "batch") == 32
        with pytest.raises(ValueError, match="ranks disagree on the configuration"):
            distributed.check_same("configuration", {"lr": 1e-3 * (1 + rank)})
        distributed.check_same("configuration", {"lr": 1e-3})
    finally:
        dist.destroy_process_group()


def test_ranks_that_reach_different_collectives_stop_with_a_message_naming_the_step_and_both_calls():
    mp.spawn(_diverge_worker, args=(_free_port(),), nprocs=2, join=True)


def _diverge_worker(rank: int, port: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        sync = distributed.Sync(check=True)
        sync.step = 7
        assert sync.any(torch.tensor([rank == 1]), "fired").tolist() == [True]  # the same call: fine
        # rank 0 flushes (a 1-element `any`) while rank 1 goes on to the gradients: the bug of a loop
        # that flushed only where it logged
        with pytest.raises(distributed.RanksDiverged) as e:
            if rank == 0:
                sync.any(torch.tensor([False]), "a loss not finite")
            else:
                sync.mean(torch.ones(3), "logged numbers")
        message = str(e.value)
        assert "rank 0 made call 2 at step 7: any(a loss not finite)" in message, message
        assert "rank 1 made call 2 at step 7: mean(logged numbers)" in message, message
    finally:
        dist.destroy_process_group()
    os._exit(0)


def _torchrun(run: Path, name: str, *args: str, check_sync: bool = False) -> tuple[subprocess.CompletedProcess, dict]:
    """`torchrun --standalone --nproc_per_node 2 -m sae -- train-sae` as docs/scaling.md writes it, each
    rank's output in its own file (`--log-dir --redirects 3`); returns the process and {rank: stdout}."""
    logs = run.parent / f"logs_{name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAE_CHECK_SYNC", "OMP_NUM_THREADS"))}
    if check_sync:
        env["SAE_CHECK_SYNC"] = "1"
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "--log-dir", str(logs), "--redirects", "3", "-m", "sae", "--",
                        "train-sae", "--run", str(run), "--name", name, *args],
                       capture_output=True, text=True, timeout=600, env=env)
    out = {int(f.parent.name): f.read_text() for f in logs.glob("**/attempt_0/*/stdout.log")}
    return p, out


@pytest.mark.parametrize("settings, check_sync", [(["--set", "train_sae.log_every=1"], False), ([], True)],
                         ids=["log-every-step", "default-logging-with-SAE_CHECK_SYNC"])
def test_torchrun_train_sae_on_a_run_matches_one_process(smoke_run, tmp_path, settings, check_sync):
    """Two gloo processes train the smoke run's SAE through the command line; rank 0 alone prints
    progress, and the SAE they save evaluates within 10% of the one-process SAE's FVU. Logging at
    every step is the worst case for the ranks' agreement (a flush, a collective, every step)."""
    run = tmp_path / "smoke"
    run.mkdir()
    for f in ("config.json", "stages.json", "tokenizer.json", "lm.pt"):
        shutil.copy(smoke_run[0] / f, run / f)
    p, out = _torchrun(run, "ddp", *settings, check_sync=check_sync)
    assert p.returncode == 0, (p.stderr + "".join(out.values()))[-3000:]
    assert sorted(out) == [0, 1], f"expected one stdout per rank, got {sorted(out)}"
    progress = [line for line in out[0].splitlines() if line.startswith("step ")]
    cfg = json.loads((run / "config.json").read_text())["train_sae"]
    n_steps, every = cfg["n_steps"], 1 if settings else cfg["log_every"]
    assert len(progress) == len([s for s in range(1, n_steps + 1) if s % every == 0 or s == n_steps]), progress
    assert f"step {n_steps:>7}/{n_steps}" in progress[-1]
    assert "wrote" in out[0] and str(run / "ddp.pt") in out[0]
    assert out[1].strip() == "", f"rank 1 printed:\n{out[1][:500]}"
    assert (run / "ddp.pt").exists() and (run / "ddp_history.json").exists()

    e = subprocess.run([sys.executable, "-m", "sae", "evaluate", "--run", str(run), "--sae", "ddp"],
                       capture_output=True, text=True, timeout=600)
    assert e.returncode == 0, e.stderr[-2000:]
    one = json.loads((smoke_run[0] / "metrics.json").read_text())["sae"]["fvu"]
    two = json.loads((run / "ddp_metrics.json").read_text())["sae"]["fvu"]
    assert abs(two - one) <= 0.1 * one, f"FVU {two:.4f} under torchrun against {one:.4f} in one process"
