"""Our SAE trainers against peer libraries, on the same synthetic data with a known dictionary.

    /tmp/peers-venv/bin/python -m benchmarks.bench_peers                  # every available trainer, 1,500 steps
    /tmp/peers-venv/bin/python -m benchmarks.bench_peers --quick          # 10 steps, 4,096 held-out rows: a test
    /tmp/peers-venv/bin/python -m benchmarks.bench_peers --trainers sae_topk,sparsify_topk --out peers.json

A trainer whose library is not installed is skipped with a line that says how to install it, so
the script also runs in this project's own environment (then only the `sae` rows).

What it measures. 512 true unit directions D_i in d_in = 128 (random normal rows, normalised,
seed 0); in each row feature i fires independently with probability p_i ∝ (i+1)^-0.7, scaled so
that Σ p_i = 10, with a magnitude uniform on [0, 1]; x = Σ c_i D_i (mean ‖x‖ about 1.8). Every
trainer sees the same training stream (generator seed 1) and is scored on the same held-out rows
(generator seed 2, 100k rows): 1,024 latents, batch 1,024, 1,500 steps = 1.536M rows, 2 threads.
Each trainer's model/trainer classes are driven directly on in-memory batches (no language model,
no data set download). Metrics on the held-out rows:

    FVU    Σ‖x - x̂‖² / Σ‖x - mean(x)‖²
    L0     mean count of active latents per row
    dead   share of latents that fire on none of the held-out rows
    MMCS   mean over the 512 true directions of the best cosine with any decoder row
    found  share of true directions whose best cosine is >= 0.9
    tok/s  training rows per second, wall time of the training loop only (the time spent
           generating the synthetic batches is measured and subtracted)

The peers are NOT dependencies of this project. They live in a throwaway venv, which also sees our
package (the `sae` rows), made like this (Python 3.11; torch first, from the local CPU wheel, and
every later install constrained to it so that no peer can pull a multi-GB CUDA torch):

    python3 -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install torch==2.13.0
    echo torch==2.13.0 > /tmp/peers-constraints.txt
    /tmp/peers-venv/bin/pip install -c /tmp/peers-constraints.txt eai-sparsify==1.3.3 sae-lens==6.54.12
    /tmp/peers-venv/bin/pip install -c /tmp/peers-constraints.txt --no-deps dictionary_learning==0.1.0 nnsight==0.3.7
    /tmp/peers-venv/bin/pip install -c /tmp/peers-constraints.txt "python-socketio[client]" pillow
    echo "$PWD" > /tmp/peers-venv/lib/python3.11/site-packages/sae-main.pth   # run from the repository root: our package, from the work tree

(`pip install -e .` instead of the .pth line works too; it also writes the git-ignored
sae.egg-info into the work tree.) Notes on the peers:

- EleutherAI sparsify is `eai-sparsify` on PyPI (1.3.3, newer than the GitHub snapshot 9d3b136,
  which says 1.3.0). PyPI's `sparsify` (1.7.0) is Neural Magic's deprecated, unrelated package, an
  empty sdist. `import sparsify` imports its LM trainer, so it needs transformers, datasets,
  accelerate, schedulefree and simple-parsing even here.
- saprmarks/dictionary_learning is `dictionary_learning` 0.1.0 on PyPI (author Samuel Marks); its
  StandardTrainer, ConstrainedAdam and LR schedules are identical to GitHub 60ec6bf, whose
  TopKTrainer only adds an off-by-default k annealing. It declares nnsight<0.4, circuitsvis, umap,
  wandb... but its package __init__ only needs nnsight (0.3.7 installs with --no-deps and then
  wants python-socketio and pillow at import) and einops.
- SAELens is `sae-lens` 6.54.12 (with transformer-lens 3.9.0, transformers 5.24.0): its
  `SAETrainer` takes any iterator of activation batches, so it runs on in-memory tensors as is.

Trainers and the hyperparameters set here (everything else is the library's default). The peers'
1,000-step warm-ups were made for runs of 10^5 steps, and dictionary_learning refuses a warm-up
longer than the run, so every warm-up is set to steps // 15 (100 steps of 1,500):

    sae_topk             ours, TopK k=16 (sae_schedule: lr 1e-3, last 20% decays, AuxK on latents dead 150 steps)
    sae_relu             ours, ReLU, l1_coeff 3.2 (scaled space), resampling at 20% and 40%
    sparsify_topk        SparseCoder k=16, num_latents 1,024; optimizer "adam" with sparsify's lr rule
                         2e-4 / sqrt(num_latents / 2^14) = 8e-4 and its linear warm-up + decay to 0
                         (transformers' get_linear_schedule_with_warmup), lr_warmup_steps = steps // 15;
                         loss FVU, b_dec = batch mean at step 0, decoder renormalised before each step,
                         auxk_alpha 0 (its default: AuxK off)
    sparsify_topk_signum the same, with sparsify 1.3's actual default optimizer: schedule-free SignSGD
                         (momentum 0.95, lr 5e-3 / sqrt(num_latents / 2^14) = 0.02, no schedule);
                         evaluated at the schedule-free average (optimizer.eval()), as sparsify saves it
    dl_standard          StandardTrainer + AutoEncoder (ConstrainedAdam, lr 1e-3), l1_penalty 0.55 (raw
                         units, --l1-dl; 0.5 ends at L0 14.6, 0.55 at 13.5), resample_steps = steps // 5
                         (neurons silent for half a period of batches are resampled from that step's
                         batch; the lr re-warms after each), warmup_steps = sparsity_warmup_steps = steps // 15
    dl_topk              TopKTrainer + AutoEncoderTopK k=16 (lr auto = 8e-4, auxk_alpha 1/32 but its
                         dead threshold is 10M tokens, so AuxK never runs here), warmup_steps = steps // 15;
                         scored with the plain top-k encoder (not its inference threshold)
    saelens_standard     StandardTrainingSAE (April-update style: L1 weighted by decoder norms, decoder
                         init norm 0.1, norms free; no input normalisation, its default) with SAETrainer and
                         the settings of SAELens' own toy-data loop (sae_lens.synthetic.train_toy_sae: Adam
                         lr 3e-4 constant, no warm-up, grad-norm clip 1); l1_coefficient 0.5 (raw units,
                         --l1-saelens). Its default 1.0 gives FVU 0.65 at L0 22, and 1.5-2.0 collapse
                         (FVU 1.0): at lr 3e-4 no L1 reaches L0 13-14 in 1,500 steps
    saelens_standard_lr1e-3  the same with lr 1e-3 (the lr of dl_standard and ours)

Surprises: sparsify 1.3's default optimizer is schedule-free SignSGD, not Adam, and with its lr rule
(0.02 at 1,024 latents) it degrades on this task (FVU 0.18 after 100 steps, 0.5 at the training
weights after 1,500); the weights it saves (optimizer.eval()) are worse still, because the SignSGD
iterate z is never renormalised (decoder rows reach norm 5-11) while the trainer renormalises the
decoder only at the training point y. dictionary_learning's TopK AuxK and sparsify's auxk_alpha
(0 by default) never act at this scale (their dead window is 10M tokens).

Threads: the default is 2 (1 with --quick). On a 2-core machine that another process keeps busy,
2 threads ran 15-85x slower than 1 (OpenMP threads waiting on each other); pass --threads 1 there.
The quality numbers did not change with the thread count.

Each trainer seeds torch before building its model; the same command gives the same quality
numbers (timings vary, more so on a shared machine).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import Tensor

from sae.run.command import Parser, positive_float, positive_int, run_command


PROG = "python -m benchmarks.bench_peers"

D_IN, N_TRUE, D_SAE, K, BATCH = 128, 512, 1024, 16, 1024
MEAN_ACTIVE, POWER = 10.0, 0.7
# the dictionary's seed must differ from the models': with both 0, `randn(N_TRUE, D_IN)` drew the
# true directions from the stream that `torch.manual_seed(0)` then gave our SAE's decoder (and
# any peer's that draws a (latents, d_in) normal first), so it started at the answer
DICT_SEED, TRAIN_SEED, HELDOUT_SEED, MODEL_SEED = 1_000_003, 1, 2, 0
FOUND_AT = 0.9
VENV = "/tmp/peers-venv/bin/pip install -c /tmp/peers-constraints.txt"

# trainer -> (modules it needs, the install command to print when one is missing)
REQUIRES: dict[str, tuple[list[str], str]] = {
    "sae_topk": (["sae.autoencoder", "sae.train_sae"], "echo $PWD > /tmp/peers-venv/lib/python3.11/site-packages/sae-main.pth"),
    "sae_relu": (["sae.autoencoder", "sae.train_sae"], "echo $PWD > /tmp/peers-venv/lib/python3.11/site-packages/sae-main.pth"),
    "sparsify_topk": (["sparsify", "transformers"], f"{VENV} eai-sparsify==1.3.3"),
    "sparsify_topk_signum": (["sparsify", "schedulefree"], f"{VENV} eai-sparsify==1.3.3"),
    "dl_standard": (["dictionary_learning.trainers.standard"],
                    f"{VENV} --no-deps dictionary_learning==0.1.0 nnsight==0.3.7 && {VENV} einops 'python-socketio[client]' pillow transformers accelerate"),
    "dl_topk": (["dictionary_learning.trainers.top_k"],
                f"{VENV} --no-deps dictionary_learning==0.1.0 nnsight==0.3.7 && {VENV} einops 'python-socketio[client]' pillow transformers accelerate"),
    "saelens_standard": (["sae_lens"], f"{VENV} sae-lens==6.54.12"),
    "saelens_standard_lr1e-3": (["sae_lens"], f"{VENV} sae-lens==6.54.12"),
}
PACKAGES = ["torch", "eai-sparsify", "dictionary_learning", "nnsight", "sae-lens", "transformer-lens", "transformers", "schedulefree"]


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
def true_dictionary() -> Tensor:
    D = torch.randn(N_TRUE, D_IN, generator=torch.Generator().manual_seed(DICT_SEED))
    return D / D.norm(dim=1, keepdim=True)


def firing_probs() -> Tensor:
    p = (torch.arange(N_TRUE, dtype=torch.float64) + 1) ** -POWER
    return (p * MEAN_ACTIVE / p.sum()).float()


def sample_rows(D: Tensor, p: Tensor, gen: torch.Generator, n: int) -> Tensor:
    fire = torch.rand(n, N_TRUE, generator=gen) < p
    mags = torch.rand(n, N_TRUE, generator=gen)
    return (mags * fire) @ D


class Stream:
    """Endless training batches from one seeded generator; `gen_s` is the time spent making them."""

    def __init__(self, D: Tensor, p: Tensor, seed: int = TRAIN_SEED):
        self.D, self.p, self.gen, self.gen_s, self.n = D, p, torch.Generator().manual_seed(seed), 0.0, 0

    def __iter__(self) -> Iterator[Tensor]:
        return self

    def __next__(self) -> Tensor:
        t = time.perf_counter()
        x = sample_rows(self.D, self.p, self.gen, BATCH)
        self.gen_s += time.perf_counter() - t
        self.n += 1
        return x


def heldout_rows(D: Tensor, p: Tensor, n: int) -> Tensor:
    gen = torch.Generator().manual_seed(HELDOUT_SEED)
    return torch.cat([sample_rows(D, p, gen, min(10_000, n - i)) for i in range(0, n, 10_000)])


# ------------------------------------------------------------------------------------------------
# Trainers: each trains on `stream` for `steps` steps and returns (encode, decode, decoder rows):
# encode(x) -> dense (n, d_sae) latents, decode(f) -> x̂, decoder rows (d_sae, d_in)
# ------------------------------------------------------------------------------------------------
Model = tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor], Callable[[], Tensor]]


def warmup_steps(steps: int) -> int:
    return max(1, steps // 15)


def train_sae_ours(arch: str, stream: Stream, steps: int) -> Model:
    from sae.autoencoder import SparseAutoencoder, input_scale_for
    from sae.evaluation.compare import recipe
    from sae.train_sae import train_sae

    torch.manual_seed(MODEL_SEED)
    sae_cfg, train_cfg = recipe(arch, steps, {"sae.k": K} if arch == "topk" else {}, d_sae=D_SAE)
    sae = SparseAutoencoder(sae_cfg)
    first = next(stream)
    sae.set_input_scale_(input_scale_for(first))
    train_sae(sae, _chain(first, stream), train_cfg)
    return sae.encode, sae.decode, lambda: sae.W_dec


def _chain(first: Tensor, rest: Iterator[Tensor]) -> Iterator[Tensor]:
    yield first
    yield from rest


def train_sparsify(stream: Stream, steps: int, optimizer: str = "adam") -> Model:
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(MODEL_SEED)
    sae = SparseCoder(D_IN, SparseCoderConfig(num_latents=D_SAE, k=K), device="cpu", dtype=torch.float32)
    # as sparsify.Trainer.__init__ for one SAE
    if optimizer == "adam":
        from transformers import get_linear_schedule_with_warmup

        opt = torch.optim.Adam([dict(params=sae.parameters(), lr=2e-4 / (sae.num_latents / 2**14) ** 0.5)])
        sched = get_linear_schedule_with_warmup(opt, warmup_steps(steps), steps)
    else:
        from schedulefree import ScheduleFreeWrapper
        from sparsify.sign_sgd import SignSGD

        opt = ScheduleFreeWrapper(SignSGD([dict(params=sae.parameters(), lr=5e-3 / (sae.num_latents / 2**14) ** 0.5)]),
                                  momentum=0.95)
        opt.train()
        sched = None
    # as the hook and the step in sparsify.Trainer.fit (loss_fn "fvu", auxk_alpha 0, no multi-TopK)
    for step in range(steps):
        x = next(stream)
        if step == 0:
            sae.b_dec.data = x.mean(0)
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x=x, y=x, dead_mask=None, total_variance=(x - x.mean(0)).pow(2).sum())
        (out.fvu + out.multi_topk_fvu / 8).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        if sched is not None:
            sched.step()
    if sched is None:
        opt.eval()  # schedule-free: the averaged weights, which is what sparsify saves

    def encode(x: Tensor) -> Tensor:
        acts, idx, _ = sae.encode(x)
        return torch.zeros(len(x), D_SAE).scatter_(-1, idx, acts)

    return encode, lambda f: f @ sae.W_dec + sae.b_dec, lambda: sae.W_dec


def train_dl(kind: str, stream: Stream, steps: int, l1: float) -> Model:
    if kind == "standard":
        from dictionary_learning.trainers.standard import StandardTrainer

        trainer = StandardTrainer(steps=steps, activation_dim=D_IN, dict_size=D_SAE, layer=0, lm_name="synthetic",
                                  l1_penalty=l1, warmup_steps=warmup_steps(steps),
                                  sparsity_warmup_steps=warmup_steps(steps), resample_steps=max(2, steps // 5),
                                  seed=MODEL_SEED, device="cpu")
    else:
        from dictionary_learning.trainers.top_k import TopKTrainer

        trainer = TopKTrainer(steps=steps, activation_dim=D_IN, dict_size=D_SAE, k=K, layer=0, lm_name="synthetic",
                              warmup_steps=warmup_steps(steps), seed=MODEL_SEED, device="cpu")
    for step in range(steps):  # as dictionary_learning.training.trainSAE (fp32, no activation normalisation)
        trainer.update(step, next(stream))
    ae = trainer.ae
    return ae.encode, ae.decode, lambda: ae.decoder.weight.T


def train_saelens(stream: Stream, steps: int, l1: float, lr: float = 3e-4) -> Model:
    from sae_lens import SAETrainer, StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig

    torch.manual_seed(MODEL_SEED)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=l1))
    # the trainer settings of sae_lens.synthetic.train_toy_sae (SAELens' own loop for synthetic data)
    cfg = SAETrainerConfig(total_training_samples=steps * BATCH, train_batch_size_samples=BATCH, device="cpu",
                           lr=lr, lr_end=lr, lr_scheduler_name="constant", lr_warm_up_steps=0, lr_decay_steps=0,
                           n_checkpoints=0, checkpoint_path=None, save_final_checkpoint=False,
                           logger=LoggingConfig(log_to_wandb=False))
    SAETrainer(cfg=cfg, sae=sae, data_provider=stream).fit()
    sae.eval()
    return sae.encode, sae.decode, lambda: sae.W_dec


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: Model, x: Tensor, D: Tensor) -> dict:
    encode, decode, decoder = model
    err = l0 = 0.0
    fired = torch.zeros(D_SAE, dtype=torch.bool)
    for chunk in x.split(10_000):
        f = encode(chunk)
        err += (chunk - decode(f)).pow(2).sum().item()
        l0 += (f > 0).sum().item()
        fired |= (f > 0).any(0)
    W = decoder().detach().float()
    assert W.shape == (D_SAE, D_IN), W.shape
    best = (D @ torch.nn.functional.normalize(W, dim=1).T).max(dim=1).values
    return {"fvu": err / (x - x.mean(0)).pow(2).sum().item(), "l0": l0 / len(x),
            "dead_frac": 1 - fired.float().mean().item(), "mmcs": best.mean().item(),
            "found_frac": (best >= FOUND_AT).float().mean().item()}


def available(name: str) -> bool:
    modules, install = REQUIRES[name]
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as e:  # an ImportError, or a peer whose import chain breaks on a dependency
            print(f"skipping {name}: cannot import {module} ({type(e).__name__}: {e}); install with: {install}",
                  flush=True)
            return False
    return True


def versions() -> dict:
    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def main(argv: list[str] | None = None) -> None:
    ap = Parser(prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trainers", default=",".join(REQUIRES), help=f"comma-separated, from {', '.join(REQUIRES)}")
    ap.add_argument("--steps", type=positive_int, default=1500, help="training steps of 1,024 rows (default 1500)")
    ap.add_argument("--heldout", type=positive_int, default=100_000, help="held-out rows (default 100,000)")
    ap.add_argument("--quick", action="store_true", help="10 steps, 4,096 held-out rows, 1 thread: a test that it runs")
    ap.add_argument("--l1-dl", type=positive_float, default=0.55, help="dictionary_learning StandardTrainer l1_penalty (raw units)")
    ap.add_argument("--l1-saelens", type=positive_float, default=0.5, help="SAELens StandardTrainingSAE l1_coefficient (raw units)")
    ap.add_argument("--threads", type=positive_int, default=None, help="torch threads (default 2; 1 with --quick)")
    ap.add_argument("--out", type=Path, default=None, help="also write the results here as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.heldout = 10, 4096
    names = [n.strip() for n in args.trainers.split(",") if n.strip()]
    unknown = [n for n in names if n not in REQUIRES]
    if unknown:
        ap.error(f"unknown trainers {unknown}; choose from {list(REQUIRES)}")

    # read by the peers when they are imported (in `available`): no progress bars, no wandb
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    torch.set_num_threads(args.threads or (1 if args.quick else 2))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps} steps x {BATCH} rows = "
          f"{args.steps * BATCH / 1e6:.3f}M training rows; {args.heldout:,} held-out rows", flush=True)
    D, p = true_dictionary(), firing_probs()
    x_test = heldout_rows(D, p, args.heldout)
    print(f"data: {N_TRUE} true directions in d_in {D_IN}, E[active] {p.sum():.1f} (max p {p.max():.2f}), "
          f"mean ‖x‖ {x_test.norm(dim=1).mean():.2f}; {D_SAE} latents", flush=True)

    runners: dict[str, Callable[[Stream, int], Model]] = {
        "sae_topk": lambda s, n: train_sae_ours("topk", s, n),
        "sae_relu": lambda s, n: train_sae_ours("relu", s, n),
        "sparsify_topk": lambda s, n: train_sparsify(s, n, "adam"),
        "sparsify_topk_signum": lambda s, n: train_sparsify(s, n, "signum"),
        "dl_standard": lambda s, n: train_dl("standard", s, n, args.l1_dl),
        "dl_topk": lambda s, n: train_dl("topk", s, n, args.l1_dl),
        "saelens_standard": lambda s, n: train_saelens(s, n, args.l1_saelens),
        "saelens_standard_lr1e-3": lambda s, n: train_saelens(s, n, args.l1_saelens, lr=1e-3),
    }
    results = []
    for name in names:
        if not available(name):
            continue
        stream = Stream(D, p)
        t = time.perf_counter()
        model = runners[name](stream, args.steps)
        train_s = time.perf_counter() - t - stream.gen_s
        row = {"trainer": name, **evaluate(model, x_test, D), "train_s": train_s,
               "tokens_per_s": args.steps * BATCH / train_s, "batches_drawn": stream.n}
        results.append(row)
        print(f"{name}: FVU {row['fvu']:.4f}, L0 {row['l0']:.2f}, dead {row['dead_frac']:.1%}, MMCS {row['mmcs']:.3f}, "
              f"found {row['found_frac']:.1%}, {row['tokens_per_s']:,.0f} tok/s ({train_s:.1f} s)", flush=True)

    print("\n| trainer | FVU | L0 | dead | MMCS | found (cos ≥ 0.9) | tokens/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['trainer']} | {r['fvu']:.4f} | {r['l0']:.2f} | {r['dead_frac']:.1%} | {r['mmcs']:.3f} "
              f"| {r['found_frac']:.1%} | {r['tokens_per_s']:,.0f} |")

    if args.out is not None:
        payload = {"config": {"steps": args.steps, "batch": BATCH, "d_in": D_IN, "d_sae": D_SAE, "n_true": N_TRUE,
                              "k": K, "mean_active": MEAN_ACTIVE, "power": POWER, "heldout": args.heldout,
                              "threads": torch.get_num_threads(), "l1_dl": args.l1_dl, "l1_saelens": args.l1_saelens},
                   "versions": versions(), "python": sys.version.split()[0], "results": results}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=args.out.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f, indent=2)
            os.replace(tmp, args.out)
        except BaseException:
            os.unlink(tmp)
            raise
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
