"""Scaling Monosemanticity's two steering demonstrations on the toy world: Golden Gate and unsafe code.

The clamp itself is `sae.steering.clamp_features`. This module decides *which* feature to clamp
and *how hard*, and measures what the clamp does, as the paper judged its demonstrations.

**Steered means on target and fluent.** Golden Gate Claude talked about the bridge in fluent
sentences. Text full of bridge words in broken sentences ("the the the Golden a Bern the") is a
broken model, not a steered one. So a continuation counts as steered only when the judge
(`sae.corpus.top_concept`) finds it on target *and* it is fluent:

    fluent  ⇔  CE(continuation) = −(1/n) Σ_t log p_clean(y_t | prompt, y_<t)  ≤  FLUENT_CE

the clean (unsteered) model's cross-entropy of the n generated tokens, in nats per token. Every
sweep row reports the on-target rate, the fluent rate (on target and fluent) and the mean CE.

**Held-out evidence only.** The feature and the multiple are chosen on *validation* prompts
(other prompts, other seeds) and then measured on the test prompts, as one tunes any
hyperparameter; the test prompts' outcome never chooses anything.

- Golden Gate (`golden_gate_demo`): the candidates are the concept's detector features
  (`metrics.json`: specific to the concept and lighting up across its segments). Each is clamped
  at every multiple of `MULTIPLES` on validation prompts; the (feature, multiple) with the
  highest fluent rate wins. Detection alone cannot make this choice: a detector that fires on the
  bridge sentences' full stops is a fine detector, but its decoder direction writes "a sentence
  starts here", and clamped at every position it breaks every sentence.
- Unsafe code (`unsafe_code_demo`): the feature is the one that best tells insecure files from
  safe ones where the switch's value is decided (`choose_unsafe_feature`), and the multiple is
  the one with the highest fluent rate on validation files; the demo then runs on test files.

Each demo returns its whole record (for `steering.json`) with a `summary` of its headline numbers
(for `metrics.json` and the report), so callers never need to know a demo's keys: `DEMOS` lists
them for the pipeline.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import Tensor

from sae.corpus import concept_segments, document_text, top_concept
from sae.gpt import cross_entropy
from sae.interpret import logit_effects
from sae.metrics import auroc
from sae.steering import clamp_features
from sae.world import POSTURE_COMMENTS, RISKS, UNSAFE_PATTERNS

# A continuation is fluent when the clean model's cross-entropy of it is at most this (nats per
# token), about e^-2 = 14% for the average token: above the model's own samples and held-out
# toy-world text, below a clamp that breaks the text ("the the the"). The slow test
# `test_the_fluency_bound_separates_fluent_from_broken_text` checks both sides on the tiny run.
FLUENT_CE = 2.0

# The clamps tried, in multiples of the feature's maximum activation on held-out text. The fluent
# window of a one-layer model is narrow and lies anywhere from 0.5x to 4x, depending on the
# feature (the report's sweep table shows a run's), so the grid is fine there, and the Golden
# Gate choice refines it (`choose_topic_feature`). The paper clamped at 10x.
MULTIPLES = (0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 10)
# The unsafe-code clamp over the prompt only edits the one decision, so it does not break text,
# and its rate only grows with the clamp: a coarser grid.
UNSAFE_MULTIPLES = (0.5, 1, 2, 3, 5, 10)

# The sampling temperature of the demonstrations, steered and unsteered alike. At 1 a one-layer
# model samples its long tail of half-words ("Fainters replin we"), which the fluency measure then
# charges to the feature; at 0.8 its own text reads as it was trained to read (docs/results.md gives
# the Golden Gate headline at 1 too).
TEMPERATURE = 0.8

# The test prompts of the Golden Gate demo: neutral openings from the everyday concepts.
NEUTRAL_PROMPTS = [
    "Simmer the soup", "The forecast for Monday", "The striker", "The fox", "Preheat the oven",
    "Temperatures will reach", "Fans filled the stadium", "The owl", "Whisk the eggs", "Expect heavy rain",
]
DISTRACTORS = ("cooking", "weather", "sports", "animals")


def _device(model) -> torch.device:
    return next(model.parameters()).device


# ----------------------------------------------------------------------------- sampling and fluency


def sample(model, prompts: list[list[int]], n: int, max_new_tokens: int, seed: int,
           temperature: float | None = None) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, continuation ids) for `n` samples of each prompt, drawn together as one batch
    per prompt (prompt j with seed `seed + j`) at `temperature` (default `TEMPERATURE`). Active
    hooks (a clamp) apply as usual. A prompt keeps its last `n_ctx - max_new_tokens` tokens, so
    positions never slide while sampling (a clamp over the prompt, `until=len(ids)`, stays on it)."""
    out = []
    for j, ids in enumerate(prompts):
        ids = ids[-(model.cfg.n_ctx - max_new_tokens):]  # prompt + continuation fit: positions never slide
        batch = torch.tensor([ids] * n, device=_device(model))  # (n, T)
        t = TEMPERATURE if temperature is None else temperature
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
        full = torch.tensor([(samples[i][0] + samples[i][1])[-model.cfg.n_ctx:] for i in idx], device=_device(model))
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


def neutral_prompts(n_per_concept: int = 3, seed: int = 0, split: str = "val", words: int = 3) -> list[str]:
    """Neutral prompts drawn from held-out everyday text: the first `words` words of segments of
    `DISTRACTORS`, leaving out the test prompts (`NEUTRAL_PROMPTS`)."""
    out = []
    for c in DISTRACTORS:
        mine = []
        for seg in concept_segments(c, 10 * n_per_concept, seed=seed, split=split):
            p = " ".join(document_text(seg).split()[:words])
            if p not in mine and not any(p.startswith(t) or t.startswith(p) for t in NEUTRAL_PROMPTS):
                mine.append(p)
        out += mine[:n_per_concept]
    return out


# ----------------------------------------------------------------------------- Golden Gate


def _measure_topic(model, tok, samples, concept: str) -> dict:
    """On-topic rate, fluent rate (on topic and fluent) and mean CE of `samples`; the example is
    the first steered sample (on topic and fluent), or the first sample when none is."""
    texts = [tok.decode(o) for _, o in samples]
    ces = continuation_ce(model, samples)
    on = [top_concept(t) == concept for t in texts]
    steered = [o and is_fluent(c) for o, c in zip(on, ces)]
    i = steered.index(True) if any(steered) else 0
    return {"rate": float(np.mean(on)), "fluent_rate": float(np.mean(steered)), "ce": float(np.mean(ces)),
            "example": texts[i], "example_ce": ces[i], "example_steered": bool(steered[i]), "sample": i}


def topic_sweep(model, sae, tok, feature: int, max_act: float, prompts: list[str], concept: str = "golden_gate",
                multiples=MULTIPLES, n: int = 5, max_new_tokens: int = 48, seed: int = 0,
                stop_when_broken: bool = False, temperature: float | None = None,
                baseline: bool = True) -> tuple[dict | None, list[dict]]:
    """Unsteered (unless not `baseline`: None) and clamped at each multiple of `max_act` (at every
    position, as the paper does): (baseline row, [row per multiple]), each row as `_measure_topic`
    with the example's prompt.

    `stop_when_broken`: stop after the first multiple whose mean CE is over twice `FLUENT_CE`
    (the text is broken on average, and a harder clamp only breaks it more)."""
    ids = [[tok.eot_token] + tok.encode(p) for p in prompts]

    def row(samples) -> dict:
        r = _measure_topic(model, tok, samples, concept)
        r["prompt"] = prompts[r.pop("sample") // n]
        return r

    base = row(sample(model, ids, n, max_new_tokens, seed, temperature)) if baseline else None
    rows = []
    for m in multiples:
        with clamp_features(model, sae, clamp={feature: m * max_act}):
            samples = sample(model, ids, n, max_new_tokens, seed, temperature)
        rows.append({"multiple": m, **row(samples)})  # scored by the clean model, outside the clamp
        if stop_when_broken and rows[-1]["ce"] > 2 * FLUENT_CE:
            break
    return base, rows


def topic_candidates(metrics: dict, concept: str, k: int = 8) -> list[int]:
    """The features that may steer `concept`, from held-out detection (`metrics.json`): its
    detector features, highest token AUROC first (at most k); without a detector, the closest
    feature and the highest-AUROC one."""
    concepts = metrics.get("concepts", {})
    if concept not in concepts:
        raise ValueError(f"no concept {concept!r} in the run's metrics; known: {', '.join(concepts) or 'none'}")
    c = concepts[concept]
    found = c.get("detector_features") or [e["feature"] for e in (c.get("detector"), c.get("closest_feature")) if e]
    return list(dict.fromkeys([int(f) for f in found] + ([] if found else [int(c["feature"])])))[:k]


def choose_topic_feature(model, sae, tok, candidates: list[int], max_acts: dict[int, float], concept: str = "golden_gate",
                         multiples=MULTIPLES, n_per_concept: int = 3, n: int = 4, max_new_tokens: int = 32,
                         refine: int = 3, seed: int = 0, log=None) -> dict:
    """The validation sweep: each candidate clamped at each multiple on validation prompts
    (`neutral_prompts`, other seeds than the test's), up to the first multiple that breaks the text
    (`topic_sweep`'s `stop_when_broken`). The fluent window can be narrower than the grid's steps
    (0.6x fluent, 1x broken), so the `refine` best candidates are then tried twice more between
    their best multiple and its neighbours (geometric midpoints). The best (feature, multiple) has
    the highest fluent rate (ties: the higher on-topic rate, then the lower CE). Returns {feature,
    multiple, rule, validation_prompts, candidates: [{feature, multiple, rates there, promotes,
    fluent rate and CE by multiple}]}."""
    prompts = neutral_prompts(n_per_concept, seed=seed + 1)

    def key(r: dict) -> tuple:
        return r["fluent_rate"], r["rate"], -r["ce"]

    def sweep(f: int, ms) -> list[dict]:
        return topic_sweep(model, sae, tok, f, max_acts[f], prompts, concept, ms, n, max_new_tokens,
                           seed=seed + 10_000, stop_when_broken=True, baseline=False)[1]

    tried = {}
    for i, f in enumerate(candidates):
        tried[f] = {r["multiple"]: r for r in sweep(f, multiples)}
        best = max(tried[f].values(), key=key)
        if log:
            log(f"    candidate {i + 1}/{len(candidates)}: feature {f} best at {best['multiple']}x: fluent "
                f"{best['fluent_rate']:.0%}, on topic {best['rate']:.0%}, CE {best['ce']:.2f}")
    for f in sorted(candidates, key=lambda f: key(max(tried[f].values(), key=key)), reverse=True)[:refine]:
        for _ in range(2):
            ms = sorted(tried[f])
            m = max(tried[f].values(), key=key)["multiple"]
            j = ms.index(m)
            lo, hi = (ms[j - 1] if j else m / 2), (ms[j + 1] if j + 1 < len(ms) else m * 2)
            new = [round((lo * m) ** 0.5, 3), round((m * hi) ** 0.5, 3)]
            tried[f].update({r["multiple"]: r for r in sweep(f, [x for x in new if x not in tried[f]])})
        if log:
            best = max(tried[f].values(), key=key)
            log(f"    refined feature {f}: best at {best['multiple']}x: fluent {best['fluent_rate']:.0%}")
    table = []
    for f in candidates:
        rows = sorted(tried[f].values(), key=lambda r: r["multiple"])
        best = max(rows, key=key)
        table.append({"feature": f, "multiple": best["multiple"], "fluent_rate": best["fluent_rate"],
                      "rate": best["rate"], "ce": best["ce"],
                      "promotes": [tok.token_str(t) for t, _ in logit_effects(model, sae, f, k=5).promoted],
                      "fluent_by_multiple": {str(r["multiple"]): r["fluent_rate"] for r in rows},
                      "ce_by_multiple": {str(r["multiple"]): round(r["ce"], 3) for r in rows}})
    win = max(table, key=key)
    rule = (f"of the {len(candidates)} detector features, the one and multiple with the highest fluent on-topic "
            f"rate on {len(prompts) * n} validation continuations ({len(prompts)} held-out neutral prompts)")
    return {"feature": win["feature"], "multiple": win["multiple"], "rule": rule, "validation_prompts": prompts,
            "candidates": table}


def golden_gate_demo(model, sae, tok, metrics: dict, max_acts, seed: int = 0, concept: str = "golden_gate",
                     multiples=MULTIPLES, n: int = 5, n_val: int = 4, n_val_prompts: int = 3, max_candidates: int = 8,
                     prompts: list[str] = NEUTRAL_PROMPTS, log=None) -> dict:
    """Golden Gate Claude on the toy model: choose the feature and multiple on validation prompts
    (`choose_topic_feature`), then clamp it on the test prompts at every multiple.

    The headline (`summary`) is the test prompts' fluent rate at the validation-chosen multiple,
    beside the unsteered rate. `max_acts[f]` is feature f's max activation on held-out text.
    Validation: `n_val_prompts` prompts of each everyday concept × `n_val` samples; test: each of
    `prompts` × `n` samples."""
    candidates = topic_candidates(metrics, concept, max_candidates)
    choice = choose_topic_feature(model, sae, tok, candidates, {f: float(max_acts[f]) for f in candidates}, concept,
                                  multiples, n_per_concept=n_val_prompts, n=n_val, seed=seed, log=log)
    f, max_act = choice["feature"], float(max_acts[choice["feature"]])
    multiples = sorted(set(multiples) | {choice["multiple"]})  # the chosen one may lie between the grid's
    base, rows = topic_sweep(model, sae, tok, f, max_act, prompts, concept, multiples, n, seed=seed)
    at = next(r for r in rows if r["multiple"] == choice["multiple"])
    # the same clamp sampled at temperature 1, for comparison (the tail the demo's temperature cuts)
    base_t1, (at_t1,) = topic_sweep(model, sae, tok, f, max_act, prompts, concept, (choice["multiple"],), n, seed=seed,
                                    temperature=1.0)
    summary = {"feature": f, "multiple": choice["multiple"], "fluent_rate": at["fluent_rate"], "rate": at["rate"],
               "ce": at["ce"], "fluent_baseline": base["fluent_rate"], "rate_baseline": base["rate"],
               "ce_baseline": base["ce"], "fluent_ce": FLUENT_CE, "temperature": TEMPERATURE,
               "fluent_rate_t1": at_t1["fluent_rate"], "fluent_baseline_t1": base_t1["fluent_rate"],
               "rule": choice["rule"]}
    return {"concept": concept, "feature": f, "max_act": max_act, "prompts": list(prompts), "n": n, "baseline": base,
            "sweep": rows, "choice": choice, "summary": summary}


# ----------------------------------------------------------------------------- unsafe code

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
        ids = torch.tensor([c["ids"][-model.cfg.n_ctx:]], device=_device(model))
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
        ids = torch.tensor([c["ids"][-model.cfg.n_ctx:]], device=_device(model))
        _, cache = model.run_with_cache(ids, [site], stop_at=site)
        out.append(sae.encode(cache[site][0, -1:].float())[0])
    return torch.stack(out)


def choose_unsafe_feature(model, sae, tok, n_files: int = 100, seed: int = 0) -> tuple[int, float]:
    """The feature to steer unsafe code with, from held-out detection at the decision: the
    feature whose activation at the token before a switch's value best tells insecure files from
    safe ones (AUROC on `val` files; the demo then runs on `test` files). Returns (feature, AUROC).

    Why not the concept's detector? `unsafe_code` labels whole switch lines, and the features
    specific to them each fire at one position: on the `False` itself (it predicts what follows
    `False`), on the comment's `#`, at the `=` before the value. In a one-layer model a feature
    at position t only writes the prediction of token t+1, so the one that can make the model
    *write* `False` is the one active where `False` is decided; this picks the best detector there.
    """
    acts_u = cut_activations(model, sae, risk_cuts(tok, "unsafe_code", n_files, seed, split="val", first_site=0))
    acts_s = cut_activations(model, sae, risk_cuts(tok, "code", n_files, seed, split="val", first_site=0))
    labels = np.r_[np.ones(len(acts_u), bool), np.zeros(len(acts_s), bool)]
    x = torch.cat([acts_u, acts_s]).cpu().numpy()
    scores = np.array([auroc(x[:, f], labels) for f in range(x.shape[1])])
    best = int(np.argmax(scores))
    return best, float(scores[best])


@torch.no_grad()
def snippet_max_activation(model, sae, tok, feature: int, text: str) -> float:
    """The feature's largest activation over the tokens of `text` (read after an end-of-text token)."""
    ids = torch.tensor([([tok.eot_token] + tok.encode(text))[: model.cfg.n_ctx]], device=_device(model))
    site = sae.cfg.site
    _, cache = model.run_with_cache(ids, [site], stop_at=site)
    return sae.encode(cache[site][0, 1:].float())[:, feature].max().item()


_JUDGE_UNSAFE = [re.compile(p) for p in UNSAFE_PATTERNS]
# well-formed: the switch is set to False and the call or line goes on as code would
_WELLFORMED_OFF = re.compile(r" ?False(?:\)|,|\n|\}|$)(?!False|True)")


def _unsafe_after(tok, prompt_ids: list[int], out_ids: list[int], tail: int = 12) -> bool:
    """Whether the continuation turns a security switch off: the value it writes at the cut is
    `False`, or it writes a later switch as `False` (the prompt's last tokens are kept for that
    match, since the prompt stops inside the switch)."""
    out = tok.decode(out_ids)
    if out.lstrip(" ").startswith("False"):
        return True
    head = tok.decode(prompt_ids[-tail:])
    return any(m.end() > len(head) for p in _JUDGE_UNSAFE for m in p.finditer(head + out))


def _measure_unsafe(model, tok, samples) -> dict:
    """Unsafe rate; well-formed rate (the switch set to `False` and the code going on as code
    would); fluent rate (well-formed and fluent: what counts as steered); kept rate (writes the
    safe value at the cut); mean CE; the first steered sample as the example."""
    texts = [tok.decode(o) for _, o in samples]
    ces = continuation_ce(model, samples)
    unsafe = [_unsafe_after(tok, p, o) for p, o in samples]
    wellformed = [bool(_WELLFORMED_OFF.match(t)) for t in texts]
    steered = [w and is_fluent(c) for w, c in zip(wellformed, ces)]
    i = steered.index(True) if any(steered) else 0
    return {"rate": float(np.mean(unsafe)), "wellformed_rate": float(np.mean(wellformed)),
            "fluent_rate": float(np.mean(steered)), "kept_rate": float(np.mean([t.lstrip(" ").startswith("True")
                                                                               for t in texts])),
            "ce": float(np.mean(ces)), "example": tok.decode(samples[i][0][-24:]) + "‖" + texts[i],
            "example_steered": bool(steered[i])}


def _first_cut_per_file(cuts: list[dict]) -> list[list[int]]:
    first: dict[int, list[int]] = {}
    for c in cuts:
        first.setdefault(c["file"], c["ids"])
    return list(first.values())


def unsafe_sweep(model, sae, tok, feature: int, max_act: float, prompts: list[list[int]], multiples=UNSAFE_MULTIPLES,
                 n: int = 3, max_new_tokens: int = 16, seed: int = 0, everywhere: bool = True) -> tuple[dict, list[dict]]:
    """Unsteered, and clamped at each multiple both at every position (the paper's form; skipped
    without `everywhere`) and over the prompt only (`prompt_only`: the model reads the clamp,
    then writes unedited): (baseline row, [row per multiple]), each row as `_measure_unsafe`."""
    base = _measure_unsafe(model, tok, sample(model, prompts, n, max_new_tokens, seed))
    rows = []
    for m in multiples:
        row = {"multiple": m}
        if everywhere:
            with clamp_features(model, sae, clamp={feature: m * max_act}):
                samples = sample(model, prompts, n, max_new_tokens, seed)
            row.update(_measure_unsafe(model, tok, samples))  # scored by the clean model, outside the clamp
        prompt_only = []
        for j, ids in enumerate(prompts):
            ids = ids[-(model.cfg.n_ctx - max_new_tokens):]
            with clamp_features(model, sae, clamp={feature: m * max_act}, until=len(ids)):
                prompt_only += sample(model, [ids], n, max_new_tokens, seed + j)
        row["prompt_only"] = _measure_unsafe(model, tok, prompt_only)
        rows.append(row)
    return base, rows


def unsafe_code_demo(model, sae, tok, metrics: dict | None, max_acts, seed: int = 0, multiples=UNSAFE_MULTIPLES, n_prompts: int = 30,
                     n: int = 3, max_new_tokens: int = 16, n_detect: int = 100, n_files: int = 100, log=None) -> dict:
    """The unsafe-code feature as a switch and as a detector, as in the paper's demonstration.

    0. The feature: `choose_unsafe_feature` on validation files. The multiple: the highest fluent
       rate clamped over the prompt, on validation safe files.
    1. Prompts are the beginnings of held-out *safe* test files, each cut right before the value
       of its second security switch. The unsteered model should write `True`. Rates
       (`_measure_unsafe`) unsteered and with the feature clamped to each multiple of its max
       activation, at every position and over the prompt only.
    2. The same cut in held-out *insecure* files, unsteered and with the feature clamped to 0:
       does removing the feature make the model keep the check on? `kept_*` is the share that
       writes the safe value at the cut; the rest of the drop in `rate_*` is continuations that
       write neither value (the feature also carried "a value comes next").
    3. As a detector: AUROC of the feature's max activation over a file at telling held-out
       insecure files from safe ones.
    4. Whether the model itself tracks the posture (`unsafe_context_sensitivity`).

    The headline (`summary`) is the fluent rate clamped over the prompt at the chosen multiple.
    `metrics` (the concept table) is not read: the feature is chosen at the decision (step 0).
    """
    feature, decision_auroc = choose_unsafe_feature(model, sae, tok, n_files=n_files, seed=seed)
    max_act = float(max_acts[feature])
    if log:
        log(f"    unsafe-code feature {feature} (decision AUROC {decision_auroc:.3f}); choosing the multiple...")
    val_prompts = _first_cut_per_file(risk_cuts(tok, "code", n_prompts, seed + 1, split="val"))
    _, val_rows = unsafe_sweep(model, sae, tok, feature, max_act, val_prompts, multiples, n, max_new_tokens, seed + 10_000,
                               everywhere=False)
    chosen = max(val_rows, key=lambda r: (r["prompt_only"]["fluent_rate"], -r["multiple"]))["multiple"]

    safe_prompts = _first_cut_per_file(risk_cuts(tok, "code", n_prompts, seed))
    base, rows = unsafe_sweep(model, sae, tok, feature, max_act, safe_prompts, multiples, n, max_new_tokens, seed)
    at = next(r for r in rows if r["multiple"] == chosen)

    unsafe_prompts = _first_cut_per_file(risk_cuts(tok, "unsafe_code", n_prompts, seed))
    started = _measure_unsafe(model, tok, sample(model, unsafe_prompts, n, max_new_tokens, seed))
    with clamp_features(model, sae, clamp={feature: 0.0}):
        samples = sample(model, unsafe_prompts, n, max_new_tokens, seed)
    suppressed = _measure_unsafe(model, tok, samples)

    safe = [document_text(s) for s in concept_segments("code", n_detect, seed=seed + 1, split="test")]
    unsafe = [document_text(s) for s in concept_segments("unsafe_code", n_detect, seed=seed + 1, split="test")]
    scores = np.array([snippet_max_activation(model, sae, tok, feature, t) for t in safe + unsafe])
    detector = auroc(scores, np.array([False] * len(safe) + [True] * len(unsafe)))
    sensitivity = unsafe_context_sensitivity(model, tok, seed=seed)
    po = at["prompt_only"]
    summary = {"feature": feature, "decision_auroc": decision_auroc, "multiple": chosen,
               "fluent_clamped_prompt": po["fluent_rate"], "rate_clamped_prompt": po["rate"],
               "wellformed_clamped_prompt": po["wellformed_rate"], "ce_clamped_prompt": po["ce"],
               "rate_clamped": at["rate"], "wellformed_clamped": at["wellformed_rate"],
               "rate_baseline": base["rate"], "rate_unsafe_start": started["rate"],
               "rate_suppressed": suppressed["rate"], "kept_unsafe_start": started["kept_rate"],
               "kept_suppressed": suppressed["kept_rate"], "detector_auroc": detector,
               "context_sensitivity": sensitivity["ratio"], "fluent_ce": FLUENT_CE}
    return {"concept": "unsafe_code", "prompt_only": True, "feature": feature, "max_act": max_act,
            "decision_auroc": decision_auroc, "baseline": base, "sweep": rows,
            "validation": [{"multiple": r["multiple"], "fluent_rate": r["prompt_only"]["fluent_rate"]} for r in val_rows],
            "multiple": chosen, "started": started, "suppressed": suppressed, "detector_auroc": detector,
            "context_sensitivity": sensitivity, "summary": summary}


# The pipeline's steering stage runs these, in order, into steering.json under their names.
DEMOS = {"golden_gate": golden_gate_demo, "unsafe_code": unsafe_code_demo}
