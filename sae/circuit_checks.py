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
"""

from __future__ import annotations

import re
import sys
import time

import numpy as np
import torch

from sae.circuits import ablation_check, attribute, prune
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
    return concept_mass.argmax(0).numpy()
