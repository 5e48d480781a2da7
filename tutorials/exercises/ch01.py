"""Chapter 1's exercises: write the SAE's forward pass and loss; does an SAE still recover the
true dictionary when features fire together?"""

from __future__ import annotations

from dataclasses import replace

import torch

from exercises import MathsExercise, open_exercise, verdict
from sae.autoencoder import SparseAutoencoder
from sae.world.toy import SyntheticActivations, SyntheticConfig, mmcs

CORRELATION = 0.5


# ----------------------------------------------------------------------------- write the maths
def _forward(x, W_enc, b_enc, W_dec, b_dec, l1_coeff):
    f = torch.relu((x - b_dec) @ W_enc + b_enc)
    x_hat = f @ W_dec + b_dec
    loss = (x - x_hat).pow(2).sum(-1).mean() + l1_coeff * (f * W_dec.norm(dim=1)).sum(-1).mean()
    return f, x_hat, loss


def _with(f=None, x_hat=None, loss=None):
    """A wrong forward pass: the right one with some of its steps replaced."""
    def wrong(x, W_enc, b_enc, W_dec, b_dec, l1_coeff):
        acts = f(x, W_enc, b_enc, b_dec) if f else torch.relu((x - b_dec) @ W_enc + b_enc)
        rec = x_hat(acts, W_dec, b_dec) if x_hat else acts @ W_dec + b_dec
        total = loss(x, acts, rec, W_dec, l1_coeff) if loss else \
            (x - rec).pow(2).sum(-1).mean() + l1_coeff * (acts * W_dec.norm(dim=1)).sum(-1).mean()
        return acts, rec, total
    return wrong


def _cases():
    g = torch.Generator().manual_seed(1)
    out = []
    for batch, d_in, d_sae in ((5, 4, 7), (9, 6, 12)):
        W_dec = torch.randn(d_sae, d_in, generator=g) * (0.5 + torch.rand(d_sae, 1, generator=g))  # rows not unit norm
        out.append(dict(x=torch.randn(batch, d_in, generator=g), W_enc=torch.randn(d_in, d_sae, generator=g),
                        b_enc=torch.randn(d_sae, generator=g) * 0.3, W_dec=W_dec,
                        b_dec=torch.randn(d_in, generator=g), l1_coeff=0.7))
    return out


SAE_FORWARD = MathsExercise(
    "01_superposition", "sae_forward", _forward, _cases, mistakes={
        "b_dec is not subtracted before encoding: f = ReLU((x - b_dec) @ W_enc + b_enc)":
            _with(f=lambda x, W_enc, b_enc, b_dec: torch.relu(x @ W_enc + b_enc)),
        "f can be negative: the ReLU is missing":
            _with(f=lambda x, W_enc, b_enc, b_dec: (x - b_dec) @ W_enc + b_enc),
        "the reconstruction misses b_dec: x̂ = f @ W_dec + b_dec":
            _with(x_hat=lambda f, W_dec, b_dec: f @ W_dec),
        "the squared error is averaged over the coordinates too (F.mse_loss): sum ‖x - x̂‖² over "
        "the d_in coordinates, then average over the batch":
            _with(loss=lambda x, f, x_hat, W_dec, l1: (x - x_hat).pow(2).mean() + l1 * (f * W_dec.norm(dim=1)).sum(-1).mean()),
        "the L1 penalty ignores the decoder norms: Σ_i f_i ‖W_dec[i]‖ (otherwise shrinking a row buys sparsity)":
            _with(loss=lambda x, f, x_hat, W_dec, l1: (x - x_hat).pow(2).sum(-1).mean() + l1 * f.sum(-1).mean()),
        "the L1 penalty is λ Σ f_i², not λ Σ f_i ‖W_dec[i]‖":
            _with(loss=lambda x, f, x_hat, W_dec, l1: (x - x_hat).pow(2).sum(-1).mean() + l1 * (f.pow(2) * W_dec.norm(dim=1)).sum(-1).mean()),
    })


# ------------------------------------------------------------------------- vary the experiment
class _Recorded:
    """The data passed to the student's function, counting what is drawn from it for training."""

    def __init__(self, data: SyntheticActivations):
        self.data, self.trained_on = data, 0

    def __getattr__(self, name):
        return getattr(self.data, name)

    def batches(self, *args, **kw):
        for x in self.data.batches(*args, **kw):
            self.trained_on += len(x)
            yield x


def check_correlated(train_correlated, world: SyntheticConfig, uncorrelated: float,
                     correlation: float = CORRELATION) -> bool | None:
    """`train_correlated(data)`: trains the chapter's largest ReLU SAE (2 × world.n_features
    features) on `data.batches(...)` and returns it. The check calls it with the correlated data
    (`SyntheticActivations(replace(world, correlation=0.5))`), counts the samples it trains on,
    recomputes the MMCS against the true dictionary (correlation changes when features fire, not
    their directions) and compares it with `uncorrelated`, the chapter's MMCS without correlation."""
    data = _Recorded(SyntheticActivations(replace(world, correlation=correlation)))
    sae = train_correlated(data)
    if open_exercise(sae, "01_superposition"):
        return None
    if not isinstance(sae, SparseAutoencoder):
        return verdict(False, f"return the trained SparseAutoencoder, not a {type(sae).__name__}")
    if data.trained_on < 50 * 256:
        return verdict(False, f"the SAE trained on {data.trained_on} samples of the data it was given: train it on "
                              "`data.batches(...)`, the correlated activations (not `data` of section 2, which is "
                              "uncorrelated)")
    want = (world.d, 2 * world.n_features)
    if (sae.cfg.d_in, sae.cfg.d_sae) != want:
        return verdict(False, f"the SAE has d_in={sae.cfg.d_in}, d_sae={sae.cfg.d_sae}; the largest dictionary of "
                              f"the chapter has d_in={want[0]}, d_sae={want[1]} (twice the true features)")
    x = data.sample(4096, torch.Generator().manual_seed(12345))[0]
    with torch.no_grad():
        x_hat = sae.decode(sae.encode(x))
    fvu = ((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    if fvu > 0.5:
        return verdict(False, f"the SAE reconstructs correlated activations poorly (FVU {fvu:.2f} > 0.5): "
                              "was its input scale set from a sample of the data, and has it been trained?")
    score = mmcs(sae.W_dec, data.dictionary)
    print(f"MMCS with correlation {correlation}: {score:.4f}; without: {uncorrelated:.4f} "
          f"({score - uncorrelated:+.4f}); FVU on correlated samples {fvu:.3f}; trained on {data.trained_on:,} samples")
    return verdict(True, f"a {want[1]}-feature SAE trained on correlated features: its MMCS "
                         f"{'stays above' if score > 0.9 else 'falls below'} 0.9 ({score:.3f})")
