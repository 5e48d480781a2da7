"""Architectures side by side: on a toy task with a known dictionary, and on one model's activations.

1. `toy_recovery`: train an architecture on an instance of a synthetic task (Sharkey et al.
   2022; `TOY_TASKS`, about 10 of 512 directions active per row) and measure how much of the true
   dictionary it found:
       MMCS   mean over true directions of the best cosine with any decoder row
       found  share of true directions with a decoder row at cosine >= 0.9
   with FVU, L0 and dead latents on held-out rows, and the one-to-one measures of
   `sae.evaluation.matching` (MCC, uniqueness, firing precision/recall, absorption)
   (`benchmarks/bench_recovery.py` runs it).
2. `train_variants` + `compare_variants`: SAEs of several architectures trained on *the same*
   cached activations of a run's site (one `write_cache`: only the architecture differs), then
   evaluated on the same held-out text with everything `metrics.json` holds.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder, input_scale_for
from sae.evaluation import concepts, ground_truth, matching, reconstruction
from sae.evaluation.evaluate import evaluate, held_out_pass
from sae.evaluation.formulas import fvu, l0
from sae.buffer import CachedActivations, cache_header_path, write_cache
from sae.world.corpus import CONCEPTS
from sae.world.toy import SyntheticActivations, SyntheticConfig, max_cosine
from sae.train_sae import TrainSAEConfig, sae_schedule, train_sae

TOY_TASK = SyntheticConfig(n_features=512, d=128, power=0.7, mean_active=10.0, seed=0)
# The task's variants: magnitudes on [0, 1] put many true activations near 0, where any threshold
# cuts them; [0.5, 1.5] keeps the same mean. The hierarchy: 16 parents (the most common features),
# 4 children each that fire only with their parent, so absorption can be counted exactly.
TOY_TASKS = {"flat": TOY_TASK, "bounded": replace(TOY_TASK, magnitude=(0.5, 1.5)),
             "hierarchy": replace(TOY_TASK, magnitude=(0.5, 1.5), n_parents=16, n_children=4)}
# Each architecture's settings on the toy task ("sae.FIELD" / "train_sae.FIELD": value), on top of
# `sae_schedule(n_steps)`. Why a small initial encoder: it starts as W_dec.T, and from unit rows
# every pre-activation starts ~N(0, 1), half the latents fire on every row and they end quiet and
# random; from rows of norm 0.1 each decoder row pulls towards the inputs it fires on and locks onto
# one direction. relu_april (default 0.1) needs 0.01 (bench_recovery --set sae.decoder_init_norm=1).
# Why BatchTopK and Matryoshka need a stronger, earlier AuxK than TopK: TopK gives each row's spare
# slots (k minus the row's true features) to the latents best aligned with *that row*, so a latent
# near a rare feature is picked on the rare feature's rows and learns it. BatchTopK gives the
# batch's spare slots to the largest pre-activations anywhere, mostly second latents on common
# features; a latent near a rare feature is rarely picked, and only AuxK can teach it. With α =
# 1/32 after 150 silent steps the rare third of the features ended at MCC 0.66 (common 0.98);
# with α = 1/4 after 30 steps, 0.96 (docs/todays-saes.md has the sweep). JumpReLU needs AuxK too,
# and strong: its L0 penalty shuts down every latent that duplicates a found feature (1,024 latents,
# 512 features), and AuxK keeps reviving them. On instance 0 of "bounded", after 150 silent steps:
# α = 1/32, MMCS 0.91 with 41% dead; 1: 0.99, 29%; 4: 0.99, 20%; 16: 0.96, 8%; 32: 0.91, 6%; and
# α = 16 after 30 steps: 0.98, 4%.
_BATCH_TOPK = {"sae.k": 16, "train_sae.lr": 3e-3, "train_sae.dead_window": 30, "sae.aux_coeff": 0.25}
TOY_RECIPES = {
    "relu": {"train_sae.l1_coeff": 3.2, "train_sae.lr": 3e-3, "sae.decoder_init_norm": 0.1},
    "relu_april": {"train_sae.l1_coeff": 3.2, "train_sae.lr": 3e-3, "sae.decoder_init_norm": 0.01},
    "topk": {"sae.k": 16}, "batchtopk": _BATCH_TOPK, "matryoshka": _BATCH_TOPK,
    "jumprelu": {"train_sae.l1_coeff": 1.0, "train_sae.lr": 3e-3, "sae.decoder_init_norm": 0.1, "sae.aux_coeff": 16.0,
                 "train_sae.dead_window": 30},
}


def recipe(arch: str, n_steps: int, settings: dict[str, str] | None = None, d_sae: int = 1024,
           seed: int = 0) -> tuple[SAEConfig, TrainSAEConfig]:
    """The configs for `arch` on the toy task: `sae_schedule(n_steps)` with `TOY_RECIPES[arch]`, then
    `settings` ("sae.FIELD" or "train_sae.FIELD" -> a value, parsed as the field's type) on top."""
    sae_cfg = SAEConfig(d_in=TOY_TASK.d, d_sae=d_sae, arch=arch)
    train_cfg = sae_schedule(n_steps, log_every=0, checkpoint_every=0, seed=seed)
    for key, value in {**TOY_RECIPES[arch], **(settings or {})}.items():
        where, field = key.split(".", 1)
        if where == "sae":
            sae_cfg = _set(sae_cfg, field, value)
        else:
            train_cfg = _set(train_cfg, field, value)
    return sae_cfg, train_cfg


def _set(cfg, key: str, value):
    """cfg with field `key` set from `value` (text is parsed as the field's current type)."""
    old = getattr(cfg, key)
    if isinstance(value, str):
        value = (value.lower() in ("1", "true", "yes") if isinstance(old, bool) else
                 type(old)(float(value)) if isinstance(old, (int, float)) else
                 tuple(int(v) for v in value.split(",") if v) if isinstance(old, tuple) else value)
    return replace(cfg, **{key: value})


def toy_recovery(sae_cfg: SAEConfig, train_cfg, n_eval: int = 100_000, batch: int = 1024, task_seed: int = 0,
                 task: SyntheticConfig = TOY_TASK) -> dict:
    """Train an SAE (`sae_cfg`, `train_cfg`; seeded by `train_cfg.seed`) on instance `task_seed`
    of `task` and measure it: FVU, L0 and dead share on `n_eval` held-out rows, MMCS and found
    against the true dictionary, `matching.recovery`'s one-to-one measures, the training rows per
    second (the batches are made before the clock starts) and the share of steps that ran AuxK."""
    data = SyntheticActivations(replace(task, seed=task_seed))
    seed = train_cfg.seed
    sae = SparseAutoencoder(sae_cfg, generator=torch.Generator().manual_seed(seed))
    extra = len(train_cfg.resample_steps) * -(-train_cfg.resample_inputs // batch)  # resampling's draws
    batches = list(itertools.islice(data.batches(batch, seed=seed + 1), train_cfg.n_steps + extra))
    sae.set_input_scale_(input_scale_for(batches[0]))
    t = time.perf_counter()
    hist = train_sae(sae, iter(batches), train_cfg)
    seconds = time.perf_counter() - t
    x, coeffs = data.sample(n_eval, torch.Generator().manual_seed(10_000 + seed))
    with torch.no_grad():
        f = torch.cat([sae.encode(c) for c in x.split(8192)])
        x_hat = torch.cat([sae.decode(c) for c in f.split(8192)])
        cos = max_cosine(sae.W_dec, data.dictionary)
    return {"arch": sae_cfg.arch, "task_seed": task_seed, "seed": seed, "fvu": fvu(x, x_hat),
            "l0": l0(f), "dead": (f.amax(0) <= 0).float().mean().item(), "mmcs": cos.mean().item(),
            "found": (cos >= 0.9).float().mean().item(),
            **matching.recovery(sae.W_dec, data.dictionary, f, coeffs, data.probs, data.parents),
            "tokens_per_s": train_cfg.n_steps * batch / seconds, "seconds": seconds,
            "aux_steps": sum(h.get("aux", 0) > 0 for h in hist) / train_cfg.n_steps}


def train_variants(model, tokens: np.ndarray, site: str, out_dir: str | Path, variants: dict[str, dict],
                   d_sae: int = 1024, n_tokens: int = 1_000_000, batch_size: int = 4096, lr: float = 3e-3,
                   seed: int = 0, log_lines: int = 4, announce: bool = True) -> dict[str, Path]:
    """One SAE per variant on the same cached activations of `site` (`out_dir/acts.npy`, from
    `n_tokens` of `tokens`), into `out_dir/NAME.pt`; returns {name: path}. A variant is a dict of
    SAEConfig fields (`arch`, `k`, `d_sae`...) and `l1_coeff`; its training prints `log_lines`
    progress lines (after its settings, with `announce`). Resumable: what `out_dir` has is kept."""
    out_dir = Path(out_dir)
    cache = out_dir / "acts.npy"
    if not cache_header_path(cache).exists():  # no cache, or one cut short before its header
        write_cache(cache, model, tokens, site, n_tokens, seed=seed)
    paths = {}
    for name, v in variants.items():
        path = out_dir / f"{name}.pt"
        if not path.exists():
            acts = CachedActivations(cache, model, site, batch_size=min(batch_size, n_tokens // 2), seed=seed)
            fields = {"d_in": acts.d_in, "d_sae": d_sae, "site": site, **v}
            l1 = fields.pop("l1_coeff", 0.0)
            sae = SparseAutoencoder(SAEConfig(**fields), torch.Generator().manual_seed(seed))
            sae.set_input_scale_(acts.estimate_scale())
            steps = max(n_tokens // acts.batch_size, 1)
            if announce:
                print(f"{name}: {v}")
            train_sae(sae, acts, sae_schedule(steps, lr=lr, seed=seed, checkpoint_every=0,
                                              l1_coeff=l1, log_every=max(steps // log_lines, 1)))
            sae.save(path)
        paths[name] = path
    return paths


def compare_variants(model, saes: dict[str, SparseAutoencoder], tokens: np.ndarray, labels: np.ndarray,
                     n_eval: int = 100_000) -> dict[str, dict]:
    """Per SAE, the headline numbers of `metrics.json` (its evaluation analyses) on the same
    `n_eval` held-out tokens."""
    if labels is None:
        raise ValueError("compare_variants needs the concept labels of `tokens` (the toy corpus): "
                         "absorption and the probes are measured against them")
    out = {}
    for name, sae in saes.items():
        p = held_out_pass(model, sae, tokens, labels, n_eval, CONCEPTS, log=False)
        r = evaluate(p, [reconstruction, concepts, ground_truth])
        s, d, g = r["sae"], r["concepts"].detectors, r["ground_truth"]
        out[name] = {"arch": s.arch, "l0": s.l0, "fvu": s.fvu, "ce_recovered": s.ce_recovered_zero,
                     "dead": s.dead_fraction, "detectors": d["features"], "of": d["of"],
                     "absorbed": g.absorbed, "silent": g.silent,
                     "probe_features": g.sparse_probing["features"], "probe_neurons": g.sparse_probing["neurons"]}
    return out
