"""Chapter 6's exercises: CE loss recovered from logits; move the detector bars; a dictionary on
the attention output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from exercises import MathsExercise, open_exercise, verdict
from sae.evaluation.detectors import Detectors


# ----------------------------------------------------------------------------- write the maths
def _ce_recovered(tokens, clean_logits, sae_logits, ablated_logits, shift="next", axis=-1, mean_of="log-probs",
                  nats=True, ratio="recovered"):
    """The right answer with its defaults; each other value of a keyword is one of the mistakes."""
    def ce(logits):
        pred, tgt = {"next": (logits[:, :-1], tokens[:, 1:]), "none": (logits, tokens),
                     "back": (logits[:, 1:], tokens[:, :-1])}[shift]
        lp = pred.log_softmax(axis).gather(-1, tgt[..., None])  # (B, T - 1, 1) log p(next token)
        loss = -lp.mean() if mean_of == "log-probs" else -lp.exp().mean().log()
        return loss.item() / (1.0 if nats else math.log(2))

    clean, spliced, ablated = ce(clean_logits), ce(sae_logits), ce(ablated_logits)
    frac = {"recovered": (ablated - spliced) / (ablated - clean), "lost": (spliced - clean) / (ablated - clean),
            "upside down": (ablated - clean) / (ablated - spliced)}[ratio]
    return clean, spliced, ablated, frac


def _ce_cases():
    g = torch.Generator().manual_seed(7)
    out = []
    for B, T, vocab in ((3, 6, 7), (2, 9, 11)):
        tokens = torch.randint(vocab, (B, T), generator=g)
        # clean logits that favour the next token, a splice that blurs them, an ablation that forgets it
        clean = torch.randn(B, T, vocab, generator=g)
        clean[:, :-1] += 3 * torch.nn.functional.one_hot(tokens[:, 1:], vocab)
        out.append(dict(tokens=tokens, clean_logits=clean,
                        sae_logits=clean + 1.5 * torch.randn(B, T, vocab, generator=g),
                        ablated_logits=torch.randn(B, T, vocab, generator=g)))
    return out


def _ce_with(**wrong):
    return lambda **case: _ce_recovered(**case, **wrong)


CE_RECOVERED = MathsExercise(
    "06_evaluation", "ce_loss_recovered", _ce_recovered, _ce_cases, mistakes={
        "the targets are not shifted: the logits at position t predict the *next* token, tokens[:, t + 1] "
        "(so the last position predicts nothing here)": _ce_with(shift="none"),
        "shifted the wrong way: logits[:, :-1] go with tokens[:, 1:]": _ce_with(shift="back"),
        "the softmax runs over the positions, not the vocabulary (the last axis)": _ce_with(axis=1),
        "probabilities are averaged before the log: the CE is the mean of −log p(next token), not −log "
        "of the mean p": _ce_with(mean_of="probs"),
        "the losses are in bits (log2); the model's loss and the library's numbers are in nats (natural log)":
            _ce_with(nats=False),
        "that is the fraction of the loss *lost*, (CE_sae − CE_clean) / (CE_ablated − CE_clean); the "
        "recovered fraction is (CE_ablated − CE_sae) / (CE_ablated − CE_clean)": _ce_with(ratio="lost"),
        "the ratio is upside down: recovered = (CE_ablated − CE_sae) / (CE_ablated − CE_clean), the "
        "SAE's loss in the numerator": _ce_with(ratio="upside down"),
    })


# ------------------------------------------------------------------------- vary the experiment
BARS = [(0.5, 0.9), (0.7, 0.9), (0.8, 0.9), (0.9, 0.9), (0.95, 0.9), (0.8, 1.0)]


def _count(d, share_bar: float, recall_bar: float) -> int:
    return int(((d.share >= share_bar) & (d.recall >= recall_bar)).any(1).sum())


_BAR_MISTAKES = {
    "a unit must pass both bars for the same concept: you let one unit pass the share bar and another the "
    "recall bar": lambda d, s, r: int(((d.share >= s).any(1) & (d.recall >= r).any(1)).sum()),
    "a unit must pass both bars (and), not either one (or)":
        lambda d, s, r: int(((d.share >= s) | (d.recall >= r)).any(1).sum()),
    "the bars are reached at equality: share >= bar and recall >= bar, not >":
        lambda d, s, r: int(((d.share > s) & (d.recall > r)).any(1).sum()),
    "count concepts, not (concept, unit) pairs: a concept with several passing units counts once":
        lambda d, s, r: int(((d.share >= s) & (d.recall >= r)).sum()),
    "the recall bar is missing: a detector must also light up across the concept's segments":
        lambda d, s, r: int((d.share >= s).any(1).sum()),
}


def _toy_detectors() -> Detectors:
    """6 concepts × 3 units on which each mistake in _BAR_MISTAKES gives its own count (bars 0.5, 0.5)."""
    share = torch.tensor([[0.9, 0.6, 0.8],  # three detectors of one concept
                          [0.9, 0.1, 0.0],  # the share from unit 0, the recall from unit 1: no detector
                          [0.5, 0.0, 0.0],  # exactly at both bars
                          [0.7, 0.0, 0.0],  # specific, but lights up in few segments
                          [0.0, 0.6, 0.0],  # likewise
                          [0.2, 0.0, 0.0]])  # lights up across the concept, but not specific
    recall = torch.tensor([[0.9, 0.8, 0.6], [0.1, 0.9, 0.0], [0.5, 0.0, 0.0],
                           [0.2, 0.0, 0.0], [0.0, 0.3, 0.0], [0.7, 0.0, 0.0]])
    return Detectors(share, recall, torch.ones(3, dtype=torch.bool))


def check_bars(count_detectors, ev) -> bool | None:
    """`count_detectors(d, share_bar, recall_bar)` against the reference count, first on a small
    hand-built `Detectors` (to name a mistake), then for features and neurons at every bar in BARS;
    prints the table."""
    if open_exercise(count_detectors(ev.feature_detectors, 0.8, 0.9), "06_evaluation"):
        return None
    toy = _toy_detectors()
    got = count_detectors(toy, 0.5, 0.5)
    if got != _count(toy, 0.5, 0.5):
        named = [what for what, wrong in _BAR_MISTAKES.items() if wrong(toy, 0.5, 0.5) == got]
        return verdict(False, f"count_detectors gives {got} on a hand-built example where the answer is "
                              f"{_count(toy, 0.5, 0.5)}: " + (named[0] if named else
                              "a concept counts once if some unit j has share[c, j] >= share_bar and "
                              "recall[c, j] >= recall_bar"))
    ok = True
    print(f"{'share bar':>9} {'recall bar':>10} | {'features':>8} {'neurons':>8}")
    for share_bar, recall_bar in BARS:
        row = []
        for d in (ev.feature_detectors, ev.neuron_detectors):
            got, want = count_detectors(d, share_bar, recall_bar), _count(d, share_bar, recall_bar)
            ok &= got == want
            row.append(f"{got:>8}" if got == want else f"{got:>4}≠{want:<3}")
        print(f"{share_bar:>9} {recall_bar:>10} | {' '.join(row)}")
    return verdict(ok, "your counts equal the reference at every bar" if ok else
                   "some counts differ from the reference (≠ marks yours vs the reference): a unit must pass "
                   "both bars for the same concept")


ATTENTION_SITE = "blocks.0.attn.hook_out"


def check_attention(count: int | None, run: Path, name: str = "attn64") -> bool | None:
    """`count`: concepts whose best feature of the attention-output SAE `name` reaches token AUROC
    0.9, read from the run's `NAME_metrics.json`. A wrong count is compared with the counts that
    common slips give (the MLP dictionary's file, the detector count, the neurons' or the probe's
    AUROC) to name the slip."""
    if open_exercise(count, "06_evaluation"):
        return None
    if isinstance(count, bool) or not isinstance(count, int):
        return verdict(False, f"answer a number of concepts (an int), not {count!r}")
    run = Path(run)
    path = run / f"{name}_metrics.json"
    if not path.exists():
        return verdict(False, f"{path} does not exist: train and evaluate the attention SAE first")
    m = json.loads(path.read_text())
    if m["sae"]["site"] != ATTENTION_SITE:
        return verdict(False, f"{name} reads {m['sae']['site']}, not the attention output: train it with "
                              f"--set sae.site={ATTENTION_SITE}")
    concepts = m["concepts"]["rows"].values()
    want = sum(c["auroc"] >= 0.9 for c in concepts)
    if count == want:
        return verdict(True, f"{count} concepts at AUROC >= 0.9 (the attention SAE has {m['concepts']['detectors']['features']} "
                             f"concept detectors and recovers {m['sae']['ce_recovered_zero']:.0%} of the loss)")
    mlp = json.loads((run / "metrics.json").read_text())["concepts"]["rows"] if (run / "metrics.json").exists() else None
    slips = {
        f"the count of the MLP dictionary (metrics.json), not of the attention SAE ({path.name})":
            None if mlp is None else sum(c["auroc"] >= 0.9 for c in mlp.values()),
        "the number of concept detectors (the share and recall bars), not of concepts at token AUROC >= 0.9":
            m["concepts"]["detectors"]["features"],
        "a count of the attention output's own dimensions (neuron_auroc), not of the SAE's features (auroc)":
            sum(c["neuron_auroc"] >= 0.9 for c in concepts),
        "a count of the linear probe (probe_auroc), not of the SAE's features (auroc)":
            sum(c.get("probe_auroc", 0) >= 0.9 for c in concepts),
    }
    named = [what for what, n in slips.items() if n == count]
    return verdict(False, f"{count} is not the number of concepts at AUROC >= 0.9 in {path.name}"
                          + (f"; it is {named[0]}" if named else ""))
