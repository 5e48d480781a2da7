"""Attribution graphs checked against what the world planted (`sae.circuits` builds them).

On Claude nobody knows a circuit's right answer; in our world two are known:

- **Golden Gate.** Held-out bridge sentences cut right before a bridge word (" Bridge", " bridge"):
  the prediction should run through features of the `golden_gate` concept. Measured: the share of
  the pruned graph's feature-node influence held by features whose top concept (most activation
  mass on the held-out text, `FeatureStats.concept_mass`) is `golden_gate`.
- **Unsafe code.** The world writes a posture comment ("# temporary hack", "# strict mode") on the
  line above every security switch, and the one-layer LM reads it there (flipping everything but
  that comment leaves the model's odds unchanged). Held-out insecure files cut before a switch's
  value, target the insecure value (safe files: the safe one): the rank of the comment's best
  token among the input tokens by influence on the logit (1 = the most influential token).

Each check also runs `ablation_check` on its graphs (the graph's predicted logit changes against
the model's) and reports the scores.

The circuits analysis of a run (`sae.run.analyses`, the `circuits` stage): the run's skip transcoders
(one per MLP, TopK at the SAE's held-out L0, trained and evaluated by the stage) beside its SAE, and
both checks through them.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from sae.circuits import ablation_check, attribute, prune
from sae.markdown import Headline, code, num, pct, text
from sae.steering.unsafe_code import _CUE, risk_cuts
from sae.world.corpus import CONCEPTS, concept_id, concept_segments, document_text

BRIDGE_WORDS = re.compile(r" (Bridge|bridge)\b")


def bridge_cuts(tok, n: int, seed: int = 0, split: str = "test") -> list[dict]:
    """Up to `n` held-out `golden_gate` sentences cut right before a bridge word: {"ids": prompt ids
    (end-of-text first), "target": the word's first token}. Cuts where the prompt's tokens are not
    a prefix of the tokenised sentence (a merge across the cut) are skipped."""
    cuts = []
    for doc in concept_segments("golden_gate", 4 * n, seed=seed, split=split):
        text = document_text(doc)
        for m in BRIDGE_WORDS.finditer(text):
            context = text[:m.start()]
            ids, full = tok.encode(context), tok.encode(context + m.group(0))
            if len(full) > len(ids) and full[:len(ids)] == ids:
                cuts.append({"ids": [tok.eot_token] + ids, "target": full[len(ids)]})
                break  # one cut per sentence group: the prompts stay varied
        if len(cuts) == n:
            break
    return cuts


def _token_spans(tok, ids: list[int]) -> list[tuple[int, int]]:
    """The character span of each token in the decoded text."""
    spans, at = [], 0
    for i in ids:
        n = len(tok.decode([i]))
        spans.append((at, at + n))
        at += n
    return spans


def comment_positions(tok, ids: list[int]) -> list[int]:
    """The positions of the tokens that overlap the last posture comment in the prompt."""
    text = tok.decode(ids)
    found = list(_CUE.finditer(text))
    if not found:
        return []
    start, end = found[-1].span(1)
    return [p for p, (a, b) in enumerate(_token_spans(tok, ids)) if a < end and b > start]


def _progress(what: str, done: int, total: int, t0: float) -> None:
    """A line on stderr every 5 graphs (a check builds 20 and runs each one's ablation check)."""
    if done % 5 == 0 or done == total:
        print(f"  {what}: {done}/{total} graphs ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)


def golden_gate_check(model, transcoders, tok, top_concept: np.ndarray, n_prompts: int = 20, seed: int = 0) -> dict:
    """The Golden Gate check (module docstring) over `n_prompts` held-out cuts. `top_concept`: each
    transcoder feature's top concept id (`top_concepts`), a (d_sae,) array for a one-layer model or
    {layer: array}."""
    by_layer = top_concept if isinstance(top_concept, dict) else {0: top_concept}
    gg = concept_id("golden_gate")
    shares, corrs, repl, compl = [], [], [], []
    cuts, t0 = bridge_cuts(tok, n_prompts, seed=seed), time.perf_counter()
    for cut in cuts:
        g = prune(attribute(model, transcoders, cut["ids"][-model.cfg.n_ctx:], cut["target"]))
        n_f = len(g.features)
        kept = [s for s in range(n_f) if g.node_mask[s]]
        mass = g.influence[kept]
        on = torch.tensor([by_layer[g.features[s][0]][g.features[s][2]] == gg for s in kept], dtype=torch.bool)
        shares.append(float(mass[on].sum() / mass.sum()) if len(kept) and float(mass.sum()) > 0 else 0.0)
        corrs.append(ablation_check(model, transcoders, g)["correlation"])
        repl.append(g.scores["replacement"])
        compl.append(g.scores["completeness"])
        _progress("Golden Gate", len(shares), len(cuts), t0)
    return {"n_prompts": len(shares), "golden_gate_share": float(np.mean(shares)), "shares": shares,
            "ablation_correlation": float(np.nanmean(corrs)), "replacement": float(np.mean(repl)),
            "completeness": float(np.mean(compl))}


def unsafe_code_check(model, transcoders, tok, n_files: int = 20, seed: int = 0, concept: str = "unsafe_code") -> dict:
    """The unsafe-code check (module docstring): one cut per held-out file of `concept`
    ("unsafe_code": target the insecure value; "code": the safe one)."""
    ranks, corrs, repl = [], [], []
    seen, t0 = set(), time.perf_counter()
    for cut in risk_cuts(tok, concept, n_files, seed, split="test"):
        if cut["file"] in seen:
            continue
        seen.add(cut["file"])
        ids = cut["ids"][-model.cfg.n_ctx:]
        where = comment_positions(tok, ids)
        if not where:
            continue
        target = cut["unsafe"] if concept == "unsafe_code" else cut["safe"]
        g = prune(attribute(model, transcoders, ids, target))
        n_tok0 = len(g.features) + g.n_layers * g.n_pos
        token_inf = g.influence[n_tok0:n_tok0 + g.n_pos]
        order = token_inf.argsort(descending=True).tolist()
        ranks.append(1 + min(order.index(p) for p in where))
        corrs.append(ablation_check(model, transcoders, g)["correlation"])
        repl.append(g.scores["replacement"])
        _progress(concept, len(ranks), n_files, t0)
    ranks_a = np.array(ranks)
    return {"concept": concept, "n_cuts": len(ranks), "comment_in_top3": float((ranks_a <= 3).mean()) if len(ranks) else 0.0,
            "median_rank": float(np.median(ranks_a)) if len(ranks) else float("nan"), "ranks": ranks,
            "ablation_correlation": float(np.nanmean(corrs)), "replacement": float(np.mean(repl))}


def top_concepts(concept_mass: torch.Tensor) -> np.ndarray:
    """(d_sae,) each feature's concept of most activation mass (`len(CONCEPTS)`: none, or no text)."""
    if concept_mass is None or concept_mass.shape[0] != len(CONCEPTS) + 1:
        raise ValueError("top concepts need feature statistics with concept labels (a run on the toy corpus)")
    return concept_mass.argmax(0).cpu().numpy()


# ----------------------------------------------------------------------------- the circuits analysis
NAME = "circuits"

TARGETS = {
    "transcoder (MLP replaced) adds no more CE than the SAE (neurons spliced) at equal L0":
        lambda h: h["tc_ce_added"] <= h["sae_ce_added"],
    "Golden Gate graphs: >= 70% of feature influence from golden_gate features": lambda h: h["circuit_gg_share"] >= 0.7,
    "unsafe-code graphs: the posture comment in the top 3 input tokens on >= 80% of cuts":
        lambda h: h["circuit_comment_top3"] >= 0.8,
    "ablation check: r >= 0.9 (top 20 features, mean over the prompts)": lambda h: h["circuit_ablation_r"] >= 0.9,
}


@dataclass
class Result:
    k: int  # the transcoders' k: the SAE's held-out L0, rounded (so the two compare at equal L0)
    sae: dict  # `compared`'s numbers of the run's SAE
    transcoders: list[dict]  # the same of each MLP's transcoder, layer 0 first
    golden_gate: dict  # `golden_gate_check` (without the per-prompt shares)
    unsafe: dict  # `unsafe_code_check` on insecure files
    safe: dict  # and on safe files (target the safe value)
    seconds_per_graph: float  # attributed, pruned and ablation-checked, on the machine that ran it


def transcoder_names(n_layer: int, name: str = "tc") -> list[str]:
    """A run's transcoder of each MLP, layer 0 first: `tc`, `tc_1`, ... (the circuits stage's, and
    what `python -m sae circuit --sae NAME` reads)."""
    return [name] + [f"{name}_{layer}" for layer in range(1, n_layer)]


def compared(run) -> dict:
    """The numbers a transcoder and an SAE are compared by, from the evaluation of `run`
    (`sae.run.files.Run`, opened on the SAE or transcoder's name): its site, L0, FVU of what it
    reconstructs, CE added by splicing it in, detectors, best-feature token AUROC, absorption."""
    r, c, g = (run.result(n) for n in ("sae", "concepts", "ground_truth"))
    site = f"{r.site} → {run.sae.cfg.target_site}" if run.sae.transcoder else r.site
    return {"site": site, "l0": r.l0, "fvu": r.fvu, "ce_added": r.ce_added_nats, "ce_recovered": r.ce_recovered_zero,
            "dead": r.dead_fraction, "detector_features": c.detectors["features"], "of": c.detectors["of"],
            "auroc": float(np.mean([row["auroc"] for row in c.rows.values()])), "absorbed": g.absorbed}


def run(run) -> Result | None:
    """The analysis on a run (`sae.run.files.Run`) whose transcoders the stage has trained and
    evaluated; None on unlabelled text."""
    if run.preset.corpus != "toy":
        return None
    opened = [run.named(name) for name in transcoder_names(run.model.cfg.n_layer)]
    tcs = {layer: tc.sae.eval() for layer, tc in enumerate(opened)}
    tops = {layer: top_concepts(tc.stats.concept_mass) for layer, tc in enumerate(opened)}
    n, seed = run.preset.circuit_prompts, run.preset.seed
    t0 = time.perf_counter()
    gg = golden_gate_check(run.model, tcs, run.tok, tops, n_prompts=n, seed=seed)
    unsafe = unsafe_code_check(run.model, tcs, run.tok, n_files=n, seed=seed)
    safe = unsafe_code_check(run.model, tcs, run.tok, n_files=n, seed=seed, concept="code")
    graphs = gg["n_prompts"] + unsafe["n_cuts"] + safe["n_cuts"]
    return Result(k=tcs[0].cfg.k, sae=compared(run), transcoders=[compared(tc) for tc in opened],
                  golden_gate={k: v for k, v in gg.items() if k != "shares"}, unsafe=unsafe, safe=safe,
                  seconds_per_graph=(time.perf_counter() - t0) / max(graphs, 1))


def headline(r: Result) -> list[Headline]:
    tc = r.transcoders[0]
    return [Headline("tc_fvu", "skip transcoder: FVU of the MLP's output (TopK at the SAE's L0)", tc["fvu"]),
            Headline("tc_ce_added", "CE added with the MLP replaced by the transcoder (nats/token)", tc["ce_added"]),
            Headline("sae_ce_added", "CE added with the SAE spliced at the neurons (nats/token), for comparison",
                     r.sae["ce_added"]),
            Headline("circuit_gg_share", "Golden Gate graphs: feature influence from golden_gate features",
                     r.golden_gate["golden_gate_share"], "%"),
            Headline("circuit_comment_top3", "unsafe-code graphs: posture comment among the top 3 input tokens",
                     r.unsafe["comment_in_top3"], "%"),
            Headline("circuit_ablation_r", "ablation check: r of predicted and measured logit changes (top 20 features)",
                     ablation_r(r), ".2f")]


def ablation_r(r: Result) -> float:
    """The ablation check's correlation, averaged over the Golden Gate and unsafe-code prompts."""
    return float(np.mean([r.golden_gate["ablation_correlation"], r.unsafe["ablation_correlation"]]))


def section(r: Result, page) -> list[str]:
    tcs, s = r.transcoders, r.sae
    rows = [("site", "site", lambda v: code(v, cell=True)), ("L0 (active features / token)", "l0", num),
            ("FVU (of what it reconstructs)", "fvu", num), ("CE added by the splice (nats/token)", "ce_added", num),
            ("CE loss recovered (zero-ablation)", "ce_recovered", num), ("dead fraction", "dead", pct),
            ("concepts with a detector feature", "detector_features", lambda v: f"{v} of {s['of']}"),
            ("best feature's token AUROC (mean over concepts)", "auroc", num),
            ("concept tokens absorbed", "absorbed", pct)]
    heads = " | ".join(f"transcoder, MLP {i} replaced" for i in range(len(tcs)))
    tc, better = tcs[0], tcs[0]["ce_added"] <= s["ce_added"]
    gg, un, sa = r.golden_gate, r.unsafe, r.safe
    out = ["## Circuits: a skip transcoder and attribution graphs", "",
           f"A skip transcoder per MLP reads the MLP's input and predicts its output (TopK, k = {r.k}: the SAE's "
           f"held-out L0, rounded, so that the two compare at about equal L0; a TopK transcoder's L0 is at most k, "
           f"here {num(tc['l0'], '.1f')} against the SAE's {num(s['l0'], '.1f')}). Replacing the MLP with it adds "
           f"{num(tc['ce_added'])} nats/token, {'no more than' if better else 'more than'} splicing the SAE in at the "
           f"neurons ({num(s['ce_added'])}); the transcoder leaves {pct(tc['fvu'])} of its target's variance "
           f"unexplained, the SAE {pct(s['fvu'])} of its own.", "",
           f"| metric | SAE, neurons spliced | {heads} |", "|---|---|" + "---|" * len(tcs)]
    out += [f"| {label} | {show(s[k])} | " + " | ".join(show(t[k]) for t in tcs) + " |" for label, k, show in rows]
    out += ["", "Attribution graphs through the transcoders (`sae.circuits`: attention patterns and LayerNorm scales "
            "frozen at the prompt, an error node per position and layer, pruned to 80% of node influence and 98% of "
            "edge influence), checked against what the world planted (`sae.circuit_checks`):", "",
            "| check | prompts | measured | target |", "|---|---|---|---|",
            f"| Golden Gate: feature influence from `golden_gate` features | {gg['n_prompts']} | "
            f"**{pct(gg['golden_gate_share'])}** | >= 70% |",
            f"| insecure files: the posture comment among the top 3 input tokens on `False`'s logit | {un['n_cuts']} | "
            f"**{pct(un['comment_in_top3'])}** (median rank {num(un['median_rank'], '.1f')}) | >= 80% |",
            f"| safe files: the same, on the safe value's logit | {sa['n_cuts']} | {pct(sa['comment_in_top3'])} "
            f"(median rank {num(sa['median_rank'], '.1f')}) | |",
            f"| ablation check: r of predicted and measured logit changes, top 20 features (Golden Gate; insecure) | "
            f"| **{num(gg['ablation_correlation'], '.2f')}; {num(un['ablation_correlation'], '.2f')}** | >= 0.9 |",
            f"| replacement score (Golden Gate; insecure) | | {num(gg['replacement'])}; {num(un['replacement'])} | |",
            f"| completeness score (Golden Gate) | | {num(gg['completeness'])} | |", "",
            f"A graph took {r.seconds_per_graph:.2f} s to build, prune and check here. The graph freezes the final "
            "LayerNorm's scale and the model does not, so where removing a feature changes that scale the measured "
            "change departs from the predicted one" + (" (in a one-layer model nothing else after the MLP is nonlinear)"
                                                     if len(tcs) == 1 else "") + ". Draw one graph with `python -m sae circuit`.", ""]
    return out
