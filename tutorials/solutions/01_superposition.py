"""Answers to chapter 1's exercises (run from anywhere; `SAE_FAST=1` uses the chapter's fast sizes)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

from dataclasses import replace  # noqa: E402

import torch  # noqa: E402

from common import FAST  # noqa: E402
import exercises.ch01  # noqa: E402
from sae.autoencoder import SAEConfig, SparseAutoencoder, input_scale_for  # noqa: E402
from sae.world.toy import SyntheticActivations, SyntheticConfig, mmcs  # noqa: E402
from sae.train_sae import TrainSAEConfig, train_sae  # noqa: E402

# the chapter's section 2: the world, the SAE's size (twice the true features) and its training
if FAST:
    world = SyntheticConfig(n_features=64, d=32, decay=0.97, mean_active=3)
    d_sae, steps, batch = 128, 300, 256
else:
    world = SyntheticConfig(n_features=512, d=256)
    d_sae, steps, batch = 1024, 2400, 256


def train_on(data: SyntheticActivations) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=world.d, d_sae=d_sae, arch="relu", decoder_init_norm=0.1),
                            generator=torch.Generator().manual_seed(0))
    sae.set_input_scale_(input_scale_for(data.sample(4096, torch.Generator().manual_seed(99))[0]))
    train_sae(sae, data.batches(batch, seed=1), TrainSAEConfig(n_steps=steps, lr=3e-3, l1_coeff=2.0, log_every=0))
    return sae


plain = SyntheticActivations(world)
score = mmcs(train_on(plain).W_dec, plain.dictionary)  # the chapter's `score`




def sae_forward(x, W_enc, b_enc, W_dec, b_dec, l1_coeff):
    """The SAE's forward pass and loss: (f, x_hat, loss)."""
    f = torch.relu((x - b_dec) @ W_enc + b_enc)
    x_hat = f @ W_dec + b_dec
    l1 = (f * W_dec.norm(dim=1)).sum(dim=1).mean()
    return f, x_hat, ((x - x_hat) ** 2).sum(dim=1).mean() + l1_coeff * l1


assert exercises.ch01.SAE_FORWARD.check(sae_forward)


def train_correlated(data: SyntheticActivations) -> SparseAutoencoder:
    """The SAE of section 2, trained on `data`."""
    return train_on(data)


assert exercises.ch01.check_correlated(train_correlated, world, uncorrelated=score)

if not FAST:  # what the chapter's "what to look for" says
    sae = train_correlated(SyntheticActivations(replace(world, correlation=0.5)))
    correlated_score = mmcs(sae.W_dec, plain.dictionary)
    assert correlated_score > 0.9 and abs(correlated_score - score) < 0.02, (correlated_score, score)
