"""Presets and the end-to-end run: every stage writes into one run directory.

`reproduce(preset, out)` runs the stages in order. A stage whose output files already exist is
skipped, so a crash or Ctrl-C loses at most the stage in progress and re-running the same command
continues. The run's configuration is written to `config.json` first; re-running into the same
directory with a different configuration is refused (results of two configurations must never
mix).

Stages (outputs in `runs/NAME/`):
    tokenizer   tokenizer.json       BPE trained on toy-world text
    lm          lm.pt, lm_history.json   the tiny GPT (resumable through lm_ckpt.pt)
    sae         sae.pt, sae_history.json the SAE on the MLP neurons (resumable through sae.ckpt)
    evaluate    metrics.json, figures/*.png   reconstruction, sparsity, CE recovered, concepts
    dashboard   feature_stats.pt, dashboard/   per-feature statistics and the static HTML dashboard
    steering    steering.json        Golden Gate and unsafe-code clamping demos (+ metrics.json)
    report      report.md, report.html   every number and figure of the run, readable on its own
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
from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.buffer import ActivationBuffer
from sae.gpt import GPT, GPTConfig
from sae.metrics import concept_table, evaluate_sae
from sae.tokenizer import Tokenizer
from sae.train_lm import TrainLMConfig, per_label_loss, train_lm
from sae.train_sae import TrainSAEConfig, train_sae
from sae.utils import atomic_torch_save, atomic_write_json, resolve_device


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
    # sparse autoencoder (Towards Monosemanticity: the MLP neurons of the one layer)
    site: str = "blocks.0.mlp.hook_post"
    sae_arch: str = "relu"  # relu | relu_april | topk
    d_sae: int = 1024  # dictionary size (2x the 512 neurons)
    l1_coeff: float = 3.0  # sparsity penalty λ, in the scaled space E||x|| = sqrt(d_in)
    k: int = 32  # active features per token for topk
    sae_tokens: int = 3_000_000  # activations the SAE trains on
    sae_batch_size: int = 4096
    sae_lr: float = 3e-3
    buffer_tokens: int = 2**17  # rows in the shuffling buffer (2^17 x 512 x 4 B = 256 MiB)
    resample: bool = True  # Anthropic's dead-feature resampling
    resample_at: tuple[float, ...] = (0.2, 0.4)  # fractions of training at which to resample
    dead_window_frac: float = 0.1  # a feature is dead after this fraction of steps without firing
    eval_tokens: int = 200_000  # held-out tokens for the evaluation stage

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(n_layer=self.n_layer, d_model=self.d_model, n_head=self.n_head,
                         d_mlp=self.d_mlp, n_ctx=self.n_ctx, vocab_size=vocab_size,
                         activation=self.activation)

    def sae_config(self, d_in: int) -> SAEConfig:
        return SAEConfig(d_in=d_in, d_sae=self.d_sae, arch=self.sae_arch, l1_coeff=self.l1_coeff, k=self.k)

    def sae_train_config(self) -> TrainSAEConfig:
        steps = max(self.sae_tokens // self.sae_batch_size, 1)
        return TrainSAEConfig(
            n_steps=steps, lr=self.sae_lr, dead_window=max(int(steps * self.dead_window_frac), 1),
            resample_steps=tuple(int(steps * f) for f in self.resample_at) if self.resample else (),
            log_every=max(steps // 20, 1), checkpoint_every=max(steps // 10, 1), seed=self.seed)

    def lm_train_config(self) -> TrainLMConfig:
        return TrainLMConfig(steps=self.lm_steps, batch_size=self.lm_batch_size, lr=self.lm_lr,
                             warmup=self.lm_warmup, eval_every=max(self.lm_steps // 4, 1),
                             ckpt_every=max(self.lm_steps // 10, 1), log_every=max(self.lm_steps // 20, 1),
                             seed=self.seed, device=self.device)


PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", "seconds; for tests", vocab_size=512, tokenizer_chars=300_000,
                    d_model=64, n_head=2, d_mlp=256, n_ctx=64, lm_train_tokens=300_000,
                    lm_val_tokens=20_000, lm_steps=60, lm_batch_size=16, lm_warmup=10,
                    lm_judge_samples=2, d_sae=256, sae_tokens=100_000, sae_batch_size=512,
                    buffer_tokens=8192, eval_tokens=8192),
    "tiny": Preset("tiny", "the default: the whole reproduction on a 2-core CPU"),
    "base": Preset("base", "larger model and dictionary, for a GPU", vocab_size=4096,
                   tokenizer_chars=20_000_000, d_model=256, n_head=8, d_mlp=1024,
                   lm_train_tokens=50_000_000, lm_val_tokens=500_000, lm_steps=5000,
                   lm_batch_size=64, lm_lr=2e-3, lm_warmup=200, d_sae=16384,
                   sae_tokens=100_000_000, buffer_tokens=2**19, eval_tokens=1_000_000),
}


def preset_of_run(out: str | Path) -> Preset:
    """The preset a run directory was made with (its `config.json`)."""
    path = Path(out) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{out} is not a run directory (no config.json); make one with `python -m sae train-lm --out {out}`")
    d = json.loads(path.read_text())
    d["resample_at"] = tuple(d.get("resample_at", ()))
    return Preset(**d)


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


def load_run(out: Path, device: str = "cpu") -> tuple[Tokenizer, GPT]:
    """The tokenizer and the language model of a run directory."""
    out = Path(out)
    if not (out / "lm.pt").exists():
        raise FileNotFoundError(f"no trained model in {out} (lm.pt missing); run `python -m sae train-lm --out {out}` first")
    return Tokenizer.load(out / "tokenizer.json"), GPT.load(out / "lm.pt", device=device)


def train_sae_on_run(p: Preset, out: Path, sae_path: Path, history_path: Path) -> dict:
    """Train the preset's SAE on the run's model; resumable through `<sae_path>.ckpt`."""
    device = resolve_device(p.device)
    tok, model = load_run(out, device)
    model.requires_grad_(False)
    tokens, _ = corpus_tokens(p, tok, "train", p.lm_train_tokens)
    cfg = p.sae_train_config()
    batch = min(p.sae_batch_size, p.buffer_tokens // 2)
    buffer = ActivationBuffer(model, tokens, p.site, buffer_tokens=p.buffer_tokens, batch_size=batch,
                              seed=p.seed, device=device)
    torch.manual_seed(p.seed)
    sae = SparseAutoencoder(p.sae_config(buffer.d_in)).to(device)
    sae.set_input_scale_(buffer.estimate_scale())
    ckpt = sae_path.with_suffix(".ckpt")
    history = train_sae(sae, buffer, cfg, checkpoint_path=ckpt, resume=ckpt.exists())
    sae.save(sae_path, site=p.site, preset=p.name)
    atomic_write_json(history_path, history)
    last = history[-1]
    return {"steps": last["step"], "l0": round(last["l0"], 2), "fvu": round(last["fvu"], 4),
            "dead_frac": round(last["dead_frac"], 4),
            "resamples": [h["resample"] for h in history if "resample" in h]}


def stage_sae(p: Preset, out: Path) -> dict:
    return train_sae_on_run(p, out, out / "sae.pt", out / "sae_history.json")


def evaluate_run(p: Preset, out: Path, sae_path: Path | None = None) -> dict:
    """Evaluate the run's SAE on held-out text: the nested `metrics.json` dictionary."""
    device = resolve_device(p.device)
    tok, model = load_run(out, device)
    sae = SparseAutoencoder.load(sae_path or out / "sae.pt", device=device)
    site = getattr(sae, "meta", {}).get("site", p.site)
    labelled = p.corpus == "toy"
    tokens, labels = corpus_tokens(p, tok, "val", p.eval_tokens + p.n_ctx)
    ev = evaluate_sae(model, sae, tokens, site, labels=labels if labelled else None,
                      n_concepts=len(CONCEPTS) if labelled else 0, n_tokens=p.eval_tokens)
    stages = json.loads((out / "stages.json").read_text()) if (out / "stages.json").exists() else {}
    metrics = {
        "lm": {"val_loss": stages.get("lm", {}).get("val_loss"), "on_concept_rate": stages.get("lm", {}).get("on_concept_rate")},
        "sae": {"site": site, "arch": sae.cfg.arch, "d_sae": sae.cfg.d_sae, **ev.metrics},
    }
    if labelled:
        metrics["concepts"] = concept_table(ev, CONCEPTS)
        share, top = ev.features.mass_share()
        alive = ev.fire_counts > 0
        metrics["monosemanticity"] = {
            "mean_top_concept_share": share[alive].mean().item(),
            "share_histogram": np.histogram(share[alive].numpy(), bins=10, range=(0, 1))[0].tolist(),
        }
    stats_path = out / f"{Path(sae_path or out / 'sae.pt').stem}_stats.pt"
    atomic_torch_save({"fire_counts": ev.fire_counts, "max_act": ev.max_act}, stats_path)
    return metrics


def write_figures(out: Path) -> list[Path]:
    """Draw the run's figures into `out/figures/` from the files earlier stages wrote."""
    from sae import plots

    out = Path(out)
    figs = out / "figures"
    metrics = json.loads((out / "metrics.json").read_text())
    written = []
    if (out / "lm_history.json").exists() and (out / "sae_history.json").exists():
        written.append(plots.training_curves(json.loads((out / "lm_history.json").read_text()),
                                             json.loads((out / "sae_history.json").read_text()),
                                             figs / "training_curves.png"))
    stats = torch.load(out / "sae_stats.pt", weights_only=True)
    written.append(plots.log_density_histogram(stats["fire_counts"], metrics["sae"]["n_tokens"],
                                               figs / "log_density.png"))
    points = [{"l0": metrics["sae"]["l0"], "fvu": metrics["sae"]["fvu"], "label": "sae.pt", "default": True}]
    for mf in sorted((out / "sweep").glob("*_metrics.json")) if (out / "sweep").exists() else []:
        m = json.loads(mf.read_text())["sae"]
        points.append({"l0": m["l0"], "fvu": m["fvu"], "label": mf.name.removesuffix("_metrics.json")})
    written.append(plots.l0_fvu_frontier(points, figs / "l0_fvu_frontier.png"))
    if "concepts" in metrics:
        written.append(plots.concept_auroc(metrics["concepts"], figs / "concept_auroc.png"))
    return written


def stage_evaluate(p: Preset, out: Path) -> dict:
    metrics = evaluate_run(p, out)
    atomic_write_json(out / "metrics.json", metrics)
    write_figures(out)
    s = metrics["sae"]
    info = {k: round(s[k], 4) for k in ("l0", "fvu", "dead_fraction", "ce_recovered_zero", "ce_recovered_mean")}
    if "concepts" in metrics:
        aucs = [c["auroc"] for c in metrics["concepts"].values()]
        info["concepts_auroc_ge_0.9"] = sum(a >= 0.9 for a in aucs)
    return info


def stage_dashboard(p: Preset, out: Path) -> dict:
    from sae.dashboard import build_dashboard, default_features
    from sae.interpret import run_feature_stats

    stats = run_feature_stats(out, device=str(resolve_device(p.device)))
    concepts = json.loads((out / "metrics.json").read_text()).get("concepts", {})
    # the best detector of each concept too, so that the report's links all have a page
    features = list(dict.fromkeys(default_features(stats) + [c["feature"] for c in concepts.values()]))
    build_dashboard(out, out / "dashboard", features=features, device=str(resolve_device(p.device)))
    return {"pages": len(features)}


def stage_steering(p: Preset, out: Path) -> dict:
    """The Golden Gate and unsafe-code demonstrations; adds `steering.*` to metrics.json."""
    from sae.interpret import run_feature_stats
    from sae.steering import choose_feature, golden_gate_demo, unsafe_code_demo

    if p.corpus != "toy":
        atomic_write_json(out / "steering.json", {"skipped": "steering demos need the labelled toy world"})
        return {"skipped": True}
    device = str(resolve_device(p.device))
    tok, model = load_run(out, device)
    sae = SparseAutoencoder.load(out / "sae.pt", device=device)
    site = sae.meta.get("site", p.site)
    metrics = json.loads((out / "metrics.json").read_text())
    stats = run_feature_stats(out, device=device)
    res = {}
    for name, demo in [("golden_gate", golden_gate_demo), ("unsafe_code", unsafe_code_demo)]:
        f = choose_feature(metrics, name)
        res[name] = demo(model, sae, tok, site, f, float(stats.max_act[f]), seed=p.seed)
    atomic_write_json(out / "steering.json", res)
    keys = {"golden_gate": ["rate_clamped", "rate_baseline", "multiple", "feature"],
            "unsafe_code": ["rate_clamped", "rate_baseline", "rate_suppressed", "detector_auroc", "feature"]}
    metrics["steering"] = {c: {k: res[c][k] for k in ks} for c, ks in keys.items()}
    atomic_write_json(out / "metrics.json", metrics)
    return {f"{c}_{k}": round(v, 3) if isinstance(v, float) else v
            for c, d in metrics["steering"].items() for k, v in d.items() if k != "feature"}


def stage_report(p: Preset, out: Path) -> dict:
    from sae.report import write_report

    md, html_path = write_report(out)
    return {"report": md.name}


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
    Stage("sae", ["sae.pt", "sae_history.json"], stage_sae),
    Stage("evaluate", ["metrics.json"], stage_evaluate),
    Stage("dashboard", ["dashboard/index.html"], stage_dashboard),
    Stage("steering", ["steering.json"], stage_steering),
    Stage("report", ["report.md", "report.html"], stage_report),
]


def _check_config(p: Preset, out: Path) -> None:
    cfg_path = out / "config.json"
    cfg = json.loads(json.dumps(asdict(p)))  # as it reads back from JSON (tuples become lists)
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
    done = {k: v for k, v in summary.items() if isinstance(v, dict)}
    if done:
        log("summary: " + " | ".join(f"{k} {v.get('seconds', 0):.0f}s" for k, v in done.items())
            + f" | total {sum(v.get('seconds', 0) for v in done.values()):.0f}s")
        if (out / "report.md").exists():
            log(f"report: {out / 'report.md'} (and report.html); dashboard: {out / 'dashboard' / 'index.html'}")
    return summary


def _fmt(info: dict) -> str:
    items = [f"{k}={v}" for k, v in info.items() if k != "seconds" and not isinstance(v, dict)]
    return f"({', '.join(items)})" if items else ""
