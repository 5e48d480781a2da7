"""Golden Gate Claude on the toy model (Scaling Monosemanticity, "Influence on Behavior"): clamp the bridge feature
and neutral prompts turn to the bridge, in fluent sentences (steered means on target and fluent: `sae.steering.fluency`).

**Held-out evidence only.** The candidates are the concept's detector features
(`sae.evaluation.concepts`). Each is clamped at every multiple of `MULTIPLES` on validation prompts
(other prompts, other seeds); the (feature, multiple) with the highest fluent rate wins, and is
then measured on the test prompts. Detection alone cannot make this choice: a detector that fires
on the bridge sentences' full stops is a fine detector, but its decoder direction writes "a
sentence starts here", and clamped at every position it breaks every sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sae.interpret import logit_effects
from sae.markdown import Headline, code, num, pct, text, times
from sae.steering.clamp import clamp_features
from sae.steering.fluency import FLUENT_CE, TEMPERATURE, continuation_ce, is_fluent, sample, shown_example
from sae.world.corpus import concept_hits, concept_segments, document_text, top_concept

# The clamps tried, in multiples of the feature's maximum activation on held-out text. The fluent
# window of a one-layer model is narrow and lies anywhere from 0.5x to 4x, depending on the
# feature (the report's sweep table shows a run's), so the grid is fine there, and the Golden
# Gate choice refines it (`choose_topic_feature`). The paper clamped at 10x.
MULTIPLES = (0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 10)
# The test prompts of the Golden Gate demo: neutral openings from the everyday concepts.
NEUTRAL_PROMPTS = [
    "Simmer the soup", "The forecast for Monday", "The striker", "The fox", "Preheat the oven",
    "Temperatures will reach", "Fans filled the stadium", "The owl", "Whisk the eggs", "Expect heavy rain",
]
DISTRACTORS = ("cooking", "weather", "sports", "animals")


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


def example_index(texts: list[str], steered: list[bool], concept: str) -> int:
    """The sample to show: the steered one with the most of `concept`'s text (the judge's hits; ties:
    the first), or the first sample when none is steered."""
    hits = [concept_hits(t).get(concept, 0) if s else -1 for t, s in zip(texts, steered)]
    return hits.index(max(hits)) if any(steered) else 0


def _measure_topic(model, tok, samples, concept: str, prompts: list[str], n: int) -> dict:
    """On-topic rate, fluent rate (on topic and fluent) and mean CE of `samples` (`n` of each of
    `prompts`); the example (`example_index`) and its prompt."""
    texts = [tok.decode(o) for _, o in samples]
    ces = continuation_ce(model, samples)
    on = [top_concept(t) == concept for t in texts]
    steered = [o and is_fluent(c) for o, c in zip(on, ces)]
    i = example_index(texts, steered, concept)
    return {"rate": float(np.mean(on)), "fluent_rate": float(np.mean(steered)), "ce": float(np.mean(ces)),
            "example": texts[i], "example_ce": ces[i], "example_steered": bool(steered[i]),
            "prompt": prompts[i // n]}


def topic_sweep(model, sae, tok, feature: int, max_act: float, prompts: list[str], concept: str = "golden_gate",
                multiples=MULTIPLES, n: int = 5, max_new_tokens: int = 48, seed: int = 0,
                stop_when_broken: bool = False, temperature: float | None = None,
                baseline: bool = True) -> tuple[dict | None, list[dict]]:
    """Unsteered (unless not `baseline`: None) and clamped at each multiple of `max_act` (at every
    position, as the paper does): (baseline row, [row per multiple]), each row as `_measure_topic`.

    `stop_when_broken`: stop after the first multiple whose mean CE is over twice `FLUENT_CE`
    (the text is broken on average, and a harder clamp only breaks it more)."""
    ids = [[tok.eot_token] + tok.encode(p) for p in prompts]
    base = None
    if baseline:
        samples = sample(model, ids, n, max_new_tokens, seed, temperature)
        base = _measure_topic(model, tok, samples, concept, prompts, n)
    rows = []
    for m in multiples:
        with clamp_features(model, sae, clamp={feature: m * max_act}):
            samples = sample(model, ids, n, max_new_tokens, seed, temperature)
        rows.append({"multiple": m, **_measure_topic(model, tok, samples, concept, prompts, n)})
        if stop_when_broken and rows[-1]["ce"] > 2 * FLUENT_CE:
            break
    return base, rows


def topic_candidates(concepts: dict, concept: str, k: int = 8) -> tuple[list[int], str]:
    """The features that may steer `concept`, from held-out detection (`concepts`: the concept table,
    `sae.evaluation.concepts.Result.rows`), and what they are: its detector features, highest token
    AUROC first (at most k); without a detector, its closest feature (else its highest-AUROC one)."""
    if concept not in concepts:
        raise ValueError(f"no concept {concept!r} in the run's concept table; known: {', '.join(concepts) or 'none'}")
    c = concepts[concept]
    found = c.get("detector_features") or [e["feature"] for e in (c.get("detector"), c.get("closest_feature")) if e]
    features = list(dict.fromkeys([int(f) for f in found] + ([] if found else [int(c["feature"])])))[:k]
    if c.get("detector_features") or c.get("detector"):
        return features, "detector features"
    return features, "candidate features (no detector feature: its closest one)"


def choose_topic_feature(model, sae, tok, candidates: list[int], max_acts: dict[int, float], concept: str = "golden_gate",
                         multiples=MULTIPLES, n_per_concept: int = 3, n: int = 4, max_new_tokens: int = 32,
                         refine: int = 3, seed: int = 0, log=None, kind: str = "detector features") -> dict:
    """The validation sweep: each candidate clamped at each multiple on validation prompts
    (`neutral_prompts`, other seeds than the test's) up to the first that breaks the text; the
    fluent window can be narrower than the grid's steps, so the `refine` best candidates are then
    tried twice more at the geometric midpoints around their best multiple. The best (feature,
    multiple) has the highest fluent rate (ties: the higher on-topic rate, then the lower CE).
    Returns {feature, multiple, rule, validation_prompts, candidates: [{feature, multiple, rates
    there, promotes, fluent rate and CE by multiple}]}."""
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
    rule = (f"of the {len(candidates)} {kind}, the one and multiple with the highest fluent on-topic "
            f"rate on {len(prompts) * n} validation continuations ({len(prompts)} held-out neutral prompts)")
    return {"feature": win["feature"], "multiple": win["multiple"], "rule": rule, "validation_prompts": prompts,
            "candidates": table}


def golden_gate_demo(model, sae, tok, concepts: dict, max_acts, seed: int = 0, concept: str = "golden_gate",
                     multiples=MULTIPLES, n: int = 5, n_val: int = 4, n_val_prompts: int = 3, max_candidates: int = 8,
                     prompts: list[str] = NEUTRAL_PROMPTS, log=None) -> dict:
    """Golden Gate Claude on the toy model: choose the feature and multiple on validation prompts
    (`choose_topic_feature`: `n_val_prompts` prompts of each everyday concept × `n_val` samples),
    then clamp it at every multiple on the test prompts (each of `prompts` × `n` samples). The
    headline (`summary`) is the test fluent rate at the chosen multiple, beside the unsteered one.
    `concepts`: the concept table (`sae.evaluation.concepts.Result.rows`); `max_acts[f]`: feature
    f's max activation on held-out text."""
    candidates, kind = topic_candidates(concepts, concept, max_candidates)
    choice = choose_topic_feature(model, sae, tok, candidates, {f: float(max_acts[f]) for f in candidates}, concept,
                                  multiples, n_per_concept=n_val_prompts, n=n_val, seed=seed, log=log, kind=kind)
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


# ----------------------------------------------------------------------------- the analysis

NAME = "golden_gate"

# What every seed of the default run must show (the README states it).
TARGETS = {"Golden Gate steered >= 60%, unsteered <= 5%": lambda h: h["gg_fluent"] >= 0.6 and h["gg_baseline"] <= 0.05}


@dataclass
class Result:
    """`golden_gate_demo`'s record; `summary` holds its headline numbers."""

    concept: str
    feature: int
    max_act: float
    prompts: list[str]
    n: int
    baseline: dict
    sweep: list[dict]
    choice: dict
    summary: dict


def run(run) -> Result:
    """The demo on a run (`sae.run.files.Run`): its model, SAE and tokenizer, its concept table, its
    features' max activations, its seed."""
    return Result(**golden_gate_demo(run.model, run.sae, run.tok, run.result("concepts").rows,
                                     run.stats.max_act.tolist(), seed=run.preset.seed, log=run.log))


def headline(r: Result) -> list[Headline]:
    s = r.summary
    return [Headline("gg_feature", "Golden Gate feature", s["feature"], "d"),
            Headline("gg_multiple", "its clamp (× max activation; the paper: 10×)", s["multiple"], "g"),
            Headline("gg_rate", "Golden Gate: continuations on topic, clamped", s["rate"], "%"),
            Headline("gg_fluent", "Golden Gate: steered (on topic and fluent), clamped", s["fluent_rate"], "%"),
            Headline("gg_baseline", "Golden Gate: steered, unsteered", s["fluent_baseline"], "%")]


def section(r: Result, page) -> list[str]:
    s, choice = r.summary, r.choice
    at = next((row for row in r.sweep if row.get("multiple") == s["multiple"]), None)
    out = ["## Steering: Golden Gate", "",
           f"Clamping the Golden Gate feature ({num(s['feature'])}) at {times(s['multiple'])}× its maximum activation: "
           f"{pct(s['fluent_baseline'])} of continuations of neutral prompts are steered unsteered, "
           f"**{pct(s['fluent_rate'])}** clamped (on topic {pct(s['rate'])}, CE {num(s['ce'], '.2f')} nats/token against "
           f"{num(s['ce_baseline'], '.2f')} unsteered). A continuation is *steered* when the judge finds it on topic and "
           f"it is fluent (the clean model's CE of it at most {num(s['fluent_ce'], '.1f')} nats/token). Scaling "
           "Monosemanticity clamped theirs at 10×.", "",
           (f"A steered continuation at {times(s['multiple'])}× (the most on topic): {shown_example(at, 400)}" if at and at.get("example_steered")
            else f"No continuation at {times(s['multiple'])}× was both on topic and fluent, so none is shown."), "",
           f"The feature and the multiple are chosen on validation prompts "
           f"({text(', '.join(choice['validation_prompts']))}): {text(s['rule'])}. Each candidate, at its best multiple "
           "there:", "",
           "| feature | best multiple | steered (validation) | on topic | CE | promotes |", "|---|---|---|---|---|---|"]
    for c in choice["candidates"]:
        name = f"**{num(c['feature'])}** (chosen)" if c["feature"] == s["feature"] else num(c["feature"])
        out.append(f"| {name} | {times(c['multiple'])} | {pct(c['fluent_rate'])} | {pct(c['rate'])} | "
                   f"{num(c['ce'], '.2f')} | {code(' '.join(repr(t) for t in c['promotes']), cell=True)} |")
    out += ["", f"Feature {num(s['feature'])} (max activation {r.max_act:.2f}) on the test prompts, unsteered and "
            "clamped at every position. The example is the most on-topic steered continuation (after the prompt in "
            "bold), or the first one marked *not steered*.", "",
            "| clamp (× max) | steered (on topic, fluent) | on topic | CE (nats/token) | example |",
            "|---|---|---|---|---|"]
    for row in [{**r.baseline, "multiple": "none"}] + r.sweep:
        out.append(f"| {times(row['multiple'])} | {pct(row['fluent_rate'])} | {pct(row['rate'])} | "
                   f"{num(row['ce'], '.2f')} | {shown_example(row)} |")
    return out + [""]
