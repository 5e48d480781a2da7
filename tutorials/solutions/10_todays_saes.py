"""Answers to chapter 10's exercises (run from anywhere; `SAE_FAST=1` uses the smoke run).
Reuses the chapter's SAEs in the run's `architectures/` folder (trains them if missing)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

import torch  # noqa: E402

from common import FAST, PRESET, RUN  # noqa: E402
import exercises.ch10  # noqa: E402
from sae.autoencoder import SparseAutoencoder  # noqa: E402
from sae.evaluation.compare import compare_variants, train_variants  # noqa: E402
from sae.run import corpus_tokens, load_run, reproduce  # noqa: E402


def batchtopk(pre, k):
    """Keep the k·B largest ReLU'd pre-activations of the whole batch, zero the rest."""
    f = torch.relu(pre)
    flat = f.reshape(-1)
    kept = torch.zeros_like(flat)
    top = torch.topk(flat, k * pre.shape[0])
    kept[top.indices] = top.values
    return kept.reshape(f.shape)


assert exercises.ch10.BATCHTOPK.check(batchtopk)

reproduce(PRESET, RUN, until="lm")
tok, model = load_run(RUN)
train_tokens, _ = corpus_tokens(PRESET, tok, "train", PRESET.lm_train_tokens)
n_val = 8_000 if FAST else 100_000
val_tokens, val_labels = corpus_tokens(PRESET, tok, "val", n_val + model.cfg.n_ctx)
variants = {"topk": dict(arch="topk", k=17), "batchtopk": dict(arch="batchtopk", k=17),
            "matryoshka": dict(arch="matryoshka", k=17)}  # the chapter's (so its SAEs are reused)
paths = train_variants(model, train_tokens, PRESET.sae.site, RUN / "architectures", variants, d_sae=PRESET.sae.d_sae,
                       n_tokens=60_000 if FAST else 1_000_000, batch_size=1024 if FAST else 4096,
                       lr=PRESET.train_sae.lr, seed=PRESET.seed)
rows = compare_variants(model, {n: SparseAutoencoder.load(p, device="cpu") for n, p in paths.items()},
                        val_tokens, val_labels, n_eval=n_val)


def least_absorbed(rows: dict) -> str:
    best = min(r["fvu"] for r in rows.values())
    close = sorted(name for name, r in rows.items() if r["fvu"] <= best + 0.05)
    return min(close, key=lambda name: rows[name]["absorbed"])  # sorted first: ties go to the first name


assert exercises.ch10.check(least_absorbed(rows), rows)
