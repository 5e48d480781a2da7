"""The steering benchmark's scores (`sae.steering.benchmark`), all from the world's labels and the
clean model, no judge model:

    concept   c = share of a continuation's sentences the judge (`corpus.sentence_concepts`)
                  assigns to the target; *on target* ⇔ c ≥ 1/2
    fluency   φ = 1 for CE ≤ F, falling linearly to 0 at CE = 2F (CE: the clean model's cross-entropy of
                  the continuation, F = `FLUENT_CE`); *fluent* ⇔ CE ≤ F
    score     2cφ / (c + φ), their harmonic mean (AxBench's form), averaged over continuations
    steered   the share of continuations on target *and* fluent: the headline, as in the demos

Off-target effects: over the sentences that are not on the target, the distribution of the judge's
answers (other concepts, or none) against the unsteered one's: total variation ½ Σ |p − p₀|, and the
concept that moved most. Capability under the steer: the loss on held-out text of the other
concepts (Δ against clean) and accuracy on held-out `a + b =` prompts; the *sweet spot* is the
strengths where Δloss ≤ `LOSS_MARGIN` and accuracy drops ≤ `ARITHMETIC_MARGIN`.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import torch

from sae.gpt import cross_entropy
from sae.steering.fluency import FLUENT_CE
from sae.steering.methods import row_edit
from sae.world.corpus import CODE_FAMILY, CONCEPTS, concept_segments, document_text, sentence_concepts

STEERED = [c for c in CONCEPTS if c not in CODE_FAMILY]  # the concepts steered towards (`benchmark`'s docstring)
LOSS_MARGIN = 0.1  # nats/token: the sweet spot's bound on the other concepts' loss increase
ARITHMETIC_MARGIN = 0.1  # the sweet spot's bound on the drop in arithmetic accuracy


def fluency(ce: float) -> float:
    """φ: 1 at CE ≤ FLUENT_CE, 0 at CE ≥ 2·FLUENT_CE, linear between."""
    return float(min(1.0, max(0.0, (2 * FLUENT_CE - ce) / FLUENT_CE)))


def concept_share(labels: list[str | None], concept: str) -> float:
    return sum(x == concept for x in labels) / len(labels) if labels else 0.0


def score_texts(texts: list[str], ces: list[float], concept: str) -> dict:
    """The scores of one setting's continuations (module docstring), and its off-target counts."""
    labels = [sentence_concepts(t) for t in texts]
    c = np.array([concept_share(lab, concept) for lab in labels])
    phi = np.array([fluency(x) for x in ces])
    fluent = np.array(ces) <= FLUENT_CE
    score = np.where(c + phi > 0, 2 * c * phi / np.maximum(c + phi, 1e-12), 0.0)
    other = Counter(x or "none" for lab in labels for x in lab if x != concept)
    return {"steered": float(np.mean((c >= 0.5) & fluent)), "on_target": float(np.mean(c >= 0.5)),
            "concept": float(c.mean()), "fluent": float(fluent.mean()), "ce": float(np.mean(ces)),
            "score": float(score.mean()), "other": dict(other)}


def off_target(other: dict, base: dict) -> tuple[float | None, str | None, float | None]:
    """Total variation between two off-target distributions (counts of the judge's answers on the
    sentences off the target), the concept that moved most and its change; None without sentences."""
    n, n0 = sum(other.values()), sum(base.values())
    if not n or not n0:
        return None, None, None
    keys = sorted(set(other) | set(base))
    diff = {k: other.get(k, 0) / n - base.get(k, 0) / n0 for k in keys}
    top = max(keys, key=lambda k: abs(diff[k]))
    return 0.5 * sum(abs(v) for v in diff.values()), top, diff[top]


def judge_quality(n: int = 30, seed: int = 7) -> dict:
    """{concept: {precision, recall}} of the sentence judge on held-out labelled sentences (`n`
    test-split segments of each concept), as `score_texts` uses it."""
    tp, fp, count = Counter(), Counter(), Counter()
    for c in CONCEPTS:
        for seg in concept_segments(c, n, seed=seed, split="test"):
            for got in sentence_concepts(document_text(seg)):
                count[c] += 1
                tp[c] += got == c
                fp[got] += got is not None and got != c
    return {c: {"precision": tp[c] / max(1, tp[c] + fp[c]), "recall": tp[c] / max(1, count[c])} for c in STEERED}


def measure_capability(model, sae, settings: list, windows: torch.Tensor, wlabels: torch.Tensor, concept: int,
                sums: dict[int, tuple[torch.Tensor, list[int]]], tok) -> list[dict]:
    """Per setting (or None): the mean loss on the windows' tokens not labelled `concept`, and the
    accuracy of greedy answers to the held-out sums ({prompt length: (prompts (n, L), answers)})."""
    k, n = len(settings), len(windows)
    rows = [s for s in settings for _ in range(n)]
    with torch.no_grad(), model.hooks({sae.cfg.site: row_edit(sae, rows)}):
        logits = model(windows.repeat(k, 1))[:, :-1]
    loss = cross_entropy(logits, windows[:, 1:].repeat(k, 1), reduction="none").view(k, n, -1)
    keep = wlabels[:, 1:] != concept
    right, total = np.zeros(k), 0
    for prompts, answers in sums.values():
        rows = [s for s in settings for _ in range(len(prompts))]
        with torch.no_grad(), model.hooks({sae.cfg.site: row_edit(sae, rows)}):
            out = model.generate(prompts.repeat(k, 1), 4, temperature=0, use_cache=True)[:, prompts.shape[1]:]
        for r, cont in enumerate(out.tolist()):
            words = tok.decode(cont).split()
            right[r // len(prompts)] += bool(words) and words[0].rstrip(".") == str(answers[r % len(prompts)])
        total += len(prompts)
    return [{"loss": float(loss[j][keep].mean()), "arithmetic": float(right[j] / max(1, total))} for j in range(k)]


def held_out_sums(tok, n: int, seed: int, device) -> dict[int, tuple[torch.Tensor, list[int]]]:
    """`n` prompts "a + b =" (a, b from 2 to 99, as the world's arithmetic) grouped by token length."""
    rng = random.Random(seed + 202)
    groups: dict[int, tuple[list, list]] = {}
    for _ in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        ids = [tok.eot_token] + tok.encode(f"{a} + {b} =")
        groups.setdefault(len(ids), ([], []))
        groups[len(ids)][0].append(ids)
        groups[len(ids)][1].append(a + b)
    return {L: (torch.tensor(p, device=device), a) for L, (p, a) in groups.items()}


