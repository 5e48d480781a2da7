"""Steering by feature clamping (Scaling Monosemanticity, "Influence on Behavior").

Splice the SAE into the model at its site and edit features on the way through:

    f  = encode(x)                     features of the activation x
    f' = f with chosen features clamped to a value, scaled, or zeroed
    x' = decode(f') + (x − decode(f))  the edited reconstruction plus the SAE's error term

With the error term, whatever the SAE fails to reconstruct still reaches the model and an
unedited splice is the identity (up to float rounding), so any change in behaviour comes from the
edited features alone; `keep_error=False` splices in the bare reconstruction, for comparison.
Values are absolute activations or multiples of a feature's max activation on held-out text
(`"10x"`; the paper clamps the Golden Gate Bridge feature at 10×). Additive steering
(`x + α·W_dec[i]`, raw units), for comparison, moves the activation along the feature's
direction without reading or clamping the feature.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

_MULTIPLE = re.compile(r"^\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*[xX×]\s*$")

# The largest clamp `parse_value` accepts, as a multiple of the feature's max activation (the
# paper clamps at 10×). By 1000× the final layer norm divides the huge activation away and the
# output stops depending on the value (compare the next-token distributions under
# `clamp_features` at 100×, 1000× and 10000×); far beyond it the norm's squares overflow
# float32 and sampling fails on inf/nan logits.
MAX_MULTIPLE = 1000.0


def parse_value(value: str | float, max_act: float, allow_negative: bool = True, feature: int | None = None) -> float:
    """`"10x"` -> 10 × max_act; `"3.5"` or 3.5 -> 3.5 (absolute). Clear one-line errors for anything else.

    Refused: text that is not a number, non-finite values (inf, nan, 1e400), magnitudes above
    `MAX_MULTIPLE` × max_act (above `MAX_MULTIPLE` itself for a feature that never fired), and any
    multiple of a feature that never fired (it would silently clamp to 0). `feature` only names
    the feature in the messages.
    """
    name = "the feature" if feature is None else f"feature {feature}"
    max_act = float(max_act)
    if isinstance(value, (int, float)):
        v = float(value)
    else:
        text = str(value).strip()
        if m := _MULTIPLE.match(text):
            multiple = float(m.group(1))
            if multiple < 0 and not allow_negative:
                raise ValueError(f"negative multiple {text!r} is not allowed here; use 0x to switch the feature off")
            if max_act <= 0 and np.isfinite(multiple):
                raise ValueError(f"{name} never fired on the held-out text (max activation 0), so {text!r} would "
                                 f"clamp it to 0; give an absolute value like 5, or pick another feature")
            v = multiple * max_act
        else:
            try:
                v = float(text)
            except ValueError:
                raise ValueError(f"cannot read the value {value!r}: give an absolute activation like 3.5 "
                                 f"or a multiple of the feature's max activation like 10x") from None
    if not np.isfinite(v):
        raise ValueError(f"the value {value!r} is not a finite number: give an absolute activation like 3.5 "
                         f"or a multiple of the feature's max activation like 10x")
    if v < 0 and not allow_negative:
        raise ValueError(f"negative value {value!r} is not allowed here")
    if max_act > 0:
        limit, of = MAX_MULTIPLE * max_act, f"{MAX_MULTIPLE:g}x {name}'s max activation {max_act:.2f}"
    else:  # no max to scale by: the bound in absolute units
        limit, of = MAX_MULTIPLE, "the bound for a feature that never fired"
    if abs(v) > limit:
        raise ValueError(f"the value {value!r} ({v:.3g}) is too large: use at most {limit:.4g} in magnitude ({of}); "
                         f"past that the output stops changing and then float32 overflows and sampling breaks "
                         f"(the paper clamps at 10x)")
    return v


def check_features(sae, ids) -> None:
    bad = [i for i in ids if not 0 <= int(i) < sae.cfg.d_sae]
    if bad:
        raise ValueError(f"unknown feature ids {bad}: this SAE has features 0..{sae.cfg.d_sae - 1}")


@contextmanager
def clamp_features(model, sae, clamp: dict[int, float] | None = None,
                   scale: dict[int, float] | None = None, keep_error: bool = True,
                   only_where_active: bool = False, until: int | None = None) -> Iterator[None]:
    """Within the block, every forward pass (also `generate`) runs through the edited splice.

    `clamp` {feature: value} sets the feature's activation to value at every position (or, with
    `only_where_active`, only where it already fires); `scale` {feature: factor} multiplies it.
    Values are absolute (use `parse_value` for "10x"). With `until`, only the first `until`
    positions are edited (the prompt, when generating): the model reads the edit but writes its
    own continuation unedited.
    """
    clamp, scale = dict(clamp or {}), dict(scale or {})
    ids = list(dict.fromkeys(list(clamp) + list(scale)))  # the edited features
    check_features(sae, ids)

    def splice(act: Tensor) -> Tensor:
        x = act.float()
        old = sae.encode(x, ids)  # (..., positions, n_edited)
        new = old.clone()
        edit = new[..., :until, :] if until is not None else new  # a view
        for j, i in enumerate(ids):
            if i in clamp:
                edit[..., j] = torch.where(edit[..., j] > 0, clamp[i], edit[..., j]) if only_where_active else clamp[i]
            if i in scale:
                edit[..., j] = edit[..., j] * scale[i]
        if keep_error:
            # decode is affine, so decode(f') + (x − decode(f)) = x + (f' − f) @ W_dec / s: only the
            # edited features' rows enter, and with nothing edited the splice is exactly x
            out = x + (new - old) @ sae.W_dec[ids] / sae.input_scale
        else:
            f = sae.encode(x)
            f[..., ids] = new
            out = sae.decode(f)
        return out.to(act.dtype)

    with torch.no_grad(), model.hooks({sae.cfg.site: splice}):
        yield


@contextmanager
def add_direction(model, sae, add: dict[int, float]) -> Iterator[None]:
    """Additive steering: x + Σ α_i · W_dec[i] (raw units) at every position."""
    check_features(sae, list(add))
    direction = sae.W_dec.new_zeros(sae.cfg.d_in)  # (nothing to add: the model runs unchanged)
    for i, a in add.items():
        direction += a * sae.W_dec[i].detach() / sae.input_scale
    with torch.no_grad(), model.hooks({sae.cfg.site: lambda act: act + direction.to(act.dtype)}):
        yield


def steer_samples(model, sae, tok, prompt: str, feature: int, value: float, n: int = 3,
                  max_new_tokens: int = 40, seed: int = 0, temperature: float = 1.0,
                  prompt_only: bool = False) -> tuple[list[int], list[tuple[list[int], list[int]]]]:
    """The prompt's ids and `n` pairs (unsteered, steered) of continuation ids, the steered one with
    `feature` clamped to `value` (absolute; see `parse_value`) at every position, or with
    `prompt_only` over the prompt alone (the model then writes its continuation unedited); sample
    i of each pair uses seed `seed + i`, at `temperature`."""
    check_features(sae, [feature])
    ids = [tok.eot_token] + tok.encode(prompt)
    keep = model.cfg.n_ctx - max_new_tokens  # prompt + continuation fit: positions never slide
    if prompt_only and keep < 1:
        raise ValueError(f"a clamp over the prompt needs the prompt and the continuation in the model's context "
                         f"of {model.cfg.n_ctx} tokens: ask for fewer than {model.cfg.n_ctx} new tokens")
    ids = ids[-keep:] if keep > 0 else ids  # (longer continuations: generate slides its window)
    pairs = []
    for i in range(n):
        plain = model.generate(ids, max_new_tokens, temperature=temperature, seed=seed + i)
        with clamp_features(model, sae, clamp={feature: value}, until=len(ids) if prompt_only else None):
            steered = model.generate(ids, max_new_tokens, temperature=temperature, seed=seed + i)
        pairs.append((plain[len(ids):].tolist(), steered[len(ids):].tolist()))
    return ids, pairs
