"""The end-to-end run: stages that each write their files into one run directory.

`reproduce(preset, out)` runs the stages in order. A stage is done when its entry in `stages.json`
(written last, after every file of the stage) and its output files exist; a done stage is skipped,
so a crash or Ctrl-C loses at most the stage in progress and re-running the same command continues.
A stage that crashed after writing some of its files has no entry, so it runs again (the LM and SAE
stages then resume from their checkpoints). The configuration is written to `config.json` first;
re-running into the same directory with another one is refused (results of two configurations must
never mix). Presets live in `sae.run.config`, the run directory's layout in `sae.run.files`.

Stages (outputs in `runs/NAME/`):
    tokenizer   tokenizer.json       BPE trained on toy-world text
    lm          lm.pt, lm_history.json   the tiny GPT (resumable through lm_ckpt.pt)
    sae         sae.pt, sae_history.json the SAE on the MLP neurons (resumable through sae.ckpt)
    evaluate    metrics.json, feature_stats.pt, figures/*.png   one pass over held-out text:
                reconstruction, sparsity, CE recovered, concepts, and every feature's statistics;
                a second (to the site only) for absorption and k-sparse probing (`sae.evaluation.ground_truth`)
    dashboard   dashboard/           the static HTML dashboard
    steering    steering.json        Golden Gate and unsafe-code clamping demos
    steer_eval  steer_eval.json, figures/steer_eval.png   the steering benchmark: every concept and method
    circuits    tc.pt, tc_metrics.json, circuits.json   a skip transcoder per MLP (tc, tc_1, ...), evaluated
                beside the SAE, and attribution graphs through it checked against the world (`sae.circuit_checks`)
    report      report.md, report.html   every number and figure of the run, readable on its own
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import torch

from sae import circuit_checks, distributed, plots
from sae.autoencoder import SparseAutoencoder
from sae.buffer import ActivationBuffer
from sae.evaluation import concepts, reconstruction
from sae.evaluation.evaluate import evaluate, held_out_pass
from sae.gpt import GPT
from sae.interpret import FeatureStatsBuilder
from sae.run import analyses
from sae.run.config import Preset, check_config
from sae.run.dashboard import build_dashboard, default_features
from sae.run.estimate import estimate_seconds, matmul_gflops
from sae.run.files import Run, corpus_tokens, load_run, read_run_json, sae_path, stats_path, training_text
from sae.run.report import write_report
from sae.steering.unsafe_code import UNSAFE_SENSITIVITY_MIN, unsafe_context_sensitivity
from sae.tokenizer import Tokenizer
from sae.train_lm import on_concept_rate, train_lm
from sae.train_sae import train_sae
from sae.utils import atomic_write_json, format_duration, remove_stale_temporaries, resolve_device
from sae.world.corpus import CONCEPTS


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
            info["warnings"] = [f"the LM gives an insecure switch value probability {sens['p_after_unsafe']:.3f} in insecure "
                  f"files and {sens['p_after_safe']:.3f} in the same files made safe (ratio {sens['ratio']:.2f} < "
                  f"{UNSAFE_SENSITIVITY_MIN}): it does not track a file's security posture, so the unsafe-code "
                  "steering demo cannot work on this model"]
            print(f"WARNING: {info['warnings'][0]}", flush=True)
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
                              batch_size=batch, seed=p.seed + rank, device=device, target_site=p.sae.target_site)
    torch.manual_seed(p.seed)
    sae = SparseAutoencoder(p.sae_config(buffer.d_in, buffer.d_out)).to(device)
    scales = [buffer.estimate_scale(), buffer.estimate_target_scale()]
    if n_ranks > 1:  # s = sqrt(d)/E‖x‖ over every rank's rows: average the ranks' mean norms sqrt(d)/s_r
        scales = [None if s is None else 1.0 / distributed.Sync().mean(torch.tensor([1.0 / s], device=device),
                                                                        "input scale").item() for s in scales]
    sae.set_input_scale_(*scales)
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
    """Evaluate the run's SAE `name` on held-out text: one pass (`held_out_pass`), the "evaluate"
    analyses over it (`sae.run.analyses`), and the pass's feature statistics written beside
    (`feature_stats.pt`). Returns the analyses' results as `metrics.json` holds them."""
    run = Run(out, resolve_device(p.device), name)
    tokens, labels = corpus_tokens(p, run.tok, "val", p.eval_tokens + run.model.cfg.n_ctx)
    labels = labels if p.corpus == "toy" else None
    fs = FeatureStatsBuilder(run.sae, tokens, labels, seed=p.seed)
    held_out = held_out_pass(run.model, run.sae, tokens, labels, p.eval_tokens, CONCEPTS, also=fs)
    fs.result().save(stats_path(out, name))
    return analyses.to_json(evaluate(held_out, analyses.of_stage("evaluate")))


def write_figures(out: Path) -> list[Path]:
    """Draw the run's figures into `out/figures/` from the files earlier stages wrote."""
    figs, run = out / "figures", Run(out)
    written = []
    if (out / "lm_history.json").exists() and (out / "sae_history.json").exists():
        written.append(plots.training_curves(read_run_json(out, "lm_history.json"),
                                             read_run_json(out, "sae_history.json"), figs / "training_curves.png"))
    written.append(plots.log_density_histogram(run.stats.fire_count, run.stats.n_tokens, figs / "log_density.png"))
    c = run.results("evaluate").get("concepts")
    if c is not None:
        written.append(plots.concept_detectors(c.rows, c.monosemanticity, c.detectors, figs / "concept_detectors.png"))
        written.append(plots.concept_auroc(c.rows, figs / "concept_auroc.png"))
    return written


def write_evaluation(p: Preset, out: Path, name: str = "sae") -> dict:
    """Evaluate SAE `name` (`evaluate_run`) and write its results (`metrics.json`, or
    `NAME_metrics.json`); the default SAE's figures too. Returns the results as written."""
    metrics = evaluate_run(p, out, name)
    atomic_write_json(out / Run(out, name=name).file_of("evaluate"), metrics)
    if name == "sae":
        write_figures(out)
    return metrics


def stage_evaluate(p: Preset, out: Path) -> dict:
    m = write_evaluation(p, out)
    for w in m["sae"]["warnings"]:
        print(f"WARNING: degenerate SAE: {w}", flush=True)
    return {h.key: round(h.value, 4) for h in reconstruction.headline(Run(out).result("sae"))}


def stage_dashboard(p: Preset, out: Path) -> dict:
    run = Run(out, str(resolve_device(p.device)))
    features = dashboard_features(run)
    build_dashboard(run.model, run.sae, run.tok, run.stats, out / "dashboard", features=features,
                    title=f"SAE features of {out.name}", detectors=run_detectors(run))
    return {"pages": len(features)}


def run_detectors(run: Run) -> dict[int, str]:
    """{feature: concept} for every concept-detector feature of the run (empty without concepts)."""
    c = run.results("evaluate").get("concepts")
    return concepts.detector_features(c) if c is not None else {}


def dashboard_features(run: Run) -> list[int]:
    """The features that get a dashboard page: `default_features` (every alive feature, up to
    `dashboard.ALL_PAGES_MAX`; past that a sample), and every feature the report links to (each
    concept's detector or closest feature, and its best feature by token AUROC)."""
    c = run.results("evaluate").get("concepts")
    rows = c.rows.values() if c is not None else []
    linked = [e["feature"] for r in rows for e in (r.get("detector"), r.get("closest_feature")) if e]
    return list(dict.fromkeys(default_features(run.stats) + linked + [r["feature"] for r in rows]))


def stage_analyses(p: Preset, out: Path, stage: str, skip: str = "") -> dict:
    """The analyses of a stage that reads the finished run (`sae.run.analyses`: "steering" for the
    Golden Gate and unsafe-code demos, "steer_eval" for the steering benchmark, "circuits") into its
    file, or a file that says why they were skipped. The stage writes no other file (but its
    figures): `metrics.json` is the evaluation's alone."""
    name = analyses.FILES[stage]
    skip = skip or (f"{stage} needs the labelled toy world" if p.corpus != "toy" else "")
    if skip:
        atomic_write_json(out / name, {"version": analyses.VERSION, "skipped": skip})
        return {"skipped": True}
    run = Run(out, str(resolve_device(p.device)), log=lambda s: print(s, flush=True))
    todo, results, heads = analyses.of_stage(stage), {}, {}
    for i, a in enumerate(todo, 1):
        t0 = time.perf_counter()
        print(f"  {stage} {i}/{len(todo)}: {a.NAME} ...", flush=True)
        results[a.NAME] = a.run(run)
        heads.update({h.key: round(h.value, 4) if isinstance(h.value, float) else h.value
                      for h in a.headline(results[a.NAME])})
        print(f"  {stage} {i}/{len(todo)}: {a.NAME} done in {format_duration(time.perf_counter() - t0)}", flush=True)
    atomic_write_json(out / name, analyses.to_json(results))
    return heads


def stage_circuits(p: Preset, out: Path) -> dict:
    """A skip transcoder per MLP (`Preset.transcoder`: TopK at the SAE's held-out L0), trained like the
    SAE (every rank, under torchrun) and evaluated like it (`tc_metrics.json`); then the circuits
    analysis (`sae.circuit_checks`) into `circuits.json`. Skipped with `circuits=false`, and on unlabelled text."""
    if not p.circuits or p.corpus != "toy":
        return stage_analyses(p, out, "circuits", "" if p.circuits else "circuits=false") if distributed.is_main() else {}
    k = max(1, round(Run(out).result("sae").l0))
    names = circuit_checks.transcoder_names(p.gpt.n_layer)
    for layer, name in enumerate(names):
        if not sae_path(out, name).exists():
            if distributed.is_main():
                print(f"  circuits: training transcoder {name} (MLP {layer}, k = {k}) ...", flush=True)
            train_sae_on_run(p.transcoder(layer, k), out, name)
    if not distributed.is_main():
        return {}
    for layer, name in enumerate(names):
        if not (out / Run(out, name=name).file_of("evaluate")).exists():
            print(f"  circuits: evaluating transcoder {name} ...", flush=True)
            write_evaluation(p.transcoder(layer, k), out, name)
    return {"k": k, **stage_analyses(p, out, "circuits")}


def rerun_stage(p: Preset, out: Path, name: str) -> dict:
    """Run stage `name` on a run directory again (its inputs must be there), record it in
    `stages.json` as `reproduce` does, and rewrite the report if the run has one, so it shows the
    new results. Under the run's lock."""
    with run_lock(out):
        t0 = time.time()
        info = STAGE_BY_NAME[name].run(p, out) or {}
        info["seconds"] = round(time.time() - t0, 2)
        atomic_write_json(out / "stages.json", {**read_run_json(out, "stages.json", missing={}), name: info})
        if (out / "report.md").exists():
            write_report(out)
    return info


def stage_report(p: Preset, out: Path) -> dict:
    md, _ = write_report(out)
    return {"report": md.name}


STAGES: list[Stage] = [
    Stage("tokenizer", ["tokenizer.json"], stage_tokenizer, ("vocab_size", "chars_per_token")),
    Stage("lm", ["lm.pt", "lm_history.json"], stage_lm, ("val_loss", "on_concept_rate")),
    Stage("sae", ["sae.pt", "sae_history.json"], train_sae_on_run, ("l0", "fvu", "dead_frac")),
    Stage("evaluate", ["metrics.json", "feature_stats.pt"], stage_evaluate, ("l0", "fvu", "dead_fraction", "ce_recovered")),
    Stage("dashboard", ["dashboard/index.html"], stage_dashboard, ("pages",)),
    Stage("steering", ["steering.json"], partial(stage_analyses, stage="steering"),
          ("gg_baseline", "gg_fluent", "unsafe_baseline", "unsafe_fluent", "skipped")),
    Stage("steer_eval", ["steer_eval.json"], partial(stage_analyses, stage="steer_eval"),
          ("steer_gg_sae", "steer_gg_diffmean", "steer_sae_wins", "steer_random_max", "skipped")),
    Stage("circuits", ["circuits.json"], stage_circuits,
          ("k", "tc_fvu", "tc_ce_added", "sae_ce_added", "circuit_gg_share", "circuit_comment_top3", "skipped")),
    Stage("report", ["report.md", "report.html"], stage_report, ("report",)),
]
STAGE_BY_NAME = {st.name: st for st in STAGES}


def reproduce(preset: Preset, out: str | Path, until: str | None = None, log=print) -> dict:
    """Run every built stage into `out` (up to and including `until`), skipping finished ones.

    Returns {stage: summary} for all stages run so far in this directory (`stages.json`).
    """
    if until is not None and until not in STAGE_BY_NAME:
        raise ValueError(f"unknown stage {until!r}; stages: {', '.join(STAGE_BY_NAME)}")
    names = list(STAGE_BY_NAME)
    if preset.sae.target_site and names.index(until or names[-1]) > names.index("dashboard"):
        raise ValueError("reproduce trains an SAE (sae.target_site must be empty): its steering stages clamp features "
                         "where they are read, and its circuits stage trains a transcoder beside it (tc.pt). Train "
                         "another with python -m sae train-sae --run RUN --name tc2 --set sae.site=blocks.0.mlp.hook_in "
                         "--set sae.target_site=blocks.0.mlp.hook_out, then python -m sae evaluate --run RUN --sae tc2")
    out = Path(out)
    # under torchrun (several processes) rank 0 runs every stage but `sae` and the training in
    # `circuits`, which all ranks run together (`sae.distributed`); the others wait at a barrier after each stage
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
    summary = read_run_json(out, "stages.json", missing={})
    log(f"reproduce: preset {preset.name!r} ({preset.description}) -> {out}")
    names = list(STAGE_BY_NAME)
    todo = [n for n in names[: names.index(until) + 1 if until else None] if not _finished(summary, out, n)]
    guess = {}  # seconds per stage here (`sae.run.estimate`), rescaled as stages finish
    if main and todo:
        device = resolve_device(preset.device)
        rate = matmul_gflops(device)
        guess = estimate_seconds(preset, rate, todo)
        log(f"estimate: about {format_duration(sum(guess.values()))} on this machine ({device}, "
            f"{torch.get_num_threads()} threads, fp32 matmul {rate:.0f} GFLOP/s): "
            + ", ".join(f"{n} {format_duration(s)}" for n, s in guess.items()))
    spent = guessed = 0.0  # this call's finished stages: seconds taken, seconds estimated
    for i, st in enumerate(STAGES, 1):
        tag = f"[{i}/{len(STAGES)}] {st.name:<10}"
        if _finished(summary, out, st.name):
            log(f"{tag} done already ({', '.join(st.outputs)}), skipped")
        elif main or st.name in ("sae", "circuits"):
            log(f"{tag} running...")
            t0 = time.time()
            info = st.run(preset, out) or {}
            info["seconds"] = round(time.time() - t0, 2)
            summary[st.name] = info
            if main:
                atomic_write_json(out / "stages.json", summary)
            spent, guessed = spent + info["seconds"], guessed + guess.get(st.name, 0.0)
            left = sum(guess.get(n, 0.0) for n in todo[todo.index(st.name) + 1:]) * spent / max(guessed, 1e-9)
            shown = ", ".join(f"{k}={info[k]}" for k in st.headline if k in info)
            log(f"{tag} finished in {info['seconds']:.1f}s {f'({shown})' if shown else ''}"
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
    sae_result = Run(out).results("evaluate").get("sae") if (out / "metrics.json").exists() else None
    for w in sae_result.warnings if sae_result else []:
        log(f"WARNING: the run finished, but its SAE is degenerate: {w}")
    return summary


def _finished(summary: dict, out: Path, name: str) -> bool:
    """A stage is done when its `stages.json` entry (written last) and all its outputs exist."""
    return name in summary and all((out / o).exists() for o in STAGE_BY_NAME[name].outputs)


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on `out/.lock` for the block, so a second `reproduce` into the same
    directory stops with one line instead of racing the first. The operating system releases the
    lock however the process ends (no stale lock); without `fcntl` (Windows), no lock is taken."""
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
