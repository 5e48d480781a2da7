"""Steered means on target and fluent: sampling continuations and judging them, for every steering demonstration.

Golden Gate Claude talked about the bridge in fluent sentences. Text full of bridge words in broken
sentences ("the the the Golden a Bern the") is a broken model, not a steered one. So a continuation counts
as steered only when the judge (`sae.world.corpus.top_concept`) finds it on target *and* it is fluent:

    fluent  ⇔  CE(continuation) = −(1/n) Σ_t log p_clean(y_t | prompt, y_<t)  ≤  FLUENT_CE

the clean (unsteered) model's cross-entropy of the n generated tokens, in nats per token.
"""

from __future__ import annotations

import torch

from sae.gpt import cross_entropy
from sae.markdown import clip, clip_around, code, text
from sae.world.corpus import top_concept

# A continuation is fluent when the clean model's cross-entropy of it is at most this (nats per
# token), about e^-2 = 14% for the average token: above the model's own samples and held-out
# toy-world text, below a clamp that breaks the text ("the the the"). The slow test
# `test_the_fluency_bound_separates_fluent_from_broken_text` checks both sides on the tiny run.
FLUENT_CE = 2.0

# The sampling temperature of the demonstrations, steered and unsteered alike. At 1 a one-layer
# model samples its long tail of half-words ("Fainters replin we"), which the fluency measure then
# charges to the feature; at 0.8 its own text reads as it was trained to read (docs/results.md gives
# the Golden Gate headline at 1 too).
TEMPERATURE = 0.8


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def sample(model, prompts: list[list[int]], n: int, max_new_tokens: int, seed: int,
           temperature: float | None = None) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, continuation ids) for `n` samples of each prompt, drawn together as one batch
    per prompt (prompt j with seed `seed + j`) at `temperature` (default `TEMPERATURE`). Active
    hooks (a clamp) apply as usual. A prompt keeps its last `n_ctx - max_new_tokens` tokens, so
    positions never slide while sampling (a clamp over the prompt, `until=len(ids)`, stays on it)."""
    t = TEMPERATURE if temperature is None else temperature
    out = []
    for j, ids in enumerate(prompts):
        ids = ids[-(model.cfg.n_ctx - max_new_tokens):]
        batch = torch.tensor([ids] * n, device=device_of(model))  # (n, T)
        rows = model.generate(batch, max_new_tokens, temperature=t, seed=seed + j).tolist()
        out += [(ids, row[len(ids):]) for row in rows]
    return out


@torch.no_grad()
def continuation_ce(model, samples: list[tuple[list[int], list[int]]]) -> list[float]:
    """The clean model's cross-entropy (nats/token) of each sample's continuation given its prompt
    (samples of equal length are scored in one batch). Refused inside a clamp: steered text must
    be scored by the model it was steered away from."""
    if any(m._forward_hooks for m in model.modules()):
        raise ValueError("continuation_ce scores text with the clean model, but a hook (a clamp) is active: "
                         "call it after the `with clamp_features(...)` block")
    out = [0.0] * len(samples)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (ids, cont) in enumerate(samples):
        groups.setdefault((len(ids), len(cont)), []).append(i)
    for (n_prompt, n_cont), idx in groups.items():
        full = torch.tensor([(samples[i][0] + samples[i][1])[-model.cfg.n_ctx:] for i in idx], device=device_of(model))
        n = min(n_cont, full.shape[1] - 1)
        losses = cross_entropy(model(full)[:, :-1], full[:, 1:], reduction="none")[:, -n:]  # (group, n)
        for i, ce in zip(idx, losses.mean(1).tolist()):
            out[i] = ce
    return out


def is_fluent(ce: float) -> bool:
    return ce <= FLUENT_CE


def verdict(model, tok, ids: list[int], continuation: list[int], concept: str | None = None) -> str:
    """One continuation judged as the demos judge it: the judge's concept (`corpus.top_concept`),
    whether that is `concept` (on topic), the clean model's CE of it and whether it is fluent."""
    text, (ce,) = tok.decode(continuation), continuation_ce(model, [(ids, continuation)])
    top = top_concept(text)
    topic = f"{'on topic' if top == concept else 'off topic'} ({top or 'no concept'})" if concept else (top or "no concept")
    return f"{topic}, CE {ce:.2f} nats/token, {'fluent' if is_fluent(ce) else 'not fluent'}"


def shown_example(r: dict, n: int = 110) -> str:
    """A sweep row's example continuation after its prompt (in bold) where it has one, clipped to about
    `n` characters. A steered sample where the row has one; otherwise the sample is marked as broken,
    with its CE, never as a success. Without a prompt, the text marks the prompt's end with ‖, and
    the cut keeps what follows the mark in view."""
    shown = str(r.get("example", ""))
    if r.get("prompt"):
        space = " " if shown[:1].isspace() else ""  # the continuation may go on mid-word ("soup" + "ail ...")
        shown = f"**{text(r['prompt'])}**{space}{text(clip(shown, n))}"
    else:
        shown = code(clip_around(shown, "‖"), cell=True)
    if r.get("example_steered", True):
        return shown
    ce = f", CE {r['example_ce']:.1f}" if isinstance(r.get("example_ce"), (int, float)) else ""
    return f"*not steered{ce}:* {shown}"
