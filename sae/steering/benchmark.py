"""The steering benchmark: is a dictionary feature a good handle? Every concept, every method, the
strength chosen on validation prompts and measured on test prompts, scored exactly by the world's labels.

The field asks it with an LLM judge (AxBench, Wu et al. 2025: prompting 0.894, DiffMean 0.239, SAE
features 0.165 on Gemma-2); the toy world labels every sentence, so here each score is exact
(`sae.steering.scores`): a continuation is *steered* when at least half of its sentences are on the
target and it is fluent; beside it its concept and fluency scores, their harmonic mean, the
off-target shift and the capability under the steer (the sweet spot of strengths).

Methods (`sae.steering.methods`): the SAE clamp on detector features (the demos' rule) and on the
features with the highest output score (Arad et al. 2025), the SAE feature's decoder direction
added, the two best SAE features clamped together (each at its best multiple, then scaled
together), DiffMean, a logistic probe's direction, the best MLP neuron clamped, random directions
(the control: four, pooled), and prompting with a held-out sentence of the concept. Each method's
unit and strength are chosen on validation prompts (the most steered; ties: the higher score; on
the strength grid, then at the midpoints around the best), which never include a test prompt; the
tables report the test prompts. The control is not tuned: it is added at the norm DiffMean chose,
so it asks whether *any* edit that large steers. (Tuned, it would find one: a random direction an
activation's norm long pushes a one-layer model's text onto some concept, a different one for each
direction, which is also why one direction alone is too noisy a control; the report's curves show it.) The code concepts are left out: their judge works on
whole snippets (a safe line of unsafe code is plain code), not sentences.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from sae.markdown import Headline, num, pct, text
from sae.plots import steering_pareto
from sae.steering.fluency import FLUENT_CE, TEMPERATURE, continuation_ce, device_of
from sae.steering.golden_gate import DISTRACTORS, topic_candidates
from sae.steering.methods import Handle, concept_tokens, fit_directions, output_scores, row_edit
from sae.steering.scores import (ARITHMETIC_MARGIN, LOSS_MARGIN, STEERED, held_out_sums, judge_quality,
                                 measure_capability, off_target, score_texts)
from sae.world.corpus import CONCEPTS, concept_segments, document_text, toy_tokens

NAME = "steer_eval"
METHODS = {  # name: what it is
    "sae_clamp": "SAE feature clamped (detector features)",
    "sae_output": "SAE feature clamped (highest output score)",
    "sae_add": "SAE decoder direction added",
    "sae_pair": "two SAE features clamped together",
    "diffmean": "DiffMean direction added",
    "probe": "logistic probe's direction added",
    "neuron": "MLP neuron clamped",
    "random": "random directions added (control)",
    "prompt": "prompting with a sentence of the concept",
}
SAE_METHODS = ("sae_clamp", "sae_output", "sae_add", "sae_pair")
# The strengths tried: the fluent window is narrow (between "no effect" and "broken text", often
# within a factor of 2), so the grids are fine where it usually lies (the report's curves show it).
CLAMP_GRID = (0.5, 0.75, 1, 1.5, 2, 3, 4, 10)  # × the unit's max activation on held-out text (the paper: 10×)
ADD_GRID = (0.25, 0.375, 0.5, 0.75, 1, 1.5, 2)  # × ρ, the mean norm of the site's activation on held-out text
PAIR_GRID = (0.5, 0.75, 1)  # × each feature's own best multiple, for two features clamped together


@dataclass
class Sizes:
    val_prompts: int = 3  # per distractor concept (other than the target)
    val_samples: int = 2  # continuations per prompt and setting
    test_prompts: int = 3
    test_samples: int = 5
    candidates: int = 3  # SAE features tried per SAE method
    val_tokens: int = 32  # new tokens per validation continuation
    test_tokens: int = 48
    heldout_tokens: int = 60_000  # labelled activations the directions are fitted on
    capability_windows: int = 16  # held-out windows of 64 tokens for the loss under the steer
    arithmetic: int = 32  # held-out `a + b =` prompts


SIZES = {"smoke": Sizes(1, 1, 1, 2, 1, 12, 16, 4_000, 4, 8)}  # the default for any other preset: Sizes()


@dataclass
class Result:
    concepts: dict  # {concept: {methods: {method: row}, unsteered: row, winner, sae_best}}
    sizes: dict
    capability_clean: dict  # {concept: {loss, arithmetic}}
    judge: dict  # {concept: {precision, recall}} on held-out labelled sentences
    rho: float  # the mean norm of the site's activation on held-out text (the added directions' unit)


# ----------------------------------------------------------------------------- prompts

def prompt_sets(n: int, seed: int) -> tuple[dict, dict]:
    """({distractor: validation prompts}, {distractor: test prompts}): the first three words of
    held-out segments of each everyday concept, validation from the "val" split, test from the "test"
    split with another seed, a test prompt never one of the validation prompts."""
    def draw(split: str, s: int, avoid: set) -> dict:
        out = {}
        for c in DISTRACTORS:
            mine = []
            for seg in concept_segments(c, 20 * n, seed=s, split=split):
                p = " ".join(document_text(seg).split()[:3])
                if p not in mine and p not in avoid:
                    mine.append(p)
            out[c] = mine[:n]
        return out
    val = draw("val", seed + 1, set())
    return val, draw("test", seed + 2, {p for ps in val.values() for p in ps})


def concept_sentence(concept: str, split: str, seed: int, i: int) -> str:
    """A held-out sentence of the concept (the prompting method's prefix): the first sentence of segment i."""
    segs = concept_segments(concept, i + 1, seed=seed, split=split)
    first = document_text(segs[i]).split(". ")[0].strip()
    return first if first.endswith((".", "!", "?")) else first + "."


# ----------------------------------------------------------------------------- sampling and measuring

def _measure(model, sae, tok, prompt: str, settings: list, n: int, max_new: int, seed: int, concept: str,
             prefix: str = "") -> list[dict]:
    """`n` continuations of `prompt` under each setting (handle, strength) or None, one batch, and
    their texts, CEs (given the prompt as the steered model read it) and scores."""
    ids = [tok.eot_token] + tok.encode((prefix + " " if prefix else "") + prompt)
    ids = ids[-(model.cfg.n_ctx - max_new):]
    rows = [s for s in settings for _ in range(n)]
    batch = torch.tensor([ids] * len(rows), device=device_of(model))
    # sample i of every setting draws with the same uniforms (common random numbers): the methods are
    # compared on the same draws, and a setting's text does not depend on which others share its batch
    uniforms = torch.rand(n, max_new, generator=torch.Generator().manual_seed(seed)).repeat(len(settings), 1)
    with torch.no_grad(), model.hooks({sae.cfg.site: row_edit(sae, rows)}):
        out = model.generate(batch, max_new, temperature=TEMPERATURE, use_cache=True, uniforms=uniforms)
    conts = out[:, len(ids):].tolist()
    ces = continuation_ce(model, [(ids, c) for c in conts])
    texts = [tok.decode(c) for c in conts]
    return [{"texts": texts[k * n:(k + 1) * n], "ces": ces[k * n:(k + 1) * n]} for k in range(len(settings))]


def _pool(parts: list[list[dict]], concept: str, groups: list[list[int]] | None = None) -> list[dict]:
    """Per group of settings (default: each setting alone), the scores over every prompt's
    continuations of its settings (parts: per prompt, per setting)."""
    groups = groups or [[k] for k in range(len(parts[0]))]
    return [score_texts([t for p in parts for k in g for t in p[k]["texts"]],
                        [x for p in parts for k in g for x in p[k]["ces"]], concept)
            | {"example": parts[0][g[0]]["texts"][0]} for g in groups]


def _heldout(model, sae, tok, n_tokens: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Site activations (n, d_in) and labels (n,) of held-out "val" text, and its tokens and labels."""
    tokens, labels = toy_tokens(tok, n_tokens, seed=seed + 101, split="val")
    T = model.cfg.n_ctx
    n = len(tokens) // T * T
    x = torch.as_tensor(tokens[:n].astype(np.int64), device=device_of(model)).view(-1, T)
    acts = []
    with torch.no_grad():
        for i in range(0, len(x), 64):
            _, cache = model.run_with_cache(x[i:i + 64], [sae.cfg.site], stop_at=sae.cfg.site)
            acts.append(cache[sae.cfg.site].reshape(-1, sae.cfg.d_in).float().cpu())
    return torch.cat(acts), torch.as_tensor(labels[:n].astype(np.int64)), tokens[:n], labels[:n]


# ----------------------------------------------------------------------------- the benchmark

def handles(model, sae, concept: str, rows: dict, max_acts, acts: torch.Tensor, directions: dict, tokens: list[int],
            k: int, rho: float) -> dict[str, list[Handle]]:
    """{method: the handles it may use for `concept`} (`rows`: the run's concept table)."""
    c = CONCEPTS.index(concept)
    detect, _ = topic_candidates(rows, concept, k)
    alive = torch.as_tensor(max_acts) > 0
    scores = output_scores(model, sae, tokens).masked_fill(~alive, -float("inf"))
    by_output = [int(f) for f in scores.topk(k).indices]
    row = rows[concept]
    neuron = int((row.get("neuron_detector") or {}).get("neuron", row.get("neuron", 0)))

    def feature(method: str, f: int) -> Handle:
        return Handle(method, "feature", f"feature {f}", f, float(max_acts[f]))

    def add(method: str, label: str, d: torch.Tensor) -> Handle:
        return Handle(method, "add", label, direction=d / d.norm().clamp_min(1e-12), scale=rho)
    return {
        "sae_clamp": [feature("sae_clamp", f) for f in detect],
        "sae_output": [feature("sae_output", f) for f in by_output],
        "sae_add": [add("sae_add", f"feature {f}", sae.W_dec[f].detach().float().cpu()) for f in detect],
        "diffmean": [add("diffmean", "DiffMean", directions["diffmean"][c])],
        "probe": [add("probe", "logistic probe", directions["probe"][c])],
        "neuron": [Handle("neuron", "neuron", f"neuron {neuron}", neuron, float(acts[:, neuron].max()))],
        "random": [add("random", f"{len(directions['random'][c])} random directions", d)
                   for d in directions["random"][c]],
        "prompt": [Handle("prompt", "prompt", "a sentence of the concept")],
    }


def grid(h: Handle) -> tuple:
    return {"feature": CLAMP_GRID, "neuron": CLAMP_GRID, "add": ADD_GRID, "features": PAIR_GRID, "prompt": (1,)}[h.kind]


def steer_concept(model, sae, tok, concept: str, hs: dict, val: dict, test: dict, sz: Sizes, seed: int,
                  capability: tuple, log=None) -> dict:
    """One concept: each method's (unit, strength) chosen on the validation prompts, then every
    method at its choice and the unsteered model on the test prompts, and the capability under each
    method's unit across its strengths."""
    val_prompts = [p for d, ps in val.items() if d != concept for p in ps]
    test_prompts = [p for d, ps in test.items() if d != concept for p in ps]
    settings = [(h, s) for m in METHODS if m not in ("prompt", "sae_pair") for h in hs[m] for s in grid(h)]
    parts = [_measure(model, sae, tok, p, settings, sz.val_samples, sz.val_tokens, seed + 1000 + i, concept)
             for i, p in enumerate(val_prompts)]
    pooled = _pool(parts, concept)
    prompted = _pool([_measure(model, sae, tok, p, [None], sz.val_samples, sz.val_tokens, seed + 2000 + i, concept,
                               prefix=concept_sentence(concept, "val", seed + 3, i)) for i, p in enumerate(val_prompts)],
                     concept)[0]
    rows = {m: [(st, r) for st, r in zip(settings, pooled) if st[0].method == m] for m in METHODS
            if m not in ("prompt", "sae_pair", "random")}
    # the control: its random directions pooled at each strength (one direction may happen to point at the concept)
    first = hs["random"][0]
    rows["random"] = [((first, s), r) for s, r in zip(grid(first), _pool(parts, concept, [
        [k for k, st in enumerate(settings) if st[0].method == "random" and st[1] == s] for s in grid(first)]))]
    tuned = [m for m in METHODS if m not in ("prompt", "random", "sae_pair")]
    # the fluent window can be narrower than the grid's steps: each method's best unit is tried again
    # at the geometric midpoints around its best strength
    best = {m: max(rows[m], key=lambda x: (x[1]["steered"], x[1]["score"]))[0] for m in tuned}
    extra = []
    for m in tuned:
        h, s = best[m]
        g = grid(h)
        j = g.index(s)
        lo, hi = (g[j - 1] if j else s / 2), (g[j + 1] if j + 1 < len(g) else s * 2)
        extra += [(h, round((lo * s) ** 0.5, 3)), (h, round((s * hi) ** 0.5, 3))]
    parts = [_measure(model, sae, tok, p, extra, sz.val_samples, sz.val_tokens, seed + 1500 + i, concept)
             for i, p in enumerate(val_prompts)]
    for st, r in zip(extra, _pool(parts, concept)):
        rows[st[0].method].append((st, r))
    chosen = {m: max(rows[m], key=lambda x: (x[1]["steered"], x[1]["score"]))[0] for m in tuned}
    # two features together: the two best candidates on validation, each at its best multiple, scaled together
    top = {}
    for st, r in rows["sae_clamp"] + rows["sae_output"]:
        if st[0].unit not in top or (r["steered"], r["score"]) > (top[st[0].unit][1]["steered"], top[st[0].unit][1]["score"]):
            top[st[0].unit] = (st, r)
    two = sorted(top.values(), key=lambda x: (x[1]["steered"], x[1]["score"]), reverse=True)[:2]
    pair = Handle("sae_pair", "features", " + ".join(st[0].label for st, _ in two), parts=[st for st, _ in two])
    parts = [_measure(model, sae, tok, p, [(pair, t) for t in PAIR_GRID], sz.val_samples, sz.val_tokens,
                      seed + 1700 + i, concept) for i, p in enumerate(val_prompts)]
    rows["sae_pair"] = list(zip([(pair, t) for t in PAIR_GRID], _pool(parts, concept)))
    chosen["sae_pair"] = max(rows["sae_pair"], key=lambda x: (x[1]["steered"], x[1]["score"]))[0]
    chosen["random"] = (first, chosen["diffmean"][1])  # the control is not tuned: DiffMean's norm
    chosen["prompt"] = (hs["prompt"][0], 1)
    curves = {m: sorted(({"strength": st[1], "unit": st[0].label, **_short(r)} for st, r in rows[m]
                         if st[0] is chosen[m][0]), key=lambda c: c["strength"]) for m in rows}
    curves["prompt"] = [{"strength": 1, "unit": hs["prompt"][0].label, **_short(prompted)}]
    order = [m for m in METHODS if m not in ("prompt", "random")]
    test_settings = [None] + [chosen[m] for m in order] + [(h, chosen["random"][1]) for h in hs["random"]]
    parts = [_measure(model, sae, tok, p, test_settings, sz.test_samples, sz.test_tokens, seed + 5000 + i, concept)
             for i, p in enumerate(test_prompts)]
    groups = [[k] for k in range(len(order) + 1)] + [list(range(len(order) + 1, len(test_settings)))]
    measured = dict(zip(["unsteered"] + order + ["random"], _pool(parts, concept, groups)))
    order.append("random")  # (its capability: under the first of its directions)
    measured["prompt"] = _pool([_measure(model, sae, tok, p, [None], sz.test_samples, sz.test_tokens,
                                         seed + 6000 + i, concept, prefix=concept_sentence(concept, "test", seed + 4, i))
                                for i, p in enumerate(test_prompts)], concept)[0]
    windows, wlabels, sums = capability
    cid = CONCEPTS.index(concept)
    cap_settings = [(chosen[m][0], s) for m in order for s in sorted(set(grid(chosen[m][0])) | {chosen[m][1]})]
    caps = measure_capability(model, sae, cap_settings, windows, wlabels, cid, sums, tok)
    clean = measure_capability(model, sae, [None], windows, wlabels, cid, sums, tok)[0]
    base = measured["unsteered"]
    methods = {}
    for m in METHODS:
        h, s = chosen[m]
        r = measured[m]
        tv, top, change = off_target(r["other"], base["other"])
        cap = [{"strength": st[1], **c} for st, c in zip(cap_settings, caps) if st[0] is h] if m != "prompt" else []
        ok = [c["strength"] for c in cap if c["loss"] - clean["loss"] <= LOSS_MARGIN
              and c["arithmetic"] >= clean["arithmetic"] - ARITHMETIC_MARGIN]
        at = next((c for c in cap if c["strength"] == s), None)
        methods[m] = {"unit": h.label, "strength": s, **_short(r), "example": r["example"],
                      "off_target_tv": tv, "off_target_top": top, "off_target_change": change,
                      "d_loss": at["loss"] - clean["loss"] if at else None,
                      "arithmetic": at["arithmetic"] if at else None,
                      "sweet_spot": [min(ok), max(ok)] if ok else None, "in_sweet_spot": s in ok if cap else None,
                      "capability": cap, "validation": curves[m]}
    winner = max(METHODS, key=lambda m: (methods[m]["steered"], methods[m]["score"]))
    winner = winner if methods[winner]["steered"] > 0 else "none"  # (nothing steered: no winner)
    sae_best = max(SAE_METHODS, key=lambda m: next((c["steered"], c["score"]) for c in curves[m]
                                                   if c["strength"] == chosen[m][1]))
    return {"methods": methods, "unsteered": {**_short(base), "example": base["example"]}, "winner": winner,
            "sae_best": sae_best, "clean": clean}


def _short(r: dict) -> dict:
    return {k: r[k] for k in ("steered", "on_target", "concept", "fluent", "ce", "score")}


def steer_eval(model, sae, tok, rows: dict, max_acts, seed: int = 0, sizes: Sizes | None = None,
               concepts: list[str] | None = None, log=None) -> Result:
    """The benchmark on a model and SAE (`rows`: the run's concept table, `max_acts`: each feature's
    max activation on held-out text), for `concepts` (default: `STEERED`)."""
    sz, t0 = sizes or Sizes(), time.perf_counter()
    concepts = concepts or [c for c in STEERED if c in rows]
    acts, labels, tokens, tlabels = _heldout(model, sae, tok, sz.heldout_tokens, seed)
    rho = float(acts.norm(dim=1).mean())
    directions = fit_directions(acts, labels, len(CONCEPTS), seed=seed)
    wt, wl = toy_tokens(tok, sz.capability_windows * 64, seed=seed + 303, split="test")
    dev = device_of(model)
    windows = torch.as_tensor(wt.astype(np.int64), device=dev).view(-1, 64)
    wlabels = torch.as_tensor(wl.astype(np.int64), device=dev).view(-1, 64)
    capability = (windows, wlabels, held_out_sums(tok, sz.arithmetic, seed, dev))
    val, test = prompt_sets(sz.val_prompts, seed)
    out, clean = {}, {}
    for i, c in enumerate(concepts, 1):
        t1 = time.perf_counter()
        hs = handles(model, sae, c, rows, max_acts, acts, directions,
                     concept_tokens(tokens, tlabels, CONCEPTS.index(c)), sz.candidates, rho)
        r = steer_concept(model, sae, tok, c, hs, val, test, sz, seed, capability, log)
        clean[c] = r.pop("clean")
        out[c] = r
        if log:
            spent = time.perf_counter() - t0
            log(f"    {i}/{len(concepts)} {c}: steered " + ", ".join(f"{m} {v['steered']:.0%}" for m, v in r["methods"].items())
                + f"; winner {r['winner']} ({time.perf_counter() - t1:.0f}s, about {spent / i * (len(concepts) - i):.0f}s left)")
    return Result(out, vars(sz), clean, judge_quality(), rho)


# ----------------------------------------------------------------------------- the analysis

TARGETS = {"steering control: random directions on target <= 5% for every concept": lambda h: h["steer_random_max"] <= 0.05,
           "Golden Gate steered >= 60% by the SAE method chosen on validation": lambda h: h["steer_gg_sae"] >= 0.6}


def run(run) -> Result | None:
    """The benchmark on a run (`sae.run.files.Run`) of the toy world, with its preset's `SIZES`."""
    if run.preset.corpus != "toy":
        return None
    r = steer_eval(run.model, run.sae, run.tok, run.result("concepts").rows, run.stats.max_act.tolist(),
                   seed=run.preset.seed, sizes=SIZES.get(run.preset.name), log=run.log)
    steering_pareto({c: {m: v["validation"] for m, v in row["methods"].items()} for c, row in r.concepts.items()},
                    METHODS, FLUENT_CE, run.path / "figures" / "steer_eval.png")
    return r


def _wins(r: Result, methods) -> int:
    return sum(row["winner"] in methods for row in r.concepts.values())


def headline(r: Result) -> list[Headline]:
    rows = r.concepts
    gg = rows.get("golden_gate")
    mean = {m: float(np.mean([row["methods"][m]["steered"] for row in rows.values()])) for m in METHODS}
    best_sae = float(np.mean([row["methods"][row["sae_best"]]["steered"] for row in rows.values()]))
    return [Headline("steer_gg_sae", "steering benchmark: Golden Gate steered, the SAE method chosen on validation",
                     gg["methods"][gg["sae_best"]]["steered"] if gg else None, "%"),
            Headline("steer_gg_diffmean", "steering benchmark: Golden Gate steered, DiffMean",
                     gg["methods"]["diffmean"]["steered"] if gg else None, "%"),
            Headline("steer_sae_mean", "steering benchmark: mean steered over concepts, the SAE method chosen on validation",
                     best_sae, "%", "AxBench: SAE 0.165"),
            Headline("steer_diffmean_mean", "steering benchmark: mean steered over concepts, DiffMean",
                     mean["diffmean"], "%", "AxBench: DiffMean 0.239"),
            Headline("steer_prompt_mean", "steering benchmark: mean steered over concepts, prompting",
                     mean["prompt"], "%", "AxBench: prompting 0.894"),
            Headline("steer_sae_wins", f"steering benchmark: concepts an SAE method wins, of {len(rows)}",
                     _wins(r, SAE_METHODS), "d"),
            Headline("steer_random_max", "steering benchmark: the random control on target, worst concept",
                     max(row["methods"]["random"]["on_target"] for row in rows.values()), "%")]


def _strength(m: str, s) -> str:
    if m == "prompt":
        return ""
    return f"{s:g}× max" if m in ("sae_clamp", "sae_output", "neuron") else f"{s:g}× their best" if m == "sae_pair" else f"{s:g}ρ"


def section(r: Result, page) -> list[str]:
    rows, names = r.concepts, list(METHODS)
    wins = Counter(row["winner"] for row in rows.values())
    sz = r.sizes
    out = ["## Steering benchmark: is a feature a good handle?", "",
           f"Every concept of prose and pattern ({len(rows)}), every method, each method's unit and strength chosen on "
           f"validation prompts ({sz['val_prompts']} of each everyday concept but the target × {sz['val_samples']} "
           f"samples) and measured on other test prompts ({sz['test_prompts']} of each × {sz['test_samples']} samples, "
           f"{sz['test_tokens']} new tokens). A continuation is *steered* when at least half of its sentences are on the "
           f"target (the world's judge, sentence by sentence) and it is fluent (clean-model CE ≤ {num(FLUENT_CE, '.1f')}). "
           "Its time is in the wall-time table at the end.", "",
           "Steered share on the test prompts (the winner of each concept in bold; `sae.steering.benchmark` defines "
           "every score):", "",
           "| concept | unsteered | " + " | ".join(names) + " |", "|---|" + "---|" * (len(names) + 1)]
    for c, row in rows.items():
        cells = [f"**{pct(row['methods'][m]['steered'])}**" if m == row["winner"] else pct(row["methods"][m]["steered"])
                 for m in names]
        out.append(f"| {c} | {pct(row['unsteered']['steered'])} | " + " | ".join(cells) + " |")
    sae_wins = sum(wins[m] for m in SAE_METHODS)
    worst = max(rows, key=lambda c: rows[c]["methods"]["random"]["on_target"])
    others = len(rows) - sae_wins - wins["diffmean"] - wins["prompt"] - wins["none"]
    out += ["", f"An SAE method wins on {sae_wins} of {len(rows)} concepts, DiffMean on {wins['diffmean']}, prompting "
            f"on {wins['prompt']}, another method on {others}; no method steers any test continuation on "
            f"{wins['none']}. The random "
            f"directions' highest on-target share is {pct(rows[worst]['methods']['random']['on_target'])} ({text(worst)}): "
            + ("the harness does not find steering where there is none." if rows[worst]["methods"]["random"]["on_target"]
               <= 0.05 else "**above the 5% a control should stay under: read the table with care.**"),
            "", *page.figure("steer_eval.png"),
            "Each method at its choice: the unit and strength, the scores, the off-target shift (total variation of the "
            "other sentences' concepts against unsteered, and the concept that moved most), and the capability under "
            f"the steer (Δ loss on the other concepts' held-out text, arithmetic accuracy; the sweet spot: strengths with "
            f"Δ loss ≤ {LOSS_MARGIN} and accuracy down ≤ {ARITHMETIC_MARGIN:.0%}):", "",
            "| concept | method | unit × strength | steered | on target | fluent | CE | score | off-target | Δ loss | "
            "arithmetic | sweet spot |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c, row in rows.items():
        clean = r.capability_clean[c]
        for m in names:
            v = row["methods"][m]
            tv = (f"{v['off_target_tv']:.2f} ({text(v['off_target_top'])} {v['off_target_change']:+.0%})"
                  if v["off_target_tv"] is not None else "—")
            spot = (f"{_strength(m, v['sweet_spot'][0])}–{_strength(m, v['sweet_spot'][1])}"
                    + ("" if v["in_sweet_spot"] else " (choice outside)") if v["sweet_spot"] else "none" if m != "prompt" else "—")
            out.append(f"| {c} | {m} | {text(v['unit'])} {_strength(m, v['strength'])} | {pct(v['steered'])} | "
                       f"{pct(v['on_target'])} | {pct(v['fluent'])} | {num(v['ce'], '.2f')} | {num(v['score'], '.2f')} | {tv} | "
                       f"{num(v['d_loss'], '+.2f')} | {pct(v['arithmetic'])} | {spot} |")
        out.append(f"| {c} | unsteered | — | {pct(row['unsteered']['steered'])} | {pct(row['unsteered']['on_target'])} | "
                   f"{pct(row['unsteered']['fluent'])} | {num(row['unsteered']['ce'], '.2f')} | "
                   f"{num(row['unsteered']['score'], '.2f')} | — | loss {num(clean['loss'], '.2f')} | "
                   f"{pct(clean['arithmetic'])} | — |")
    judge = ", ".join(f"{text(c)} {q['precision']:.2f}/{q['recall']:.2f}" for c, q in r.judge.items())
    out += ["", f"The sentence judge on held-out labelled sentences (precision/recall): {judge}.", ""]
    return out
