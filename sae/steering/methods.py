"""The steering methods the benchmark compares (`sae.steering.benchmark`), and one hook that edits each
row of a batch its own way, so that every method and strength samples in the same batch.

Each method is a `Handle` on the activation x at the SAE's site, applied at every position:

    clamp    x' = x + (v − r(x)) · w     a unit set to the value v = strength × its max activation:
                                         an SAE feature (r = encode_i(x), w = W_dec[i] / s: the clamp of
                                         `clamp_features`, error term kept) or an MLP neuron (r = x_n, w = e_n);
                                         several features: the sum of their edits
    add      x' = x + α · u              a unit direction u at the norm α = strength × ρ, where ρ is the
                                         mean norm of x on held-out text
    prompt   no edit: a sentence of the concept is put before the prompt

The directions u (`fit_directions`, on held-out labelled activations X with concept labels y):
    DiffMean     mean(X | y = c) − mean(X | y ≠ c)                    (AxBench's strongest baseline)
    probe        w of a logistic regression  p(y = c | x) = σ(w·x + b), fitted on X
    SAE add      W_dec[i], the decoder direction of a feature chosen as for the clamp
    random       random directions (seeded): the control, which should steer nothing
The SAE candidates come from detection (the concept's detector features, as the Golden Gate demo)
or from their output (`output_scores`, Arad et al. 2025): what a feature's decoder direction does
to the logits of the concept's own tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from sae.interpret import logit_weights


@dataclass
class Handle:
    """One thing to steer with: a unit to clamp, a direction to add, or a sentence to prompt with."""

    method: str  # the method's name in the benchmark
    kind: str  # "feature" | "neuron" (clamped) | "features" (several clamped together) | "add" | "prompt"
    label: str  # what it is, for the report ("feature 848", "neuron 17", "DiffMean")
    unit: int = -1  # the feature or neuron
    scale: float = 1.0  # a strength of 1: the unit's max activation (clamp) or ρ (add)
    direction: Tensor | None = None  # (d_in,) unit vector (add)
    parts: list = field(default_factory=list)  # [(feature handle, its strength)] ("features")


def row_edit(sae, rows: list[tuple[Handle, float] | None]):
    """A hook `fn(x) -> x'` for `GPT.hooks` that edits row r of a (len(rows), T, d_in) activation
    with rows[r] = (handle, strength), as the module docstring says; a None row (or a "prompt"
    handle) is left as it is. A "features" handle clamps its parts together, part j at strength
    × its own strength (every unit read from the unedited x, as `clamp_features` does)."""
    edits = [[] if row is None or row[0].kind == "prompt" else
             [(p, row[1] * s) for p, s in row[0].parts] if row[0].kind == "features" else [row] for row in rows]
    slots = [_slot(sae, [e[k] if k < len(e) else None for e in edits]) for k in range(max(map(len, edits), default=0))]

    def fn(x: Tensor) -> Tensor:
        xf = x.float()
        return (xf + sum((slot(xf) for slot in slots), torch.zeros_like(xf))).to(x.dtype)
    return fn


def _slot(sae, rows: list[tuple[Handle, float] | None]):
    """One edit per row (or None): fn(x) -> the change (v − r(x)) · w of each row."""
    d, dev = sae.cfg.d_in, sae.W_dec.device
    w, v = torch.zeros(len(rows), d, device=dev), torch.zeros(len(rows), device=dev)
    feature, neuron = torch.full((len(rows),), -1, device=dev), torch.full((len(rows),), -1, device=dev)
    for r, row in enumerate(rows):
        if row is None:
            continue
        h, strength = row
        if h.kind == "add":
            w[r], v[r] = h.direction.to(dev) * strength * h.scale, 1.0
        elif h.kind == "feature":
            w[r], v[r], feature[r] = sae.W_dec[h.unit].detach() / sae.input_scale, strength * h.scale, h.unit
        elif h.kind == "neuron":
            w[r, h.unit], v[r], neuron[r] = 1.0, strength * h.scale, h.unit
        else:
            raise ValueError(f"unknown handle kind {h.kind!r}: feature, features, neuron, add or prompt")
    ids = sorted(set(feature[feature >= 0].tolist()))
    col = torch.tensor([ids.index(i) if i >= 0 else 0 for i in feature.tolist()], device=dev)

    def change(xf: Tensor) -> Tensor:
        read = torch.zeros(xf.shape[:-1], device=xf.device)  # (B, T) the clamped unit's activation
        if ids:
            f = sae.encode(xf, ids)  # (B, T, n_ids)
            picked = f.gather(-1, col[:, None, None].expand(-1, f.shape[1], 1))[..., 0]
            read = torch.where((feature >= 0)[:, None], picked, read)
        if (neuron >= 0).any():
            picked = xf.gather(-1, neuron.clamp_min(0)[:, None, None].expand(-1, xf.shape[1], 1))[..., 0]
            read = torch.where((neuron >= 0)[:, None], picked, read)
        return (v[:, None] - read)[..., None] * w[:, None, :]
    return change


def fit_directions(x: Tensor, labels: Tensor, n_concepts: int, steps: int = 300, l2: float = 1e-3,
                   seed: int = 0, n_random: int = 4) -> dict[str, Tensor]:
    """{"diffmean", "probe"}: (n_concepts, d) unit directions from held-out activations x (n, d) with
    concept labels (n,) (−1: none), and "random": (n_concepts, n_random, d) random unit directions
    (seeded). The probes are one-vs-rest logistic regressions on standardised x (full-batch Adam, L2
    penalty `l2`), mapped back to x's units."""
    x = x.float()
    onehot = torch.stack([labels == c for c in range(n_concepts)], 1).float()  # (n, C)
    inside = onehot.T @ x / onehot.sum(0).clamp_min(1)[:, None]
    outside = (1 - onehot).T @ x / (1 - onehot).sum(0).clamp_min(1)[:, None]
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mu) / sd
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(x.shape[1], n_concepts, requires_grad=True)
    b = torch.zeros(n_concepts, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, onehot) + l2 * (w ** 2).sum()
            loss.backward()
            opt.step()
    probe = (w.detach() / sd[:, None]).T  # w·z = (w / sd)·x + const
    random = torch.randn(n_concepts, n_random, x.shape[1], generator=g)
    return {name: t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            for name, t in (("diffmean", inside - outside), ("probe", probe), ("random", random))}


def concept_tokens(tokens: np.ndarray, labels: np.ndarray, concept: int, purity: float = 0.8,
                   min_count: int = 5, k: int = 30) -> list[int]:
    """The concept's own tokens: of the tokens seen at least `min_count` times with its label, the
    `k` most frequent whose share of all their occurrences on the concept is at least `purity`."""
    on = np.bincount(tokens[labels == concept], minlength=int(tokens.max()) + 1)
    all_ = np.bincount(tokens, minlength=len(on))
    ok = (on >= min_count) & (on >= purity * np.maximum(all_, 1))
    return [int(t) for t in np.argsort(-on * ok)[: min(k, int(ok.sum()))]]


def output_scores(model, sae, tokens: list[int]) -> Tensor:
    """(d_sae,) each feature's output score for a concept: the mean z-score, over the concept's
    own `tokens`, of the logit effect of its decoder direction (`interpret.logit_weights`, z-scored
    over the vocabulary): how much more it raises the concept's tokens than the typical token."""
    lw = logit_weights(model, sae)  # (d_sae, vocab)
    z = (lw - lw.mean(1, keepdim=True)) / lw.std(1, keepdim=True).clamp_min(1e-12)
    return z[:, tokens].mean(1) if tokens else torch.zeros(lw.shape[0])
