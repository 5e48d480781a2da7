"""The end-to-end run: stages that each write their files into one run directory.

`reproduce(preset, out)` runs the stages in order. A stage is done when its entry in `stages.json`
(written last, after every file of the stage) and its output files exist; a done stage is
skipped, so a crash or Ctrl-C loses at most the stage in progress and re-running the same command
continues. A stage that crashed after writing some of its files has no entry, so it runs again
(the LM and SAE stages then resume from their checkpoints). The run's configuration is written to `config.json` first; re-running into the same
directory with a different configuration is refused (results of two configurations must never
mix). Presets and the run-directory layout live in `sae.run`.

Stages (outputs in `runs/NAME/`):
    tokenizer   tokenizer.json       BPE trained on toy-world text
    lm          lm.pt, lm_history.json   the tiny GPT (resumable through lm_ckpt.pt)
    sae         sae.pt, sae_history.json the SAE on the MLP neurons (resumable through sae.ckpt)
    evaluate    metrics.json, feature_stats.pt, figures/*.png   one pass over held-out text:
                reconstruction, sparsity, CE recovered, concepts, and every feature's statistics;
                a second (to the site only) for absorption and k-sparse probing (`sae.ground_truth`)
    dashboard   dashboard/           the static HTML dashboard
    steering    steering.json        Golden Gate and unsafe-code clamping demos
    report      report.md, report.html   every number and figure of the run, readable on its own
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import torch

from sae import distributed, ground_truth, plots
from sae.autoencoder import SparseAutoencoder
from sae.buffer import ActivationBuffer
from sae.corpus import CONCEPTS
from sae.dashboard import build_dashboard, default_features
from sae.estimate import estimate_seconds, matmul_gflops
from sae.gpt import GPT
from sae.interpret import FeatureStatsBuilder
from sae.metrics import (Evaluator, MeanDiffProbe, concept_table, detector_summary, first_half_rows,
                         held_out_batches)
from sae.report import write_report
from sae.run import (Preset, check_config, corpus_tokens, load_run, load_sae, read_run_json, run_detectors,
                     run_feature_stats, sae_path, stats_path, training_text)
from sae.demos import DEMOS, UNSAFE_SENSITIVITY_MIN, unsafe_context_sensitivity
from sae.tokenizer import Tokenizer
from sae.train_lm import on_concept_rate, train_lm
from sae.train_sae import train_sae
from sae.utils import atomic_write_json, format_duration, remove_stale_temporaries, resolve_device


@dataclass
class Stage:
    name: str
    outputs: list[str]  # files (relative to the run dir) the stage writes; deleting one reruns the stage
    run: Callable[[Preset, Path], dict | None]
    headline: tuple[str, ...] = ()  # what its "finished" line shows of its summary (all of it: stages.json)


def stage_tokenizer(p: Preset, out: Path) -> dict:
    text = training_text(p)
    tok = Tokenizer.train(text, p.gpt.vocab_size)
    tok.save(out / "tokenizer.json")
    n = len(tok.encode(text[:1_000_000]))
    return {"vocab_size": tok.vocab_size, "chars_per_token": round(min(len(text), 1_000_000) / max(n, 1), 3)}


def stage_lm(p: Preset, out: Path) -> dict:
    tok = Tokenizer.load(out / "tokenizer.json")
    train, _ = corpus_tokens(p, tok, "train", p.lm_train_tokens)
    val, val_labels = corpus_tokens(p, tok, "val", p.lm_val_tokens)
    torch.manual_seed(p.seed)
    model = GPT(p.gpt_config(tok.vocab_size))
    names = CONCEPTS if p.corpus == "toy" else None
    history = train_lm(model, train, val, p.train_lm_config(), checkpoint_path=out / "lm_ckpt.pt", resume=True,
                       val_labels=val_labels if names else None, label_names=names)
    model.save(out / "lm.pt")
    atomic_write_json(out / "lm_history.json", history)
    last = history[-1]
    info = {"val_loss": round(last["val_loss"], 4), "steps": last["step"]}
    if names:
        rates = on_concept_rate(model, tok, n_per_concept=p.judge_samples, seed=p.seed)
        info["on_concept_rate"] = round(rates["overall"], 3)
        info["val_loss_by_concept"] = {k: round(v, 3) for k, v in last.get("val_loss_by_label", {}).items()}
        # The unsafe-code demo needs a model that knows an insecure file from a safe one: check it
        # now (seconds), before any SAE work. A ratio near 1 means no feature can carry it.
        sens = unsafe_context_sensitivity(model, tok, seed=p.seed)
        info["unsafe_context_sensitivity"] = {k: round(v, 4) for k, v in sens.items()}
        if sens["ratio"] < UNSAFE_SENSITIVITY_MIN:
            print(f"WARNING: the LM gives an insecure switch value probability {sens['p_after_unsafe']:.3f} in insecure "
                  f"files and {sens['p_after_safe']:.3f} in the same files made safe (ratio {sens['ratio']:.2f} < "
                  f"{UNSAFE_SENSITIVITY_MIN}): it does not track a file's security posture, so the unsafe-code "
                  "steering demo cannot work on this model", flush=True)
    return info


def train_sae_on_run(p: Preset, out: Path, name: str = "sae") -> dict:
    """Train the preset's SAE on the run's model into `out/NAME.pt` (and `NAME_history.json`);
    resumable through `NAME.ckpt`. Under torchrun (`sae.distributed`) every rank reads its own
    contiguous shard of the training tokens through its own buffer (seeded by rank) with
    `sae_batch_size / world size` rows per batch, and rank 0 writes the files."""
    device = distributed.init_from_env(resolve_device(p.device))
    rank, n_ranks = distributed.world()
    batch = distributed.shard(p.sae_batch_size, "SAE batch (sae_batch_size)")
    tok, model = load_run(out, device)
    model.requires_grad_(False)
    tokens, _ = corpus_tokens(p, tok, "train", p.lm_train_tokens)
    part = len(tokens) // n_ranks
    buffer = ActivationBuffer(model, tokens[rank * part:(rank + 1) * part], p.sae.site, buffer_tokens=p.buffer_tokens,
                              batch_size=batch, seed=p.seed + rank, device=device)
    torch.manual_seed(p.seed)
    sae = SparseAutoencoder(p.sae_config(buffer.d_in)).to(device)
    scale = buffer.estimate_scale()
    if n_ranks > 1:  # s = sqrt(d)/E‖x‖ over every rank's rows: average the ranks' mean norms sqrt(d)/s_r
        scale = 1.0 / distributed.Sync().mean(torch.tensor([1.0 / scale], device=device), "input scale").item()
    sae.set_input_scale_(scale)
    path = sae_path(out, name)
    ckpt = path.with_suffix(".ckpt")
    resume = ckpt.exists()
    distributed.barrier()  # every rank has looked for the checkpoint before rank 0 writes one
    if resume and rank == 0:
        print(f"resuming SAE training from {ckpt}", flush=True)
    history = train_sae(sae, buffer, p.train_sae_config(), checkpoint_path=ckpt, resume=resume)
    if rank == 0:
        sae.save(path, preset=p.name)
        atomic_write_json(out / f"{name}_history.json", history)
    distributed.barrier()
    last = history[-1]
    return {"steps": last["step"], "l0": round(last["l0"], 2), "fvu": round(last["fvu"], 4),
            "dead_frac": round(last["dead_frac"], 4),
            "resamples": [h["resample"] for h in history if "resample" in h]}


def evaluate_run(p: Preset, out: Path, name: str = "sae") -> dict:
    """Evaluate the run's SAE `name` on held-out text (`evaluate_on`): returns the nested
    `metrics.json` dictionary and writes the pass's feature statistics (`feature_stats.pt`) beside it."""
    device = resolve_device(p.device)
    tok, model = load_run(out, device)
    sae = load_sae(out, name, device)
    labels_used = p.corpus == "toy"
    tokens, labels = corpus_tokens(p, tok, "val", p.eval_tokens + model.cfg.n_ctx)
    labels = labels if labels_used else None
    fs = FeatureStatsBuilder(sae, tokens, labels, seed=p.seed)
    metrics = evaluate_on(model, sae, tokens, labels, p.eval_tokens, also=fs)
    fs.result().save(stats_path(out, name))
    lm = read_run_json(out, "stages.json", missing={}).get("lm", {})
    return {"lm": {"val_loss": lm.get("val_loss"), "on_concept_rate": lm.get("on_concept_rate")}, **metrics}


def evaluate_on(model, sae, tokens, labels, n_tokens: int, also=None, log: bool = True) -> dict:
    """`metrics.json`'s SAE part for `sae` on `n_tokens` held-out `tokens`: one pass of the
    `Evaluator` (reconstruction, sparsity, CE, concept detectors; `also.add(batch)` rides on it)
    and, with concept `labels`, a second pass for absorption and k-sparse probing (`sae.ground_truth`)."""
    ev = Evaluator(model, sae, n_concepts=len(CONCEPTS) if labels is not None else 0)
    # the k-sparse probes' units: chosen by class means on the first half of the windows, the
    # features' here, the neurons' the evaluator's own probe's (fitted on the same rows)
    feature_means = MeanDiffProbe(sae.cfg.d_sae, len(CONCEPTS), next(sae.parameters()).device)
    with torch.no_grad():
        for b in held_out_batches(model, sae, tokens, labels, n_tokens, log="evaluate" if log else ""):
            ev.add(b)
            if also is not None:
                also.add(b)
            if labels is not None:
                k = first_half_rows(b)
                feature_means.fit(b.f[:k], b.labels[:k])
    result = ev.result()
    metrics = {"sae": {"site": sae.cfg.site, "arch": sae.cfg.arch, "d_sae": sae.cfg.d_sae, **result.metrics}}
    if labels is not None:
        metrics.update(detector_summary(result))
        metrics["concepts"] = concept_table(result, CONCEPTS)
        detector, specific = ground_truth.detectors_and_specific(result.feature_detectors, result.features.auroc())
        gt = ground_truth.measure(held_out_batches(model, sae, tokens, labels, n_tokens,
                                                   log="absorption and k-sparse probes" if log else ""),
                                  detector, specific, feature_means, ev.probe, CONCEPTS)
        for name, row in gt.items():
            metrics["concepts"][name].update(row)
        metrics["ground_truth"] = ground_truth.summary(gt)
    warnings = degenerate(metrics["sae"])
    if warnings:
        metrics["warnings"] = warnings
    return metrics


def degenerate(s: dict) -> list[str]:
    """What makes an SAE's evaluation meaningless, one sentence each (empty when it is sound).

    Every feature dead means nothing was learned; FVU >= 1 means the reconstruction is no better
    than the mean; CE recovered outside [−1, 1.5] means the ablation baseline barely changes the
    loss (a tiny denominator), so the ratio says nothing (a corpus the model cannot read, e.g. one
    28 MB line, gives 3.0)."""
    out = []
    if s["dead_fraction"] >= 1.0 or s["l0"] == 0:
        out.append(f"every feature is dead on the held-out text (L0 {s['l0']:.1f}): the SAE learned nothing")
    elif s["fvu"] >= 1.0:
        out.append(f"FVU {s['fvu']:.2f} >= 1: the SAE reconstructs no better than the mean activation")
    for key in ("ce_recovered_zero", "ce_recovered_mean"):
        if not -1.0 <= s[key] <= 1.5:
            out.append(f"{key} {s[key]:.2f} is outside [-1, 1.5]: the ablation barely changes the loss "
                       f"({s['ce_clean']:.3f} clean vs {s['ce_zero_ablation']:.3f} zero-ablated), so the ratio means nothing")
    return out


def write_figures(out: Path) -> list[Path]:
    """Draw the run's figures into `out/figures/` from the files earlier stages wrote."""
    figs = out / "figures"
    metrics = read_run_json(out, "metrics.json")
    written = []
    if (out / "lm_history.json").exists() and (out / "sae_history.json").exists():
        written.append(plots.training_curves(read_run_json(out, "lm_history.json"),
                                             read_run_json(out, "sae_history.json"), figs / "training_curves.png"))
    stats = run_feature_stats(out)
    written.append(plots.log_density_histogram(stats.fire_count, stats.n_tokens, figs / "log_density.png"))
    if "concepts" in metrics:
        written.append(plots.concept_detectors(metrics["concepts"], metrics["monosemanticity"], metrics["detectors"],
                                               figs / "concept_detectors.png"))
        written.append(plots.concept_auroc(metrics["concepts"], figs / "concept_auroc.png"))
    return written


def write_evaluation(p: Preset, out: Path, name: str = "sae") -> dict:
    """Evaluate SAE `name` (`evaluate_run`) and write its metrics (`metrics.json`, or
    `NAME_metrics.json`); the default SAE's figures too. Returns the metrics."""
    metrics = evaluate_run(p, out, name)
    atomic_write_json(out / ("metrics.json" if name == "sae" else f"{name}_metrics.json"), metrics)
    if name == "sae":
        write_figures(out)
    return metrics


def stage_evaluate(p: Preset, out: Path) -> dict:
    m = write_evaluation(p, out)
    for w in m.get("warnings", []):
        print(f"WARNING: degenerate SAE: {w}", flush=True)
    return {k: round(m["sae"][k], 4) for k in ("l0", "fvu", "dead_fraction", "ce_recovered_zero", "ce_recovered_mean")}


def stage_dashboard(p: Preset, out: Path) -> dict:
    device = str(resolve_device(p.device))
    stats = run_feature_stats(out, device=device)
    tok, model = load_run(out, device)
    sae = load_sae(out, device=device)
    features = dashboard_features(out, stats)
    build_dashboard(model, sae, tok, stats, out / "dashboard", features=features, title=f"SAE features of {out.name}",
                    detectors=run_detectors(out))
    return {"pages": len(features)}


def dashboard_features(out: Path, stats) -> list[int]:
    """The features that get a dashboard page: `default_features` (every alive feature, up to
    `dashboard.ALL_PAGES_MAX`; past that a sample), and every feature the report links to (each
    concept's detector or closest feature, and its best feature by token AUROC)."""
    concepts = read_run_json(out, "metrics.json", missing={}).get("concepts", {})
    linked = [e["feature"] for c in concepts.values() for e in (c.get("detector"), c.get("closest_feature")) if e]
    return list(dict.fromkeys(default_features(stats) + linked + [c["feature"] for c in concepts.values()]))


def stage_steering(p: Preset, out: Path) -> dict:
    """The steering demonstrations (`sae.demos.DEMOS`: Golden Gate, unsafe code) into
    `steering.json`, each with its headline numbers under "summary". The stage writes no other
    file: `metrics.json` is the evaluation's alone (`sae.run.run_steering` reads the summaries)."""
    if p.corpus != "toy":
        atomic_write_json(out / "steering.json", {"skipped": "steering demos need the labelled toy world"})
        return {"skipped": True}
    device = str(resolve_device(p.device))
    tok, model = load_run(out, device)
    sae = load_sae(out, device=device)
    metrics = read_run_json(out, "metrics.json")
    max_acts = run_feature_stats(out, device=device).max_act.tolist()
    res = {}
    for i, (name, demo) in enumerate(DEMOS.items(), 1):
        t0 = time.perf_counter()
        print(f"  steering {i}/{len(DEMOS)}: {name} ...", flush=True)
        res[name] = demo(model, sae, tok, metrics, max_acts, seed=p.seed, log=lambda s: print(s, flush=True))
        s = res[name]["summary"]
        print(f"  steering {i}/{len(DEMOS)}: {name} done in {format_duration(time.perf_counter() - t0)}: feature "
              f"{s['feature']} at {s['multiple']}x", flush=True)
    atomic_write_json(out / "steering.json", res)
    return {f"{name}_{k}": round(v, 4) if isinstance(v, float) else v for name, r in res.items()
            for k, v in r["summary"].items() if isinstance(v, (int, float)) and k != "feature"}


def stage_report(p: Preset, out: Path) -> dict:
    md, _ = write_report(out)
    return {"report": md.name}


STAGES: list[Stage] = [
    Stage("tokenizer", ["tokenizer.json"], stage_tokenizer, ("vocab_size", "chars_per_token")),
    Stage("lm", ["lm.pt", "lm_history.json"], stage_lm, ("val_loss", "on_concept_rate")),
    Stage("sae", ["sae.pt", "sae_history.json"], train_sae_on_run, ("l0", "fvu", "dead_frac")),
    Stage("evaluate", ["metrics.json", "feature_stats.pt"], stage_evaluate,
          ("l0", "fvu", "dead_fraction", "ce_recovered_zero")),
    Stage("dashboard", ["dashboard/index.html"], stage_dashboard, ("pages",)),
    Stage("steering", ["steering.json"], stage_steering,
          ("golden_gate_fluent_baseline", "golden_gate_fluent_rate", "unsafe_code_rate_baseline",
           "unsafe_code_fluent_clamped_prompt", "skipped")),
    Stage("report", ["report.md", "report.html"], stage_report, ("report",)),
]
STAGE_BY_NAME = {st.name: st for st in STAGES}


def reproduce(preset: Preset, out: str | Path, until: str | None = None, log=print) -> dict:
    """Run every built stage into `out` (up to and including `until`), skipping finished ones.

    Returns {stage: summary} for all stages run so far in this directory (`stages.json`).
    """
    if until is not None and until not in [st.name for st in STAGES]:
        raise ValueError(f"unknown stage {until!r}; stages: {', '.join(st.name for st in STAGES)}")
    out = Path(out)
    # under torchrun (several processes) rank 0 runs every stage but `sae`, which all ranks run
    # together (`sae.distributed`); the others wait at a barrier after each stage
    distributed.init_from_env(resolve_device(preset.device))
    main = distributed.is_main()
    with run_lock(out) if main else nullcontext():
        if main:
            check_config(preset, out)
            stale = remove_stale_temporaries(out)  # a killed write's leftovers; under the lock, nobody else writes
            if stale:
                log(f"removed {len(stale)} temporary file(s) left by an interrupted write: "
                    + ", ".join(str(p.relative_to(out)) for p in stale[:5]) + (" ..." if len(stale) > 5 else ""))
        else:
            log = lambda *_: None  # noqa: E731 (the other ranks print nothing)
        distributed.barrier()
        return _run_stages(preset, out, until, log, main)


def _run_stages(preset: Preset, out: Path, until: str | None, log, main: bool) -> dict:
    summary_path = out / "stages.json"
    summary = read_run_json(out, "stages.json", missing={})
    log(f"reproduce: preset {preset.name!r} ({preset.description}) -> {out}")
    names = [st.name for st in STAGES]
    todo = [n for n in names[: names.index(until) + 1 if until else None] if not _finished(summary, out, n)]
    guess = _announce_estimate(preset, todo, log) if main and todo else {}
    spent = guessed = 0.0  # this call's finished stages: seconds taken, seconds estimated
    for i, st in enumerate(STAGES, 1):
        tag = f"[{i}/{len(STAGES)}] {st.name:<10}"
        if _finished(summary, out, st.name):
            log(f"{tag} done already ({', '.join(st.outputs)}), skipped")
        elif main or st.name == "sae":
            log(f"{tag} running...")
            t0 = time.time()
            info = st.run(preset, out) or {}
            info["seconds"] = round(time.time() - t0, 2)
            summary[st.name] = info
            if main:
                atomic_write_json(summary_path, summary)
            spent, guessed = spent + info["seconds"], guessed + guess.get(st.name, 0.0)
            left = sum(guess.get(n, 0.0) for n in todo[todo.index(st.name) + 1:]) * spent / max(guessed, 1e-9)
            log(f"{tag} finished in {info['seconds']:.1f}s {_fmt(info, st.headline)}"
                + (f" | about {format_duration(left)} left" if guess and left > 0 else ""))
        distributed.barrier()
        if st.name == until:
            break
    done = {k: v for k, v in summary.items() if isinstance(v, dict)}
    if done:
        log("summary: " + " | ".join(f"{k} {v.get('seconds', 0):.0f}s" for k, v in done.items())
            + f" | total {sum(v.get('seconds', 0) for v in done.values()):.0f}s")
        if (out / "report.md").exists():
            log(f"report: {out / 'report.md'} (and report.html); dashboard: {out / 'dashboard' / 'index.html'}")
    for w in read_run_json(out, "metrics.json", missing={}).get("warnings", []):
        log(f"WARNING: the run finished, but its SAE is degenerate: {w}")
    return summary


def _finished(summary: dict, out: Path, name: str) -> bool:
    """A stage is done when its `stages.json` entry (written last) and all its outputs exist."""
    return name in summary and all((out / o).exists() for o in STAGE_BY_NAME[name].outputs)


def _announce_estimate(preset: Preset, todo: list[str], log) -> dict[str, float]:
    """Print how long the stages in `todo` should take here (`sae.estimate`); returns the seconds
    per stage, which each finished stage then rescales ("about ... left")."""
    device = resolve_device(preset.device)
    rate = matmul_gflops(device)
    guess = estimate_seconds(preset, rate, todo)
    log(f"estimate: about {format_duration(sum(guess.values()))} on this machine ({device}, "
        f"{torch.get_num_threads()} threads, fp32 matmul {rate:.0f} GFLOP/s): "
        + ", ".join(f"{n} {format_duration(s)}" for n, s in guess.items()))
    return guess


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory (`out/.lock`) for the block, so a second
    `reproduce` into the same directory stops with one line instead of racing the first (both
    would run every stage and overwrite each other's files). The operating system releases the
    lock when the process ends, however it ends, so a crash leaves no stale lock. Where `fcntl`
    does not exist (Windows), no lock is taken."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a+") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "?"
                raise ValueError(f"{out} is in use by another run (process {holder}): wait for it to finish, "
                                 "or give another --out") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield


def _fmt(info: dict, keys: tuple[str, ...]) -> str:
    items = [f"{k}={info[k]}" for k in keys if k in info]
    return f"({', '.join(items)})" if items else ""
