"""Presets and the end-to-end run: every stage writes into one run directory.

`reproduce(preset, out)` runs the stages in order. A stage whose output files already exist is
skipped, so a crash or Ctrl-C loses at most the stage in progress and re-running the same command
continues. The run's configuration is written to `config.json` first; re-running into the same
directory with a different configuration is refused (results of two configurations must never
mix).

Stages (outputs in `runs/NAME/`):
    tokenizer   tokenizer.json       BPE trained on toy-world text
    (later issues add: lm, sae, evaluate, dashboard, steering, report)
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from sae.corpus import CONCEPTS, concept_token_counts, toy_text, toy_tokens
from sae.tokenizer import Tokenizer
from sae.utils import atomic_write_json


@dataclass(frozen=True)
class Preset:
    """Sizes of one reproduction. Presets are just instances; override fields with `replace`."""

    name: str
    description: str
    seed: int = 0
    corpus: str = "toy"  # "toy" (labelled) or a path / "pystdlib" (unlabelled real text)
    vocab_size: int = 2048  # BPE vocabulary including <|endoftext|>
    tokenizer_chars: int = 5_000_000  # characters of training text the BPE is learned from


PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", "seconds; for tests", vocab_size=512, tokenizer_chars=300_000),
    "tiny": Preset("tiny", "the default: the whole reproduction on a 2-core CPU"),
    "base": Preset("base", "larger model and dictionary, for a GPU", vocab_size=4096,
                   tokenizer_chars=20_000_000),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


# ----------------------------------------------------------------------------- stages


@dataclass
class Stage:
    name: str
    outputs: list[str]  # files (relative to the run dir) whose presence means "done"
    run: Callable[[Preset, Path], dict | None]
    issue: str = ""  # set for stages not built yet


def stage_tokenizer(p: Preset, out: Path) -> dict:
    text = _training_text(p)
    tok = Tokenizer.train(text, p.vocab_size)
    tok.save(out / "tokenizer.json")
    n = len(tok.encode(text[:1_000_000]))
    return {"vocab_size": tok.vocab_size, "chars_per_token": round(min(len(text), 1_000_000) / max(n, 1), 3)}


def _training_text(p: Preset) -> str:
    if p.corpus == "toy":
        return toy_text(p.tokenizer_chars, seed=p.seed, split="train")
    from sae.corpus import text_files
    text = "\n\n".join(t for _, t in text_files(p.corpus, "train"))
    return text[: p.tokenizer_chars]


STAGES: list[Stage] = [
    Stage("tokenizer", ["tokenizer.json"], stage_tokenizer),
    Stage("lm", ["lm.pt"], None, issue="#3 tiny GPT"),
    Stage("sae", ["sae.pt"], None, issue="#5 dictionary learning"),
    Stage("evaluate", ["metrics.json"], None, issue="#6 metrics"),
    Stage("dashboard", ["dashboard/index.html"], None, issue="#7 interpretation"),
    Stage("steering", ["steering.json"], None, issue="#8 steering"),
    Stage("report", ["report.md"], None, issue="#9 report"),
]


def _check_config(p: Preset, out: Path) -> None:
    cfg_path = out / "config.json"
    cfg = asdict(p)
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != cfg:
            diff = {k: (old.get(k), v) for k, v in cfg.items() if old.get(k) != v}
            raise ValueError(
                f"{out} holds a run with a different configuration ({diff}); "
                f"use another --out directory, or delete {out} to start over"
            )
    else:
        atomic_write_json(cfg_path, cfg)


def reproduce(preset: Preset, out: str | Path, log=print) -> dict:
    """Run every built stage into `out`, skipping finished ones; returns {stage: summary}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_config(preset, out)
    summary_path = out / "stages.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    log(f"reproduce: preset {preset.name!r} ({preset.description}) -> {out}")
    for i, st in enumerate(STAGES, 1):
        tag = f"[{i}/{len(STAGES)}] {st.name:<10}"
        if st.run is None:
            log(f"{tag} not built yet ({st.issue})")
            continue
        if all((out / o).exists() for o in st.outputs):
            log(f"{tag} done already ({', '.join(st.outputs)}), skipped")
            continue
        log(f"{tag} running...")
        t0 = time.time()
        info = st.run(preset, out) or {}
        info["seconds"] = round(time.time() - t0, 2)
        summary[st.name] = info
        atomic_write_json(summary_path, summary)
        log(f"{tag} finished in {info['seconds']:.1f}s {_fmt(info)}")
    return summary


def _fmt(info: dict) -> str:
    items = [f"{k}={v}" for k, v in info.items() if k != "seconds"]
    return f"({', '.join(items)})" if items else ""
