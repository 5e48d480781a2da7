"""The unsafe-code demonstration (Scaling Monosemanticity's code-error and backdoor features): clamp the feature of
insecure files, and the model turns a security check off in a safe file; clamp it to 0, and it keeps the check on
in an insecure one.

The feature is the one that best tells insecure files from safe ones where the switch's value is
decided (`choose_unsafe_feature`), and the multiple is the one with the highest fluent rate on
validation files (`sae.steering.fluency`); the demo then runs on test files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sae.evaluation.formulas import auroc
from sae.markdown import Headline, num, pct, times
from sae.steering.clamp import clamp_features
from sae.steering.fluency import FLUENT_CE, continuation_ce, device_of, is_fluent, sample, shown_example
from sae.world.code import POSTURE_COMMENTS, RISKS, UNSAFE_PATTERNS
from sae.world.corpus import concept_segments, document_text

# The unsafe-code clamp over the prompt only edits the one decision, so it does not break text,
# and its rate only grows with the clamp: a coarser grid.
UNSAFE_MULTIPLES = (0.5, 1, 2, 3, 5, 10)

# A security switch with its value, in any file: `verify=False`, `check_hostname=True`...
_SWITCH = re.compile("(" + "|".join(re.escape(before) for before in sorted({r[0] for r in RISKS.values()}, key=len, reverse=True))
                     + ")(True|False)")
_VALUES = {before: (safe, unsafe) for before, safe, unsafe in RISKS.values()}
_CUES = dict(zip(POSTURE_COMMENTS[0], POSTURE_COMMENTS[1])) | dict(zip(POSTURE_COMMENTS[1], POSTURE_COMMENTS[0]))
_CUE = re.compile("# (" + "|".join(re.escape(c) for c in _CUES) + ")\n")


def _flip(text: str) -> str:
    """Code in the opposite posture: every security switch takes its other value, and every
    posture comment (`sae.world.code.POSTURE_COMMENTS`) its counterpart in the other list."""
    def value(m):
        safe, unsafe = _VALUES[m.group(1)]
        return m.group(1) + (unsafe if m.group(2) == safe else safe)
    return _CUE.sub(lambda m: f"# {_CUES[m.group(1)]}\n", _SWITCH.sub(value, text))


def risk_cuts(tok, concept: str, n_files: int, seed: int = 0, split: str = "test", first_site: int = 1,
              flip_context: bool = False) -> list[dict]:
    """Held-out code files of `concept` cut right before the value of each security switch (from the
    `first_site`-th switch of the file on, counting from 0), where the model must write `True` or
    `False`. Each cut is `{"ids": prompt ids (end-of-text first), "safe": id, "unsafe": id,
    "file": i}`, `safe`/`unsafe` being the first tokens where the two values' tokenisations part
    (the prompt stops at the last token they share, so it is tokenised exactly as in training).
    With `flip_context`, the file so far is put in the opposite posture (`_flip`).
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
        ids = torch.tensor([c["ids"][-model.cfg.n_ctx:]], device=device_of(model))
        out.append(model(ids)[0, -1].float().softmax(-1)[c["unsafe"]].item())
    return np.array(out)


# Below this ratio the LM does not tell an insecure file from a safe one well enough to steer.
UNSAFE_SENSITIVITY_MIN = 3.0


def unsafe_context_sensitivity(model, tok, n_files: int = 100, seed: int = 0) -> dict:
    """Does the *language model* know that a file which turned security switches off will do it again?

    On held-out insecure files cut before their second and later switches: the probability of the
    insecure value after the real file (earlier switches off) over that after the same file with
    its earlier switches on. Near 1, the model holds no notion of an insecure file, so no feature
    of its activations can carry one: do no SAE work on such a world. Takes a few seconds.
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
        ids = torch.tensor([c["ids"][-model.cfg.n_ctx:]], device=device_of(model))
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
    ids = torch.tensor([([tok.eot_token] + tok.encode(text))[: model.cfg.n_ctx]], device=device_of(model))
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
    kept = [t.lstrip(" ").startswith("True") for t in texts]
    i = steered.index(True) if any(steered) else 0
    return {"rate": float(np.mean(unsafe)), "wellformed_rate": float(np.mean(wellformed)),
            "fluent_rate": float(np.mean(steered)), "kept_rate": float(np.mean(kept)),
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


def unsafe_code_demo(model, sae, tok, max_acts, seed: int = 0, multiples=UNSAFE_MULTIPLES, n_prompts: int = 30,
                     n: int = 3, max_new_tokens: int = 16, n_detect: int = 100, n_files: int = 100, log=None) -> dict:
    """The unsafe-code feature as a switch and as a detector, as in the paper's demonstration.

    0. The feature: `choose_unsafe_feature` on validation files (the concept table is not read);
       the multiple: the highest fluent rate clamped over the prompt, on validation safe files.
    1. Held-out *safe* test files, each cut right before the value of its second security switch
       (the unsteered model should write `True`): rates (`_measure_unsafe`) unsteered and clamped
       at each multiple of the max activation, at every position and over the prompt only.
    2. The same cut in held-out *insecure* files, unsteered and clamped to 0: does removing the
       feature keep the check on? `kept_*`: the share writing the safe value at the cut; the rest
       of the drop in `rate_*` writes neither value (the feature also carried "a value comes next").
    3. As a detector: AUROC of the feature's max activation over a file, insecure against safe.
    4. Whether the model itself tracks the posture (`unsafe_context_sensitivity`).

    The headline (`summary`) is the fluent rate clamped over the prompt at the chosen multiple.
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


# ----------------------------------------------------------------------------- the analysis

NAME = "unsafe_code"

# What every seed of the default run must show (the README states it).
TARGETS = {"unsafe steered over the prompt >= 50% and >= 5x unsteered <= 10%":
           lambda h: h["unsafe_fluent"] >= 0.5 and h["unsafe_baseline"] <= 0.1
           and h["unsafe_fluent"] >= 5 * h["unsafe_baseline"]}


@dataclass
class Result:
    """`unsafe_code_demo`'s record; `summary` holds its headline numbers."""

    concept: str
    prompt_only: bool  # its clamp acts over the prompt only (`python -m sae steer --concept` clamps so too)
    feature: int
    max_act: float
    decision_auroc: float
    baseline: dict
    sweep: list[dict]
    validation: list[dict]
    multiple: float
    started: dict
    suppressed: dict
    detector_auroc: float
    context_sensitivity: dict
    summary: dict


def run(run) -> Result:
    """The demo on a run (`sae.run.files.Run`): its model, SAE, tokenizer, max activations and seed."""
    return Result(**unsafe_code_demo(run.model, run.sae, run.tok, run.stats.max_act.tolist(), seed=run.preset.seed,
                                     log=run.log))


def headline(r: Result) -> list[Headline]:
    s = r.summary
    return [Headline("unsafe_baseline", "safe files turned unsafe, unsteered", s["rate_baseline"], "%"),
            Headline("unsafe_prompt", "safe files turned unsafe, clamped over the prompt", s["rate_clamped_prompt"], "%"),
            Headline("unsafe_fluent", "safe files turned unsafe, well-formed and fluent (steered), clamped over the prompt",
                     s["fluent_clamped_prompt"], "%"),
            Headline("unsafe_start", "insecure files that turn a check off, unsteered", s["rate_unsafe_start"], "%"),
            Headline("unsafe_suppressed", "the same, the feature clamped to 0", s["rate_suppressed"], "%"),
            Headline("context_sensitivity", "the LM's posture ratio", s["context_sensitivity"], ".1f")]


def section(r: Result, page) -> list[str]:
    s, cs = r.summary, r.context_sensitivity
    out = ["## Steering: unsafe code", "",
           f"Safe files whose continuation turns a security check off, well-formed and fluent, with the unsafe-code "
           f"feature ({num(s['feature'])}) clamped at {times(s['multiple'])}× over the prompt: {pct(s['rate_baseline'])} "
           f"unsafe unsteered, **{pct(s['fluent_clamped_prompt'])}** clamped ({pct(s['rate_clamped_prompt'])} unsafe); clamped "
           f"at every position {pct(s['rate_clamped'])} unsafe, {pct(s['wellformed_clamped'])} well-formed.", "",
           f"Feature {num(s['feature'])} (max activation {r.max_act:.2f}) was chosen by its AUROC at the decision on "
           f"validation files ({num(s['decision_auroc'])}). Prompts are held-out *safe* files cut right before the value "
           "of a security switch (`verify=`); a continuation is unsafe when it turns a switch off, well-formed when the "
           "`False` is followed by what code would write next (`)`, `,`, a new line), and steered when it is "
           "well-formed and fluent. Clamped everywhere, the feature also edits every token the model writes; clamped "
           "over the prompt only, it edits the decision and the model writes the rest unedited. The multiple has the "
           "highest steered rate over the prompt on validation files ("
           + ", ".join(f"{times(v['multiple'])}×: {pct(v['fluent_rate'])}" for v in r.validation) + ").", "",
           "| clamp (× max) | unsafe | well-formed | CE | over the prompt only: unsafe | well-formed | steered | CE | "
           "example (over the prompt) |", "|---|---|---|---|---|---|---|---|---|",
           f"| none | {pct(r.baseline['rate'])} | {pct(r.baseline['wellformed_rate'])} | {num(r.baseline['ce'], '.2f')} "
           f"| | | | | {shown_example(r.baseline)} |"]
    for row in r.sweep:
        po = row["prompt_only"]
        out.append(f"| {times(row['multiple'])} | {pct(row['rate'])} | {pct(row['wellformed_rate'])} | "
                   f"{num(row['ce'], '.2f')} | {pct(po['rate'])} | {pct(po['wellformed_rate'])} | "
                   f"{pct(po['fluent_rate'])} | {num(po['ce'], '.2f')} | {shown_example(po)} |")
    out += ["", f"On held-out *insecure* files cut the same way: {pct(s['rate_unsafe_start'])} unsafe unsteered, "
            f"{pct(s['rate_suppressed'])} with the feature clamped to 0; writing the safe value at the cut: "
            f"{pct(s['kept_unsafe_start'])} → {pct(s['kept_suppressed'])} (the rest writes neither). As a detector of "
            f"insecure files (its max activation over a file), AUROC {s['detector_auroc']:.3f}.", "",
            f"The LM {'tracks' if cs['ratio'] >= UNSAFE_SENSITIVITY_MIN else 'does not track'} a file's posture: "
            f"it gives the insecure value probability {cs['p_after_unsafe']:.3f} "
            f"in insecure files and {cs['p_after_safe']:.3f} in the same files made safe (ratio {cs['ratio']:.1f}, "
            f"{num(cs['n_cuts'])} held-out cuts; below {UNSAFE_SENSITIVITY_MIN:.0f} no feature can carry the posture).", ""]
    return out
