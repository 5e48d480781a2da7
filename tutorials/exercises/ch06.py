"""Chapter 6's exercises: move the detector bars; a dictionary on the attention output."""

from __future__ import annotations

import json
from pathlib import Path

from exercises import open_exercise, verdict

BARS = [(0.5, 0.9), (0.7, 0.9), (0.8, 0.9), (0.9, 0.9), (0.95, 0.9), (0.8, 1.0)]


def _count(d, share_bar: float, recall_bar: float) -> int:
    return int(((d.share >= share_bar) & (d.recall >= recall_bar)).any(1).sum())


def check_bars(count_detectors, ev) -> bool | None:
    """`count_detectors(d, share_bar, recall_bar)` against the reference count, for features and
    neurons at every bar in BARS; prints the table."""
    if open_exercise(count_detectors(ev.feature_detectors, 0.8, 0.9), "06_evaluation"):
        return None
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


def check_attention(count: int | None, run: Path, name: str = "attn64") -> bool | None:
    """`count`: concepts whose best feature of the attention-output SAE `name` reaches token AUROC
    0.9, read from the run's `NAME_metrics.json`."""
    if open_exercise(count, "06_evaluation"):
        return None
    path = Path(run) / f"{name}_metrics.json"
    if not path.exists():
        return verdict(False, f"{path} does not exist: train and evaluate the attention SAE first")
    m = json.loads(path.read_text())
    want = sum(c["auroc"] >= 0.9 for c in m["concepts"].values())
    detectors = m.get("detectors", {}).get("features")
    return verdict(count == want, f"{count} concepts at AUROC >= 0.9 (reference {want}; the attention SAE has "
                                  f"{detectors} concept detectors and recovers {m['sae']['ce_recovered_zero']:.0%} "
                                  "of the loss)")
