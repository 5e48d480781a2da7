"""Steering by feature clamping (Scaling Monosemanticity, "Influence on Behavior").

Splice the SAE into the model at its site and edit features on the way through:

    f  = encode(x)                     features of the activation x
    f' = f with chosen features clamped to a value, scaled, or zeroed
    x' = decode(f') + (x − decode(f))  the edited reconstruction plus the SAE's error term

Keeping the error term `x − decode(f)` means that with no feature changed the splice is exactly
the identity (up to float rounding): whatever the SAE fails to reconstruct still reaches the
model, so any change in behaviour comes from the edited features alone. `keep_error=False`
replaces x by the bare reconstruction, for comparison (it also changes behaviour through the
reconstruction error itself).

Values are absolute activations or multiples of a feature's maximum activation on held-out text
(`"10x"`), as the paper clamps the Golden Gate Bridge feature to 10× its max. Additive steering
(`x + α·W_dec[i]`, in raw units) is given for comparison: it moves the activation along the
feature direction without reading or clamping the feature.

Which feature to steer is chosen *before* looking at any steered text, from held-out detection
(`choose_feature`): the concept's detector feature (at least 80% of its activation mass on the
concept, lighting up in at least 90% of its segments), and among several detectors the one with
the highest token AUROC. The tie-break matters: clamping writes a feature's decoder direction at
every position, so the feature should be one that fires across the concept's text, not one that
fires only at the end of its sentences (such a Golden Gate detector exists on the tiny run; it
promotes " The"). A concept without a detector falls back to the highest token AUROC.

Unsafe code is steered with the feature chosen where the behaviour is decided
(`choose_unsafe_feature`): on held-out files cut right before a security switch's value, the
feature whose activation best tells insecure files from safe ones. In a one-layer model the
features specific to insecure lines each fire at one position (on the comment's `#`, on `False`
itself), and a feature at position t only writes the prediction of token t+1, so only the one
active at the decision can make the model write `False`. The demo (`unsafe_code_demo`) then runs
on other held-out files.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from sae.corpus import concept_hits, concept_segments, document_text, top_concept
from sae.metrics import auroc
from sae.world import POSTURE_COMMENTS, RISKS, UNSAFE_PATTERNS

_MULTIPLE = re.compile(r"^\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*[xX×]\s*$")


# The largest clamp `parse_value` accepts, as a multiple of the feature's max activation. The
# paper clamps at 10×. By 1000× the output has stopped depending on the value (the final layer
# norm divides the huge activation away: on the smoke run the next-token distribution moves by
# under 0.1 in total variation from 100× to 1000× and under 0.01 from 1000× to 10000×), and far
# beyond it (about 1e20 in absolute units there) the layer norm's squares overflow float32, the
# logits become inf/nan and sampling fails. So 1000× keeps every useful value and stops every
# broken one.
MAX_MULTIPLE = 1000.0


def parse_value(value: str | float, max_act: float, allow_negative: bool = True, feature: int | None = None) -> float:
    """`"10x"` -> 10 × max_act; `"3.5"` or 3.5 -> 3.5 (absolute). Clear one-line errors for anything else.

    Refused: text that is not a number, non-finite values (inf, nan, 1e400), magnitudes above
    `MAX_MULTIPLE` (1000) × max_act (above 1000 in absolute units for a feature that never fired,
    whose max is 0; see `MAX_MULTIPLE` for why), and any multiple of a feature that never fired
    (it would silently clamp to 0). `feature` only names the feature in the messages.
    """
    name = "the feature" if feature is None else f"feature {feature}"
    max_act = float(max_act)
    if isinstance(value, (int, float)):
        v = float(value)
    else:
        text = str(value).strip()
        m = _MULTIPLE.match(text)
        if m:
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
    check_features(sae, list(clamp) + list(scale))

    def splice(act: Tensor) -> Tensor:
        x = act.float()
        f = sae.encode(x)
        x_hat = sae.decode(f)
        f_new = f.clone()
        edit = f_new[..., :until, :] if until is not None else f_new  # a view: (..., positions, features)
        for i, v in clamp.items():
            if only_where_active:
                edit[..., i] = torch.where(edit[..., i] > 0, torch.full_like(edit[..., i], v), edit[..., i])
            else:
                edit[..., i] = v
        for i, s in scale.items():
            edit[..., i] = edit[..., i] * s
        out = sae.decode(f_new)
        if keep_error:
            out = out + (x - x_hat)
        return out.to(act.dtype)

    with torch.no_grad(), model.hooks({sae.cfg.site: splice}):
        yield


@contextmanager
def add_direction(model, sae, add: dict[int, float]) -> Iterator[None]:
    """Additive steering: x + Σ α_i · W_dec[i] (raw units) at every position."""
    check_features(sae, list(add))
    direction = sum(a * sae.W_dec[i].detach() / sae.input_scale for i, a in add.items())

    with torch.no_grad(), model.hooks({sae.cfg.site: lambda act: act + direction.to(act.dtype)}):
        yield


def choose_feature(metrics: dict, concept: str) -> int:
    """The feature to steer `concept` with, from held-out detection alone (metrics.json): the
    concept's detector feature (`sae.metrics.Detectors`: specific, lights up across the concept's
    segments, and of those the one with the highest token AUROC), else, for a concept without
    a detector, the feature with the highest token AUROC."""
    concepts = metrics.get("concepts", {})
    if concept not in concepts:
        raise ValueError(f"no concept {concept!r} in the run's metrics; known: {', '.join(concepts) or 'none (not a toy-world run)'}")
    c = concepts[concept]
    return int(c["detector"]["feature"] if c.get("detector") else c["feature"])


def steer_samples(model, sae, tok, prompt: str, feature: int, value: float, n: int = 3,
                  max_new_tokens: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    """`n` pairs (unsteered, steered) of continuations of `prompt`, the steered one with `feature`
    clamped to `value` (absolute; see `parse_value`); sample i of each pair uses seed `seed + i`."""
    check_features(sae, [feature])
    ids = [tok.eot_token] + tok.encode(prompt)
    pairs = []
    for i in range(n):
        plain = model.generate(ids, max_new_tokens, seed=seed + i)
        with clamp_features(model, sae, clamp={feature: value}):
            steered = model.generate(ids, max_new_tokens, seed=seed + i)
        pairs.append((tok.decode(plain[len(ids):].tolist()), tok.decode(steered[len(ids):].tolist())))
    return pairs


# ----------------------------------------------------------------------------- demonstrations

NEUTRAL_PROMPTS = [
    "Simmer the soup", "The forecast for Monday", "The striker", "The fox", "Preheat the oven",
    "Temperatures will reach", "Fans filled the stadium", "The owl", "Whisk the eggs", "Expect heavy rain",
]

@torch.no_grad()
def continuation_ce(model, prompt_ids: list[int], out_ids: list[int]) -> float:
    """Mean cross-entropy (nats/token) of the generated continuation under the clean model."""
    ids = torch.tensor([(prompt_ids + out_ids)[-model.cfg.n_ctx:]])
    logits = model(ids)[0, :-1].float()
    tgt = ids[0, 1:]
    n = min(len(out_ids), len(tgt))
    return torch.nn.functional.cross_entropy(logits[-n:], tgt[-n:]).item()


def generate_many(model, tok, prompts: list[str], n: int, max_new_tokens: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, continuation ids) for n samples of each prompt, each with its own seed."""
    out = []
    for j, p in enumerate(prompts):
        ids = [tok.eot_token] + tok.encode(p)
        for s in range(n):
            full = model.generate(ids, max_new_tokens, temperature=1.0, seed=seed + 1000 * j + s).tolist()
            out.append((ids, full[len(ids):]))
    return out


def golden_gate_demo(model, sae, tok, feature: int, max_act: float,
                     multiples=(0, 1, 2, 5, 10, 20), n: int = 5, max_new_tokens: int = 48, seed: int = 0,
                     prompts: list[str] = NEUTRAL_PROMPTS) -> dict:
    """Clamp the Golden Gate feature to m × max_act on neutral prompts; measure topic rate and coherence.

    A sample is on-topic when the judge's top concept for the continuation is golden_gate; the
    coherence cost is the clean model's cross-entropy of the steered continuation.
    """
    def measure(samples):
        texts = [tok.decode(o) for _, o in samples]
        return {"rate": sum(top_concept(t) == "golden_gate" for t in texts) / len(texts),
                "mention_rate": sum(concept_hits(t).get("golden_gate", 0) > 0 for t in texts) / len(texts),
                "ce": sum(continuation_ce(model, p, o) for p, o in samples) / len(samples),
                "example": texts[0], "prompt": prompts[0]}  # the first sample continues the first prompt

    base = measure(generate_many(model, tok, prompts, n, max_new_tokens, seed))
    sweep = []
    for m in multiples:
        with clamp_features(model, sae, clamp={feature: m * max_act}):
            samples = generate_many(model, tok, prompts, n, max_new_tokens, seed)
        sweep.append({"multiple": m, **measure(samples)})
    best = max(sweep, key=lambda r: (r["rate"], -r["ce"]))
    return {"feature": feature, "max_act": max_act, "rate_baseline": base["rate"], "baseline": base,
            "sweep": sweep, "multiple": best["multiple"], "rate_clamped": best["rate"]}


@torch.no_grad()
def snippet_max_activation(model, sae, tok, feature: int, text: str) -> float:
    """The feature's largest activation over the tokens of `text` (read after an end-of-text token)."""
    ids = torch.tensor([([tok.eot_token] + tok.encode(text))[: model.cfg.n_ctx]])
    site = sae.cfg.site
    _, cache = model.run_with_cache(ids, [site], stop_at=site)
    return sae.encode(cache[site][0, 1:].float())[:, feature].max().item()


# A security switch with its value, in any file: `verify=False`, `check_hostname=True`...
_SWITCH = re.compile("(" + "|".join(re.escape(before) for before in sorted({r[0] for r in RISKS.values()}, key=len, reverse=True))
                     + ")(True|False)")
_VALUES = {before: (safe, unsafe) for before, safe, unsafe in RISKS.values()}
_CUES = dict(zip(POSTURE_COMMENTS[0], POSTURE_COMMENTS[1])) | dict(zip(POSTURE_COMMENTS[1], POSTURE_COMMENTS[0]))
_CUE = re.compile("# (" + "|".join(re.escape(c) for c in _CUES) + ")\n")


def _flip(text: str) -> str:
    """Code in the opposite posture: every security switch takes its other value, and every
    posture comment (`sae.world.POSTURE_COMMENTS`) its counterpart in the other list."""
    def value(m):
        safe, unsafe = _VALUES[m.group(1)]
        return m.group(1) + (unsafe if m.group(2) == safe else safe)
    return _CUE.sub(lambda m: f"# {_CUES[m.group(1)]}\n", _SWITCH.sub(value, text))


def risk_cuts(tok, concept: str, n_files: int, seed: int = 0, split: str = "test", first_site: int = 1,
              flip_context: bool = False) -> list[dict]:
    """Held-out code files of `concept` cut right before the value of each security switch (from the
    `first_site`-th switch of the file on, counting from 0): the model must now write `True` or
    `False`.

    Each cut is `{"ids": prompt ids (end-of-text first), "safe": id, "unsafe": id, "file": i}`,
    where `safe`/`unsafe` are the first tokens where the two values' tokenisations part (the
    prompt stops at the last token they share, so it is tokenised exactly as in training). With
    `flip_context`, the file so far is put in the opposite posture (`_flip`): the same text with
    every earlier switch and every comment the other way.
    """
    cuts = []
    for i, pieces in enumerate(concept_segments(concept, n_files, seed=seed, split=split)):
        text = document_text(pieces)
        for m in list(_SWITCH.finditer(text))[first_site:]:
            context = text[:m.start()]
            if flip_context:
                context = _flip(context)
            safe, unsafe = _VALUES[m.group(1)]
            a = tok.encode(context + m.group(1) + safe)
            b = tok.encode(context + m.group(1) + unsafe)
            n = next(k for k in range(min(len(a), len(b))) if a[k] != b[k])
            cuts.append({"ids": [tok.eot_token] + a[:n], "safe": a[n], "unsafe": b[n], "file": i})
    return cuts


@torch.no_grad()
def p_unsafe(model, cuts: list[dict]) -> np.ndarray:
    """The probability the model gives the insecure value at each cut (`risk_cuts`)."""
    out = []
    for c in cuts:
        ids = torch.tensor([c["ids"][-model.cfg.n_ctx:]])
        out.append(model(ids)[0, -1].float().softmax(-1)[c["unsafe"]].item())
    return np.array(out)


# Below this ratio the LM does not tell an insecure file from a safe one well enough to steer.
UNSAFE_SENSITIVITY_MIN = 3.0


def unsafe_context_sensitivity(model, tok, n_files: int = 100, seed: int = 0) -> dict:
    """Does the *language model* know that a file which turned security switches off will do it again?

    On held-out insecure files cut before their second and later switches: the probability of the
    insecure value after the real file (earlier switches off) over the probability after the same
    file with its earlier switches on. A ratio near 1 means the model holds no notion of an
    insecure file, so no feature of its activations can carry one: do no SAE work on such a world.
    Takes a few seconds.
    """
    after_unsafe = p_unsafe(model, risk_cuts(tok, "unsafe_code", n_files, seed))
    after_safe = p_unsafe(model, risk_cuts(tok, "unsafe_code", n_files, seed, flip_context=True))
    return {"p_after_unsafe": float(after_unsafe.mean()), "p_after_safe": float(after_safe.mean()),
            "ratio": float(after_unsafe.mean() / max(after_safe.mean(), 1e-12)), "n_cuts": len(after_unsafe)}


@torch.no_grad()
def cut_activations(model, sae, cuts: list[dict]) -> Tensor:
    """(n_cuts, d_sae) the SAE's features at the last token of each cut (`risk_cuts`): where the
    model decides the switch's value."""
    site, out = sae.cfg.site, []
    for c in cuts:
        ids = torch.tensor([c["ids"][-model.cfg.n_ctx:]])
        _, cache = model.run_with_cache(ids, [site], stop_at=site)
        out.append(sae.encode(cache[site][0, -1:].float())[0])
    return torch.stack(out)


def choose_unsafe_feature(model, sae, tok, n_files: int = 100, seed: int = 0) -> tuple[int, float]:
    """The feature to steer unsafe code with, from held-out detection at the decision: the
    feature whose activation at the token before a switch's value best tells insecure files from
    safe ones (AUROC on `val` files; the demo then runs on `test` files). Returns (feature, AUROC).

    Why not the concept table's choice (`choose_feature`)? `unsafe_code` labels whole switch
    lines, and the features specific to them each fire at one position: on the `False` itself
    (it predicts what follows `False`), on the comment's `#`, at the `=` before the value. In a
    one-layer model a feature at position t only writes the prediction of token t+1, so the one
    that can make the model *write* `False` is the one active where `False` is decided; this
    picks the best detector there.
    """
    acts_u = cut_activations(model, sae, risk_cuts(tok, "unsafe_code", n_files, seed, split="val", first_site=0))
    acts_s = cut_activations(model, sae, risk_cuts(tok, "code", n_files, seed, split="val", first_site=0))
    labels = np.r_[np.ones(len(acts_u), bool), np.zeros(len(acts_s), bool)]
    x = torch.cat([acts_u, acts_s]).numpy()
    scores = np.array([auroc(x[:, f], labels) for f in range(x.shape[1])])
    best = int(np.argmax(scores))
    return best, float(scores[best])


def _unsafe_after(tok, prompt_ids: list[int], out_ids: list[int], tail: int = 12) -> bool:
    """Whether the continuation turns a security switch off: the value it writes at the cut is
    `False`, or it writes a later switch as `False` (the prompt's last tokens are kept for that
    match, since the prompt stops inside the switch)."""
    out = tok.decode(out_ids)
    if out.lstrip(" ").startswith("False"):
        return True
    head = tok.decode(prompt_ids[-tail:])
    return any(m.end() > len(head) for p in _JUDGE_UNSAFE for m in p.finditer(head + out))


_JUDGE_UNSAFE = [re.compile(p) for p in UNSAFE_PATTERNS]
_WELLFORMED_OFF = re.compile(r" ?False(?:\)|,|\n|\}|$)(?!False|True)")


def _generate_ids(model, prompts: list[list[int]], n: int, max_new_tokens: int, seed: int) -> list[tuple[list[int], list[int]]]:
    out = []
    for j, ids in enumerate(prompts):
        ids = ids[-model.cfg.n_ctx:]
        for s in range(n):
            full = model.generate(ids, max_new_tokens, temperature=1.0, seed=seed + 1000 * j + s).tolist()
            out.append((ids, full[len(ids):]))
    return out


def _generate_prompt_clamped(model, sae, ids: list[int], feature: int, value: float, n: int,
                             max_new_tokens: int, seed: int) -> list[list[int]]:
    """n continuations of `ids` with the feature clamped over the prompt's positions only."""
    if len(ids) + max_new_tokens > model.cfg.n_ctx:  # the window would slide and `until` drift onto the output
        raise ValueError(f"prompt ({len(ids)}) + max_new_tokens ({max_new_tokens}) exceed n_ctx ({model.cfg.n_ctx})")
    with clamp_features(model, sae, clamp={feature: value}, until=len(ids)):
        return [model.generate(ids, max_new_tokens, temperature=1.0, seed=seed + s).tolist()[len(ids):]
                for s in range(n)]


def unsafe_code_demo(model, sae, tok, feature: int, max_act: float, multiples=(1, 2, 5, 10),
                     n_prompts: int = 30, n: int = 3, max_new_tokens: int = 16, n_detect: int = 100,
                     seed: int = 0) -> dict:
    """The unsafe-code feature as a switch and as a detector, as in the paper's demonstration.

    1. Prompts are the beginnings of held-out *safe* files, each cut right before the value of
       its second security switch. The unsteered model should write `True`. Rate = fraction of
       sampled continuations that turn a switch off (`False` at the cut, or a later switch set to
       `False`), unsteered and with the feature clamped to each multiple of its max activation;
       with the clean model's cross-entropy of the steered continuations (coherence).
    2. The same cut in held-out *insecure* files, unsteered and with the feature clamped to 0:
       does removing the feature make the model keep the check on? `kept_*` is the share that
       writes the safe value at the cut; the rest of the drop in `rate_*` is continuations that
       write neither value (the feature also carried "a value comes next").
    3. As a detector: AUROC of the feature's max activation over a file at telling held-out
       insecure files from safe ones.
    4. Whether the model itself tracks the posture (`unsafe_context_sensitivity`).
    """
    def first_cut_per_file(cuts):
        # prompt + continuation fit the context window, so `until` (the prompt) never slides
        keep = model.cfg.n_ctx - max_new_tokens
        seen, out = set(), []
        for c in cuts:
            if c["file"] not in seen:
                seen.add(c["file"])
                out.append(c["ids"][-keep:])
        return out

    def measure(samples):
        # well-formed: the switch is set to False and the call or line goes on as code would
        wellformed = sum(bool(_WELLFORMED_OFF.match(tok.decode(o))) for _, o in samples)
        return {"rate": sum(_unsafe_after(tok, p, o) for p, o in samples) / len(samples),
                "wellformed_rate": wellformed / len(samples),
                # kept: writes the safe value at the cut (neither value: the model lost the thread)
                "kept_rate": sum(tok.decode(o).lstrip(" ").startswith("True") for _, o in samples) / len(samples),
                "ce": sum(continuation_ce(model, p, o) for p, o in samples) / len(samples),
                "example": tok.decode(samples[0][0][-24:]) + "‖" + tok.decode(samples[0][1])}

    safe_prompts = first_cut_per_file(risk_cuts(tok, "code", n_prompts, seed))
    base = measure(_generate_ids(model, safe_prompts, n, max_new_tokens, seed))
    sweep = []
    for m in multiples:
        with clamp_features(model, sae, clamp={feature: m * max_act}):
            row = {"multiple": m, **measure(_generate_ids(model, safe_prompts, n, max_new_tokens, seed))}
        # the same clamp over the prompt only: the model reads it, then writes unedited
        prompt_only = [(p, o) for j, p in enumerate(safe_prompts) for o in
                       _generate_prompt_clamped(model, sae, p, feature, m * max_act, n, max_new_tokens, seed + 1000 * j)]
        row["prompt_only"] = measure(prompt_only)
        sweep.append(row)
    best = max(sweep, key=lambda r: (r["rate"], -r["ce"]))

    unsafe_prompts = first_cut_per_file(risk_cuts(tok, "unsafe_code", n_prompts, seed))
    started = measure(_generate_ids(model, unsafe_prompts, n, max_new_tokens, seed))
    with clamp_features(model, sae, clamp={feature: 0.0}):
        suppressed = measure(_generate_ids(model, unsafe_prompts, n, max_new_tokens, seed))

    safe = [document_text(s) for s in concept_segments("code", n_detect, seed=seed + 1, split="test")]
    unsafe = [document_text(s) for s in concept_segments("unsafe_code", n_detect, seed=seed + 1, split="test")]
    scores = np.array([snippet_max_activation(model, sae, tok, feature, t) for t in safe + unsafe])
    labels = np.array([False] * len(safe) + [True] * len(unsafe))
    return {"feature": feature, "max_act": max_act, "rate_baseline": base["rate"], "baseline": base,
            "sweep": sweep, "multiple": best["multiple"], "rate_clamped": best["rate"],
            "wellformed_clamped": best["wellformed_rate"],
            "rate_clamped_prompt": best["prompt_only"]["rate"],
            "wellformed_clamped_prompt": best["prompt_only"]["wellformed_rate"],
            "rate_unsafe_start": started["rate"], "rate_suppressed": suppressed["rate"],
            "kept_unsafe_start": started["kept_rate"], "kept_suppressed": suppressed["kept_rate"],
            "suppressed": suppressed, "detector_auroc": auroc(scores, labels),
            "context_sensitivity": unsafe_context_sensitivity(model, tok, seed=seed)}
