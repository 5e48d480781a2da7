"""Answers to chapter 9's exercises (run from anywhere; `SAE_FAST=1` uses the smoke run).
Reuses the chapter's dictionaries in the run's `splitting/` folder (trains them if missing)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

from common import FAST, PRESET, RUN  # noqa: E402
import exercises.ch09  # noqa: E402
from sae.autoencoder import SparseAutoencoder  # noqa: E402
from sae.run import corpus_tokens, load_run, reproduce  # noqa: E402
from sae.evaluation.splitting import split_concepts, train_dictionaries  # noqa: E402

reproduce(PRESET, RUN, until="lm")
tok, model = load_run(RUN)
train_tokens, _ = corpus_tokens(PRESET, tok, "train", PRESET.lm_train_tokens)
n_eval = 8_000 if FAST else 100_000
val_tokens, val_labels = corpus_tokens(PRESET, tok, "val", n_eval + model.cfg.n_ctx)
sizes = (64, 128, 256) if FAST else (256, 512, 1024, 2048)
paths = train_dictionaries(model, train_tokens, PRESET.sae.site, RUN / "splitting", sizes=sizes,
                           n_tokens=60_000 if FAST else 1_000_000, batch_size=1024 if FAST else 4096,
                           l1_coeff=PRESET.train_sae.l1_coeff, lr=PRESET.train_sae.lr, seed=PRESET.seed)
saes = {s: SparseAutoencoder.load(p, device="cpu") for s, p in paths.items()}
res = split_concepts(model, saes, val_tokens, val_labels, n_eval=n_eval)


def parents(W_dec_small, W_dec_large):
    """For each feature of the large dictionary, its nearest feature of the small one by cosine."""
    unit_small = W_dec_small / W_dec_small.norm(dim=1, keepdim=True)
    unit_large = W_dec_large / W_dec_large.norm(dim=1, keepdim=True)
    cos = unit_large @ unit_small.T  # (d_large, d_small)
    return cos.argmax(dim=1), cos.max(dim=1).values


assert exercises.ch09.PARENTS.check(parents)


def largest_family(res: dict) -> str:
    big = res["sizes"][-1]
    by_size = sorted(res["concepts"], key=lambda name: (-len(res["concepts"][name]["family"][big]), name))
    return by_size[0]  # the most descendants; on a tie, the first name alphabetically


assert exercises.ch09.check(largest_family(res), res, model, saes[sizes[-1]], tok, val_tokens, val_labels, n_eval)
