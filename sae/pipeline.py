"""Presets and the end-to-end run: every stage writes into one run directory.

`reproduce(preset, out)` runs the stages in order. A stage whose output files already exist is
skipped, so a crash or Ctrl-C loses at most the stage in progress and re-running the same command
continues. The run's configuration is written to `config.json` first; re-running into the same
directory with a different configuration is refused (results of two configurations must never
mix).

Stages (outputs in `runs/NAME/`):
    tokenizer   tokenizer.json       BPE trained on toy-world text
    lm          lm.pt, lm_history.json   the tiny GPT (resumable through lm_ckpt.pt)
    (later issues add: sae, evaluate, dashboard, steering, report)
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sae.corpus import CONCEPTS, concept_segments, document_text, text_tokens, toy_text, toy_tokens, top_concept
from sae.gpt import GPT, GPTConfig
from sae.tokenizer import Tokenizer
from sae.train_lm import TrainLMConfig, per_label_loss, train_lm
from sae.utils import atomic_write_json, resolve_device


@dataclass(frozen=True)
class Preset:
    """Sizes of one reproduction. Presets are just instances; override fields with `replace`."""

    name: str
    description: str
    seed: int = 0
    device: str = "auto"  # "auto" picks cuda, then mps, then cpu
    corpus: str = "toy"  # "toy" (labelled) or a path / "pystdlib" (unlabelled real text)
    # tokenizer
    vocab_size: int = 2048  # BPE vocabulary including <|endoftext|>
    tokenizer_chars: int = 5_000_000  # characters of training text the BPE is learned from
    # language model (Towards Monosemanticity's shape: 1 layer, d_model 128, d_mlp 512)
    n_layer: int = 1
    d_model: int = 128
    n_head: int = 4
    d_mlp: int = 512
    n_ctx: int = 128
    activation: str = "gelu"  # MLP nonlinearity: "gelu" or "relu" (Towards Monosemanticity used ReLU)
    lm_train_tokens: int = 8_000_000  # size of the generated training stream (windows are sampled)
    lm_val_tokens: int = 200_000
    lm_steps: int = 2000
    lm_batch_size: int = 32  # windows of n_ctx tokens per step
    lm_lr: float = 3e-3
    lm_warmup: int = 50
    lm_judge_samples: int = 10  # continuations per concept for the on-concept rate

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(n_layer=self.n_layer, d_model=self.d_model, n_head=self.n_head,
                         d_mlp=self.d_mlp, n_ctx=self.n_ctx, vocab_size=vocab_size,
                         activation=self.activation)

    def lm_train_config(self) -> TrainLMConfig:
        return TrainLMConfig(steps=self.lm_steps, batch_size=self.lm_batch_size, lr=self.lm_lr,
                             warmup=self.lm_warmup, eval_every=max(self.lm_steps // 4, 1),
                             ckpt_every=max(self.lm_steps // 10, 1), log_every=max(self.lm_steps // 20, 1),
                             seed=self.seed, device=self.device)


PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", "seconds; for tests", vocab_size=512, tokenizer_chars=300_000,
                    d_model=64, n_head=2, d_mlp=256, n_ctx=64, lm_train_tokens=300_000,
                    lm_val_tokens=20_000, lm_steps=60, lm_batch_size=16, lm_warmup=10,
                    lm_judge_samples=2),
    "tiny": Preset("tiny", "the default: the whole reproduction on a 2-core CPU"),
    "base": Preset("base", "larger model and dictionary, for a GPU", vocab_size=4096,
                   tokenizer_chars=20_000_000, d_model=256, n_head=8, d_mlp=1024,
                   lm_train_tokens=50_000_000, lm_val_tokens=500_000, lm_steps=5000,
                   lm_batch_size=64, lm_lr=2e-3, lm_warmup=200),
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


def corpus_tokens(p: Preset, tok: Tokenizer, split: str, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """The run's token stream of one split: `(tokens, labels)` (labels -1 for real text)."""
    if p.corpus == "toy":
        return toy_tokens(tok, n_tokens, seed=p.seed, split=split)
    return text_tokens(tok, p.corpus, split, n_tokens)


def stage_lm(p: Preset, out: Path) -> dict:
    tok = Tokenizer.load(out / "tokenizer.json")
    train, _ = corpus_tokens(p, tok, "train", p.lm_train_tokens)
    val, val_labels = corpus_tokens(p, tok, "val", p.lm_val_tokens)
    torch.manual_seed(p.seed)
    model = GPT(p.gpt_config(tok.vocab_size))
    names = CONCEPTS if p.corpus == "toy" else None
    history = train_lm(model, train, val, p.lm_train_config(), out_path=out / "lm_ckpt.pt", resume=True,
                       val_labels=val_labels if names else None, label_names=names)
    model.save(out / "lm.pt")
    atomic_write_json(out / "lm_history.json", history)
    last = history[-1]
    info = {"val_loss": round(last["val_loss"], 4), "steps": last["step"]}
    if names:
        rates = on_concept_rate(model, tok, n_per_concept=p.lm_judge_samples, seed=p.seed)
        info["on_concept_rate"] = round(rates["overall"], 3)
        info["val_loss_by_concept"] = {k: round(v, 3) for k, v in last.get("val_loss_by_label", {}).items()}
    return info


@torch.no_grad()
def on_concept_rate(model: GPT, tok: Tokenizer, n_per_concept: int = 10, prompt_tokens: int = 6,
                    max_new_tokens: int = 48, temperature: float = 1.0, seed: int = 0) -> dict[str, float]:
    """How often the model stays on topic: prompted with the first words of a held-out segment
    of each concept, the fraction of sampled continuations that the judge (`top_concept`) assigns
    to that concept. Returns `{concept: rate, ..., "overall": mean}`.

    Prompts come from the `test` split (never trained on); each continuation is sampled with its
    own seed, so the numbers are repeatable. `code` and `unsafe_code` segments start with the
    same function headers (they differ only in one expression further on), so a six-token prompt
    cannot say which of the two follows: for those two, a continuation is on-concept when the
    judge calls it code of either kind.
    """
    family = {"code": ("code", "unsafe_code"), "unsafe_code": ("code", "unsafe_code")}
    rates = {}
    for c in CONCEPTS:
        hits = 0
        for i, seg in enumerate(concept_segments(c, n_per_concept, seed=seed, split="test")):
            prompt = [tok.eot_token] + tok.encode(document_text(seg))[:prompt_tokens]
            out = model.generate(prompt, max_new_tokens, temperature=temperature, seed=seed * 1000 + i)
            judged = top_concept(tok.decode(out[len(prompt):].tolist()))
            hits += judged in family.get(c, (c,))
        rates[c] = hits / n_per_concept
    rates["overall"] = sum(rates.values()) / len(CONCEPTS)
    return rates


STAGES: list[Stage] = [
    Stage("tokenizer", ["tokenizer.json"], stage_tokenizer),
    Stage("lm", ["lm.pt", "lm_history.json"], stage_lm),
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


def reproduce(preset: Preset, out: str | Path, until: str | None = None, log=print) -> dict:
    """Run every built stage into `out` (up to and including `until`), skipping finished ones.

    Returns {stage: summary} for all stages run so far in this directory (`stages.json`).
    """
    if until is not None and until not in [st.name for st in STAGES]:
        raise ValueError(f"unknown stage {until!r}; stages: {', '.join(st.name for st in STAGES)}")
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
        elif all((out / o).exists() for o in st.outputs):
            log(f"{tag} done already ({', '.join(st.outputs)}), skipped")
        else:
            log(f"{tag} running...")
            t0 = time.time()
            info = st.run(preset, out) or {}
            info["seconds"] = round(time.time() - t0, 2)
            summary[st.name] = info
            atomic_write_json(summary_path, summary)
            log(f"{tag} finished in {info['seconds']:.1f}s {_fmt(info)}")
        if st.name == until:
            break
    return summary


def _fmt(info: dict) -> str:
    items = [f"{k}={v}" for k, v in info.items() if k != "seconds" and not isinstance(v, dict)]
    return f"({', '.join(items)})" if items else ""
