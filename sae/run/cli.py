"""Command-line interface: `python -m sae COMMAND ...` (see `python -m sae --help`).

Each subcommand is a thin wrapper over a library function, so everything the CLI does can be
done from Python (and the tutorials do). Bad input ends with one line naming the problem and
exit code 2; Ctrl-C with exit code 130.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
from dataclasses import replace
from pathlib import Path

import torch

from sae import distributed
from sae.evaluation import concepts
from sae.run.command import Parser, positive_int, run_command, seed_int, temperature, vocab_size
from sae.run.config import check_config, get_preset, preset_of_run, with_overrides
from sae.run.dashboard import build_dashboard, format_feature
from sae.run.estimate import matmul_gflops
from sae.run.files import RUN_JSON_FILES, Run, check_run_dir, check_run_files, load_run, load_sae, run_feature_stats, sae_path
from sae.run.pipeline import dashboard_features, reproduce, rerun_stage, run_detectors, train_sae_on_run, write_evaluation
from sae.run.seeds import seed_study
from sae.steering.clamp import check_features, parse_value, steer_samples
from sae.steering.fluency import TEMPERATURE, verdict
from sae.tokenizer import Tokenizer
from sae.utils import check_output_dir, check_output_file, resolve_device
from sae.world import corpus as C


def _check_sae_name(name: str, flag: str) -> None:
    """An SAE name becomes a file name in the run directory (NAME.pt): no folders, no hidden files."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ValueError(f"{flag} must be a plain name like sae or l1_5 (letters, digits, _ . -), got {name!r}")


# ANSI background colours, one per concept (cycled), for `corpus` samples on a terminal.
_COLOURS = [41, 42, 43, 44, 45, 46, 100, 101, 102, 103, 104, 105, 106, 47]


def _colour(cid: int) -> str:
    return f"\x1b[30;{_COLOURS[cid % len(_COLOURS)]}m" if cid >= 0 else "\x1b[0m"


def _show_pieces(doc: C.Document, colour: bool) -> str:
    out, prev = [], None
    for cid, text in doc:
        if colour:
            out.append(_colour(cid) + text + "\x1b[0m")
        elif cid != prev:
            out.append(f"[{C.CONCEPTS[cid] if cid >= 0 else 'none'}] " + text)
        else:
            out.append(text)
        prev = cid
    return "".join(out)


def cmd_corpus(args) -> int:
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    if args.corpus != "toy":
        for name, text in C.text_files(args.corpus, args.split)[: args.n]:
            print(f"=== {name} ({len(text):,} chars)")
            print(text[:600])
        return 0
    if args.concept is not None:
        C.concept_id(args.concept)
    if args.stats:
        return _corpus_stats(args)
    if colour:
        print("legend: " + " ".join(_colour(i) + n + "\x1b[0m" for i, n in enumerate(C.CONCEPTS)))
    if args.concept:
        docs = C.concept_segments(args.concept, args.n, seed=args.seed, split=args.split)
    else:
        stream = C.toy_documents(args.seed, args.split)
        docs = [next(stream) for _ in range(args.n)]
    for i, doc in enumerate(docs):
        print(f"--- sample {i}")
        print(_show_pieces(doc, colour))
    return 0


def _corpus_stats(args) -> int:
    tok = Tokenizer.load(args.tokenizer) if args.tokenizer else Tokenizer.train(C.toy_text(1_000_000, seed=args.seed), 2048)
    toks, labs = C.toy_tokens(tok, args.tokens, seed=args.seed, split=args.split)
    counts = C.concept_token_counts((toks, labs))
    total = sum(counts.values())
    print(f"{args.tokens:,} tokens of the toy world (split {args.split}, seed {args.seed}, vocab {tok.vocab_size})")
    print(f"{'concept':<14}{'tokens':>10}{'share':>8}")
    for name, n in counts.items():
        print(f"{name:<14}{n:>10,}{n / total:>8.1%}")
    return 0


def cmd_tokenizer(args) -> int:
    out = check_output_file(Path(args.out) / "tokenizer.json")  # before the minutes of training
    if args.pretrained:
        tok = Tokenizer.from_pretrained(args.pretrained)
    else:
        if args.corpus == "toy":
            text = C.toy_text(args.chars, seed=args.seed)
        else:
            text = "\n\n".join(t for _, t in C.text_files(args.corpus, "train"))[: args.chars]
        print(f"training BPE (vocab {args.vocab_size}) on {len(text):,} characters of {args.corpus!r}...", file=sys.stderr)
        tok = Tokenizer.train(text, args.vocab_size, verbose=True)
    path = tok.save(out)
    sample = "The Golden Gate Bridge rises above the fog."
    ids = tok.encode(sample)
    print(f"wrote {path} ({tok})")
    print(f"{sample!r} -> {len(ids)} tokens: " + " | ".join(tok.token_str(i) for i in ids))
    return 0


def cmd_reproduce(args) -> int:
    preset = get_preset(args.preset)
    for name in ("seed", "device", "corpus"):
        value = getattr(args, name, None)
        if value is not None:
            preset = replace(preset, **{name: value})
    preset = with_overrides(preset, args.set)
    resolve_device(preset.device)  # an unknown device: refused before the run directory is made
    if preset.corpus != "toy":
        C.text_files(preset.corpus, "train")  # fail now, with a clear message, not after training
    out = check_output_dir(Path(args.out or f"runs/{preset.name}"))
    if (out / "config.json").is_file():  # resuming: refuse another configuration before touching anything
        check_config(preset, out)
    if out.is_dir():  # and every file a later stage or the report reads must be readable
        check_run_files(out, RUN_JSON_FILES)
    reproduce(preset, out, until=args.until)
    return 0


def seed_list(text: str) -> list[int]:
    """`0-4` or `0,2,7`: distinct seeds, in order."""
    try:
        if re.fullmatch(r"\s*\d+\s*-\s*\d+\s*", text):
            lo, hi = (int(x) for x in text.split("-"))
            seeds = list(range(lo, hi + 1))
        else:
            seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a range like 0-4 or a list like 0,2,7, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"must name distinct seeds >= 0, like 0-4 or 0,2,7, got {text!r}")
    return seeds


def cmd_seeds(args) -> int:
    preset = with_overrides(get_preset(args.preset), args.set)
    if args.device is not None:
        preset = replace(preset, device=args.device)
    if preset.corpus != "toy":
        raise ValueError("the seed study reads the steering demos and concept detectors, which need the toy corpus")
    resolve_device(preset.device)  # an unknown device: refused now, not inside the first seed's run
    out = check_output_dir(Path(args.out))
    for s in args.seeds:  # refuse a mismatched run directory now, not after hours on the others
        if (out / f"seed{s}" / "config.json").is_file():
            check_config(replace(preset, seed=s), out / f"seed{s}")
    rate = matmul_gflops()
    machine = (f"Machine: {platform.machine()} {platform.system()}, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads, fp32 matmul {rate:.0f} GFLOP/s (1024², before the study).")
    seed_study(preset, out, args.seeds, machine=machine)
    print((out / "seeds.md").read_text())
    return 0


def cmd_train_sae(args) -> int:
    run = Path(args.run)
    _check_sae_name(args.name, "--name")
    p = with_overrides(preset_of_run(run), args.set)
    path = sae_path(run, args.name)
    if path.exists():
        raise ValueError(f"{path} exists; pass another --name, or delete it to retrain")
    check_output_file(path)
    info = train_sae_on_run(p, run, args.name)
    if distributed.is_main():
        print(f"wrote {path}: {info}")
    return 0


def cmd_evaluate(args) -> int:
    run = Path(args.run)
    _check_sae_name(args.sae, "--sae")
    load_sae(run, args.sae)  # fail now if there is no such SAE
    # and if anything the evaluation reads or writes is broken (the figures read the histories)
    histories = ["lm_history.json", "sae_history.json"] if args.sae == "sae" else []
    check_run_files(run, ["config.json", "stages.json"] + histories)
    check_output_dir(run)
    if args.sae == "sae":
        check_output_dir(run / "figures")
    metrics = write_evaluation(preset_of_run(run), run, args.sae)
    s = metrics["sae"]
    print(f"wrote {run / Run(run, name=args.sae).file_of('evaluate')}")
    print(f"L0 {s['l0']:.1f} | FVU {s['fvu']:.3f} | dead {s['dead_fraction']:.1%} | "
          f"CE recovered {s['ce_recovered_zero']:.3f} (zero-ablation), {s['ce_recovered_mean']:.3f} (mean-ablation)")
    concept_rows = metrics.get("concepts", {}).get("rows", {})
    if concept_rows:
        d = metrics["concepts"]["detectors"]
        print(f"concept detectors: {d['features']} of {d['of']} concepts have a detector feature, "
              f"{d.get('neurons', '-')} a detector neuron (share, segment recall; 'closest' where none passes)")

    def unit(c: dict, key: str, name: str) -> str:
        e = c.get(key) or c.get(f"closest_{name}")
        if not e:
            return ""
        return f"{name} {e[name]:>5} {e['share']:.2f} {e['segment_recall']:.2f}{'' if c.get(key) else ' (closest)'}"

    for name, c in concept_rows.items():
        print(f"  {name:<13} {unit(c, 'detector', 'feature'):<36} | {unit(c, 'neuron_detector', 'neuron'):<36}"
              f" | token AUROC: feature {c['auroc']:.3f}, neuron {c.get('neuron_auroc', float('nan')):.3f}, "
              f"probe {c.get('probe_auroc', float('nan')):.3f}")
    return 0


def cmd_steer_eval(args) -> int:
    run = check_run_dir(args.run)
    check_run_files(run, ["config.json", "stages.json", "metrics.json"])  # (steer_eval.json: rewritten)
    p = preset_of_run(run)
    if p.corpus != "toy":
        raise ValueError(f"{run} was trained on {p.corpus!r}: the steering benchmark needs the labelled toy world")
    Run(run).result("concepts")  # the evaluation's concept table: refused, naming the command, if missing
    check_output_dir(run)
    info = rerun_stage(p, run, "steer_eval")
    r = Run(run).result("steer_eval")
    print(f"wrote {run / 'steer_eval.json'} in {info['seconds']:.0f}s; steered share on the test prompts:")
    print(f"  {'concept':<13} {'unsteered':>9} " + " ".join(f"{m:>10}" for m in next(iter(r.concepts.values()))["methods"]))
    for c, row in r.concepts.items():
        print(f"  {c:<13} {row['unsteered']['steered']:>9.0%} "
              + " ".join(f"{v['steered']:>10.0%}" for v in row["methods"].values()) + f"   winner: {row['winner']}")
    if (run / "report.md").exists():
        print(f"report: {run / 'report.md'} (its steering benchmark section)")
    return 0


def cmd_dashboard(args) -> int:
    run = Path(args.run)
    out = check_output_dir(Path(args.out) if args.out else run / "dashboard")  # before the pages are built
    sae = load_sae(run)
    features = None
    if args.features:
        try:
            features = [int(x) for x in args.features.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--features must be comma-separated feature ids like 10,20, got {args.features!r}") from None
        check_features(sae, features)
    check_run_files(run, ["metrics.json"])
    opened = Run(run)
    index = build_dashboard(opened.model, sae, opened.tok, opened.stats, out, features=features or dashboard_features(opened),
                            title=f"SAE features of {run.name}", detectors=run_detectors(opened))
    print(f"wrote {index} (open it in a browser; the folder is self-contained)")
    return 0


def cmd_circuit(args) -> int:
    """The attribution graph of one prompt's next token through the run's transcoder (`sae.circuits`)."""
    import time

    from sae.circuit_checks import transcoder_names
    from sae.circuits import ablation_check, attribute, prune
    from sae.run.circuit_page import top_nodes, write_circuit

    run = Path(args.run)
    _check_sae_name(args.sae, "--sae")
    check_run_dir(run)
    if not sae_path(run, args.sae).exists():
        raise ValueError(f"{run} has no transcoder {args.sae}.pt: train one with python -m sae train-sae --run {run} "
                         f"--name {args.sae} --set sae.site=blocks.0.mlp.hook_in --set sae.target_site=blocks.0.mlp.hook_out "
                         f"(one per layer, named {args.sae}, {args.sae}_1, ... in a deeper model)")
    tok, model = load_run(run)
    names = transcoder_names(model.cfg.n_layer, args.sae)
    for name in names[1:]:
        if not sae_path(run, name).exists():
            raise ValueError(f"{run} has {model.cfg.n_layer} layers: a graph needs a transcoder per MLP, and {name}.pt "
                             "is missing")
    tcs = {layer: load_sae(run, name) for layer, name in enumerate(names)}
    if not all(t.transcoder for t in tcs.values()):
        raise ValueError(f"{args.sae}.pt is an SAE, not a transcoder (no sae.target_site): a graph replaces the MLP, "
                         "so it needs a transcoder from blocks.0.mlp.hook_in to blocks.0.mlp.hook_out")
    ids = [tok.eot_token] + tok.encode(args.prompt)
    if len(ids) < 2 or len(ids) > model.cfg.n_ctx:
        raise ValueError(f"--prompt must hold 1 to {model.cfg.n_ctx - 1} tokens, got {len(ids) - 1}")
    target = tok.encode(args.target)
    if len(target) != 1:
        pieces = ", ".join(repr(tok.decode([t])) for t in target) or "none"
        raise ValueError(f"--target must be one token, got {len(target)}: {pieces} (mind the leading space: ' Bridge')")
    if not 0 < args.node_threshold <= 1 or not 0 < args.edge_threshold <= 1:
        raise ValueError("--node-threshold and --edge-threshold are shares of the influence, in (0, 1]")
    out = check_output_dir(Path(args.out) if args.out else run / "circuits")
    t0 = time.perf_counter()
    graph = prune(attribute(model, tcs, ids, target[0]), args.node_threshold, args.edge_threshold)
    seconds = time.perf_counter() - t0
    check = ablation_check(model, tcs, graph)
    note = (f"Built in {seconds:.2f} s; the graph's predicted logit changes for its top {len(check['predicted'])} "
            f"features against the model's, when each is removed: correlation {check['correlation']:.2f}.")
    page = write_circuit(out, graph, model, tok, tcs[0], run_feature_stats(run, args.sae),
                         f"{args.prompt!r} → {args.target!r}", note)
    print(f"{args.prompt!r} -> {args.target!r}: logit {graph.logit:.2f}, {int(graph.node_mask.sum())} of "
          f"{len(graph.adjacency)} nodes kept, replacement score {graph.scores['replacement']:.3f}, completeness "
          f"{graph.scores['completeness']:.3f} ({seconds:.2f} s; ablation check r = {check['correlation']:.2f})")
    print(f"{'kind':<8} {'layer':>5} {'pos':>4} {'token':<14} {'feature':>7} {'influence':>9} {'direct':>8}")
    for kind, layer, pos, text, index, inf, direct in top_nodes(graph, tok):
        print(f"{kind:<8} {layer if layer >= 0 else '':>5} {pos:>4} {text!r:<14} {index if kind == 'feature' else '':>7} "
              f"{inf:>9.3f} {direct:>+8.3f}")
    print(f"wrote {page}")
    return 0


def cmd_feature(args) -> int:
    run = Path(args.run)
    sae = load_sae(run)
    check_features(sae, [args.id])
    tok, model = load_run(run)
    print(format_feature(run_feature_stats(run), tok, model, sae, args.id))
    return 0


def cmd_steer(args) -> int:
    run = Path(args.run)
    sae = load_sae(run)
    if (args.feature is None) == (args.concept is None):
        raise ValueError("give exactly one of --feature ID or --concept NAME")
    feature, demo = args.feature, None
    if args.concept is not None:
        C.concept_id(args.concept)
        if not (run / "metrics.json").exists():
            raise FileNotFoundError(f"{run} has no metrics.json to choose the concept's feature from; run "
                                    f"`python -m sae evaluate --run {run}`, or give --feature ID")
        # the steering stage's demo of the concept (its feature, multiple, temperature, chosen on
        # validation prompts; sae.steering) where it made one, else the concept's best held-out detector
        opened = Run(run)
        demo = next((r for r in opened.results("steering").values() if r.concept == args.concept), None)
        feature = demo.summary["feature"] if demo else concepts.choose_feature(opened.result("concepts"), args.concept)
    check_features(sae, [feature])
    max_act = float(run_feature_stats(run).max_act[feature])
    value = parse_value(args.value or (f"{demo.summary['multiple']}x" if demo else "10x"), max_act, feature=feature)
    t = args.temperature if args.temperature is not None else demo.summary.get("temperature", TEMPERATURE) if demo else 1.0
    prompt_only = bool(getattr(demo, "prompt_only", False)) if args.value is None else False
    tok, model = load_run(run)
    print(f"feature {feature} (max activation {max_act:.2f}) clamped to {value:.2f} ({value / max(max_act, 1e-12):g}x)"
          f" at {sae.cfg.site}{' over the prompt' if prompt_only else ''}, temperature {t:g}"
          + (" (the steering stage's choice)" if demo and args.value is None and args.temperature is None else ""))
    ids, pairs = steer_samples(model, sae, tok, args.prompt, feature, value, args.n, args.max_new_tokens, args.seed,
                               temperature=t, prompt_only=prompt_only)
    for i, (plain, steered) in enumerate(pairs):
        print(f"--- sample {i} (seed {args.seed + i})")
        for name, cont in (("unsteered", plain), ("steered", steered)):
            print(f"  {name + ':':<11}{args.prompt + tok.decode(cont)!r}")
            print(f"  {'':<11}{verdict(model, tok, ids, cont, args.concept)}")
    return 0


def cmd_generate(args) -> int:
    tok, model = load_run(args.run)
    prompt = [tok.eot_token] + tok.encode(args.prompt)
    for i in range(args.n):
        out = model.generate(prompt, args.max_new_tokens, temperature=args.temperature,
                             top_k=args.top_k, seed=args.seed + i)
        print(f"--- sample {i} (seed {args.seed + i})")
        print(args.prompt + tok.decode(out[len(prompt):].tolist()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m sae", description="Dictionary learning on a toy transformer: reproduce Towards/Scaling Monosemanticity on a laptop CPU.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    set_help = ("change any configuration field, e.g. --set train_sae.l1_coeff=2 --set sae.d_sae=2048 "
                "(repeatable; an unknown field lists the valid ones)")
    for name, until, help_ in [("reproduce", None, "run the whole pipeline into runs/NAME (skips finished stages)"),
                               ("train-lm", "lm", "train the tokenizer and the tiny GPT into runs/NAME")]:
        r = sub.add_parser(name, help=help_)
        r.add_argument("--preset", default="tiny", help="smoke | tiny (default) | base")
        r.add_argument("--out", default=None, help="run directory (default runs/PRESET)")
        r.add_argument("--seed", type=seed_int, default=None, help="seed of every stage (default 0)")
        r.add_argument("--device", default=None, help="auto (default: cuda, then mps, then cpu) | cpu | cuda")
        r.add_argument("--corpus", default=None, help="toy (default, labelled), pystdlib, or a file/directory of text")
        r.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help=set_help)
        r.set_defaults(fn=cmd_reproduce, until=until)

    sd = sub.add_parser("seeds", help="the seed study: reproduce for several seeds, one table of the headlines")
    sd.add_argument("--seeds", type=seed_list, default=list(range(5)), help="a range or list (default 0-4)")
    sd.add_argument("--preset", default="tiny", help="smoke | tiny (default) | base")
    sd.add_argument("--out", default="runs/seeds", help="folder of the runs (OUT/seedN) and the table (default runs/seeds)")
    sd.add_argument("--device", default=None, help="auto (default: cuda, then mps, then cpu) | cpu | cuda")
    sd.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help=set_help)
    sd.set_defaults(fn=cmd_seeds)

    ts = sub.add_parser("train-sae", help="train a sparse autoencoder on a run's model (writes NAME.pt)")
    ts.add_argument("--run", required=True, help="run directory with a trained lm.pt")
    ts.add_argument("--name", default="sae", help="output name: NAME.pt and NAME_history.json (default sae)")
    ts.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="change the run's SAE settings, e.g. --set sae.arch=topk --set sae.k=16 "
                         "--set train_sae.resample_steps= (no resampling); repeatable")
    ts.set_defaults(fn=cmd_train_sae)

    ev = sub.add_parser("evaluate", help="evaluate a run's SAE on held-out text (writes metrics.json, feature_stats.pt)")
    ev.add_argument("--run", required=True)
    ev.add_argument("--sae", default="sae", help="which SAE of the run: NAME.pt (default sae)")
    ev.set_defaults(fn=cmd_evaluate)

    se = sub.add_parser("steer-eval", help="the steering benchmark on a finished run: every concept and method, "
                                           "chosen on validation prompts, measured on test prompts (writes steer_eval.json)")
    se.add_argument("--run", required=True, help="run directory with a finished evaluation (metrics.json)")
    se.set_defaults(fn=cmd_steer_eval)

    db = sub.add_parser("dashboard", help="write the static HTML feature dashboard of a run")
    db.add_argument("--run", required=True)
    db.add_argument("--features", default=None, help="comma-separated feature ids (default: top features of each concept + a random sample)")
    db.add_argument("--out", default=None, help="output folder (default RUN/dashboard)")
    db.set_defaults(fn=cmd_dashboard)

    ci = sub.add_parser("circuit", help="the attribution graph of a prompt's next token through the run's "
                                        "transcoder (writes RUN/circuits/*.html, prints the top nodes)")
    ci.add_argument("--run", required=True)
    ci.add_argument("--prompt", required=True, help="the text before the token to explain")
    ci.add_argument("--target", required=True, help="the next token, one token of the run's tokenizer (e.g. ' Bridge')")
    ci.add_argument("--sae", default="tc", help="the transcoder: NAME.pt, trained from blocks.0.mlp.hook_in to "
                                                "blocks.0.mlp.hook_out (default tc)")
    ci.add_argument("--node-threshold", type=float, default=0.8, help="share of influence the kept nodes carry (0.8)")
    ci.add_argument("--edge-threshold", type=float, default=0.98, help="share of influence the kept edges carry (0.98)")
    ci.add_argument("--out", default=None, help="output folder (default RUN/circuits)")
    ci.set_defaults(fn=cmd_circuit)

    fe = sub.add_parser("feature", help="print one feature's contexts, density and logit effects")
    fe.add_argument("--run", required=True)
    fe.add_argument("id", type=int, help="feature id")
    fe.set_defaults(fn=cmd_feature)

    st = sub.add_parser("steer", help="clamp a feature and compare steered with unsteered continuations")
    st.add_argument("--run", required=True)
    st.add_argument("--feature", type=int, default=None, help="feature id")
    st.add_argument("--concept", default=None, help="or: the concept whose feature to clamp (the steering stage's choice, else its best held-out detector)")
    st.add_argument("--value", default=None,
                    help="absolute activation (3.5) or a multiple of the feature's max activation (10x); default: with "
                         "--concept, the steering stage's chosen multiple (over the prompt only where its demo "
                         "clamps so), else 10x; at most 1000x in magnitude. Write negative values with = "
                         "(--value=-3x): argparse reads a bare -3x as an option")
    st.add_argument("--temperature", type=temperature, default=None,
                    help="sampling temperature (default: with --concept, the steering stage's, else 1.0)")
    st.add_argument("--prompt", required=True)
    st.add_argument("--n", type=positive_int, default=3, help="number of sample pairs (default 3)")
    st.add_argument("--max-new-tokens", type=positive_int, default=40)
    st.add_argument("--seed", type=seed_int, default=0)
    st.set_defaults(fn=cmd_steer)

    g = sub.add_parser("generate", help="sample continuations of a prompt from a trained run")
    g.add_argument("--run", required=True, help="run directory holding lm.pt and tokenizer.json")
    g.add_argument("--prompt", required=True)
    g.add_argument("--n", type=positive_int, default=3, help="number of samples (default 3)")
    g.add_argument("--max-new-tokens", type=positive_int, default=48)
    g.add_argument("--temperature", type=temperature, default=1.0, help="finite, >= 0; 0 = always the most likely token")
    g.add_argument("--top-k", type=positive_int, default=None, help="sample from the k most likely tokens only")
    g.add_argument("--seed", type=seed_int, default=0)
    g.set_defaults(fn=cmd_generate)

    c = sub.add_parser("corpus", help="print labelled toy-world samples or corpus statistics")
    c.add_argument("--corpus", default="toy", help="toy (default), pystdlib, or a file/directory of .txt/.md/.py")
    c.add_argument("--concept", default=None, help=f"only this concept: {', '.join(C.CONCEPTS)}")
    c.add_argument("--n", type=positive_int, default=3, help="number of samples (default 3)")
    c.add_argument("--seed", type=seed_int, default=0)
    c.add_argument("--split", default="train", choices=C.SPLITS)
    c.add_argument("--stats", action="store_true", help="print tokens per concept instead of samples")
    c.add_argument("--tokens", type=positive_int, default=200_000, help="tokens to count with --stats")
    c.add_argument("--tokenizer", default=None, help="tokenizer.json for --stats (default: train a quick one)")
    c.set_defaults(fn=cmd_corpus)

    t = sub.add_parser("tokenizer", help="train a BPE tokenizer and write DIR/tokenizer.json")
    t.add_argument("--out", required=True, help="directory to write tokenizer.json into")
    t.add_argument("--vocab-size", type=vocab_size, default=2048)
    t.add_argument("--corpus", default="toy", help="toy (default), pystdlib, or a file/directory")
    t.add_argument("--chars", type=positive_int, default=5_000_000, help="characters of training text")
    t.add_argument("--seed", type=seed_int, default=0)
    t.add_argument("--pretrained", default=None, help="use a cached tiktoken encoding instead (e.g. gpt2)")
    t.set_defaults(fn=cmd_tokenizer)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m sae -- train-sae ...` passes the separator on
        argv = argv[1:]
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 0

    def checked() -> int:  # a `--run` that is no folder: one message, before any file is read
        if getattr(args, "run", None) is not None:
            check_run_dir(args.run)
        return args.fn(args)

    return run_command(checked, parser.prog)
