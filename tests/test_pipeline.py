"""The end-to-end pipeline: presets, resuming, and the quality of the default (`tiny`) run."""

import json

import pytest
import torch

from sae.gpt import GPT
from sae.run.pipeline import reproduce
from sae.run.config import get_preset, with_overrides
from sae.train_lm import on_concept_rate
from sae.tokenizer import Tokenizer


def test_smoke_pipeline_resumes_only_missing_stages_and_reruns_a_crashed_one(tmp_path, monkeypatch):
    import sae.run.pipeline

    p = with_overrides(get_preset("smoke"), ["train_lm.n_steps=4", "train_lm.warmup=1", "judge_samples=1"])
    out = tmp_path / "run"

    def crash(*_, **__):
        raise RuntimeError("crashed after lm.pt was written")

    # the LM stage writes lm.pt, then checks the model: a crash there must not count as done
    monkeypatch.setattr(sae.run.pipeline, "unsafe_context_sensitivity", crash)
    with pytest.raises(RuntimeError, match="crashed"):
        reproduce(p, out, until="lm", log=lambda *_: None)
    assert (out / "lm.pt").exists() and "lm" not in json.loads((out / "stages.json").read_text())
    monkeypatch.undo()
    lines = []
    reproduce(p, out, until="lm", log=lines.append)
    assert any("lm" in l and "running" in l for l in lines), "a stage that crashed must run again"
    assert "unsafe_context_sensitivity" in json.loads((out / "stages.json").read_text())["lm"]

    stamp = {f: (out / f).stat().st_mtime_ns for f in ["tokenizer.json", "lm.pt"]}
    (out / "lm.pt").unlink()
    lines = []
    reproduce(p, out, until="lm", log=lines.append)
    assert (out / "tokenizer.json").stat().st_mtime_ns == stamp["tokenizer.json"], "tokenizer must be skipped"
    assert (out / "lm.pt").exists(), "the deleted stage must be recomputed"
    assert any("tokenizer" in l and "skipped" in l for l in lines)
    summary = json.loads((out / "stages.json").read_text())
    assert summary["lm"]["steps"] == p.train_lm.n_steps


@pytest.mark.parametrize("name", ["smoke", "tiny", "base"])
def test_every_preset_builds_a_model_and_sae_that_fit_together(name):
    """The GPU preset `base` is never trained in CI; at least its pieces must fit: the SAE's width
    is the site's, and one training step of each runs (on a short batch, on the CPU)."""
    import torch

    from sae.autoencoder import SparseAutoencoder

    p = get_preset(name)
    torch.manual_seed(0)
    model = GPT(p.gpt_config(p.gpt.vocab_size))
    tokens = torch.randint(0, p.gpt.vocab_size, (2, p.gpt.n_ctx))
    logits, cache = model.run_with_cache(tokens, [p.sae.site])
    assert logits.shape == (2, p.gpt.n_ctx, p.gpt.vocab_size)
    torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()).backward()
    act = cache[p.sae.site].detach().reshape(-1, cache[p.sae.site].shape[-1])
    sae = SparseAutoencoder(p.sae_config(act.shape[1]))
    cfg = p.train_sae_config()
    out = sae(act, l1_coeff=cfg.l1_coeff)
    out.loss.backward()
    assert torch.isfinite(out.loss) and sae.W_dec.grad is not None
    assert all(0 < s < cfg.n_steps for s in cfg.resample_steps) and 0 < cfg.dead_window < cfg.n_steps
    assert p.sae_batch_size <= p.buffer_tokens // 2, "the activation buffer serves at most half its rows per batch"


def test_every_field_can_be_set_by_name_and_round_trips_through_config_json(tmp_path):
    from sae.run.config import preset_fields, preset_of_run

    p = with_overrides(get_preset("smoke"), ["train_sae.l1_coeff=2", "sae.arch=topk", "gpt.activation=relu",
                                             "train_sae.resample_steps=10,20", "train_sae.grad_clip=1",
                                             "train_lm.weight_decay=0", "seed=3"])
    assert p.train_sae.l1_coeff == 2.0 and p.sae.arch == "topk" and p.gpt.activation == "relu"
    assert p.train_sae.resample_steps == (10, 20) and p.train_sae_config().seed == 3
    fields = preset_fields(p)
    for name in ["sae.k_aux", "sae.aux_coeff", "train_sae.grad_clip",
                 "train_sae.l1_warmup_frac", "train_sae.resample_inputs", "train_lm.weight_decay"]:
        assert name in fields, f"{name} should be reachable from a preset and --set"
    run = tmp_path / "run"
    run.mkdir()
    from sae.run.config import check_config

    check_config(p, run)
    assert preset_of_run(run) == p, "config.json must read back as the same preset"
    with pytest.raises(ValueError, match="different configuration"):
        check_config(with_overrides(p, ["train_sae.lr=1e-4"]), run)


@pytest.mark.parametrize("setting, message", [
    ("train_sae.lrr=1", "valid fields: .*train_sae.lr"), ("sae.d_in=3", "cannot be set"),
    ("train_sae.n_steps=1.5", "must be int"), ("sae.arch=gated", "arch must be one of"), ("seed", "field=value")])
def test_bad_settings_are_clear_errors(setting, message):
    with pytest.raises(ValueError, match=message):
        with_overrides(get_preset("tiny"), [setting])


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"), ("[]", "not a configuration"), ("{}", "not a configuration"),
    ('{"name": "x", "description": "", "colour": 1}', "not a configuration"),
    ('{"name": "x", "description": "", "gpt": {"n_layers": 2}}', "fields of GPTConfig"),
    ('{"name": "x", "description": "", "seed": "zero"}', "seed must be int")])
def test_a_hand_edited_config_json_is_a_clear_error_naming_the_file(tmp_path, text, message):
    from sae.run.config import preset_of_run

    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        preset_of_run(tmp_path)
    assert "config.json" in str(e.value)


def test_unknown_stage_and_preset_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="valid presets"):
        get_preset("huge")
    with pytest.raises(ValueError, match="unknown stage"):
        reproduce(get_preset("smoke"), tmp_path, until="lmm")


@pytest.mark.slow
def test_tiny_lm_stays_on_topic(tiny_run):
    """Issue #3's quality bar: >= 80% of sampled continuations stay on the prompt's concept."""
    tok = Tokenizer.load(tiny_run / "tokenizer.json")
    model = GPT.load(tiny_run / "lm.pt")
    rates = on_concept_rate(model, tok, n_per_concept=10, seed=0)
    assert rates["overall"] >= 0.80, f"on-concept rate {rates['overall']:.2f} < 0.80: {rates}"
    losses = json.loads((tiny_run / "stages.json").read_text())["lm"]["val_loss_by_concept"]
    assert losses["golden_gate"] < 1.0, "the model should predict templated English well"


@pytest.mark.slow
def test_tiny_lm_tracks_a_files_security_posture(tiny_run):
    """The post-LM check, as the LM stage records it: the insecure switch value is >= 3x
    as likely in an insecure file as in the same file made safe."""
    sens = json.loads((tiny_run / "stages.json").read_text())["lm"]["unsafe_context_sensitivity"]
    assert sens["ratio"] >= 3, sens


def test_smoke_sae_reconstructs(smoke_run):
    """End to end on the smoke preset: an SAE trains on the model's neurons and explains >= half the variance."""
    out, _ = smoke_run
    m = json.loads((out / "metrics.json").read_text())
    assert m["sae"]["fvu"] < 0.5, f"smoke SAE FVU {m['sae']['fvu']:.3f}: is the input scale applied?"
    for key in ["version", "sae", "concepts", "ground_truth"]:
        assert key in m
    for key in ["l0", "fvu", "dead_fraction", "ultralow_fraction", "ce_recovered_zero", "ce_recovered_mean", "ce_added_nats"]:
        assert key in m["sae"], f"metrics.json lacks sae.{key}"
    for c in m["concepts"]["rows"].values():
        assert {"auroc", "feature", "neuron_auroc", "mass_share"} <= set(c)
    for c in m["ground_truth"]["rows"].values():
        a = c["absorption"]
        assert a["tokens"] > 0 and 0 <= a["absorbed"] <= a["silent"] <= 1
        assert set(c["sparse_probing"]) == {"features", "neurons"} and set(c["sparse_probing"]["features"]) == {"1", "2", "5"}
    g = m["ground_truth"]
    assert 0 <= g["absorbed"] <= g["silent"] <= 1 and 0.5 < g["sparse_probing"]["neurons"]["5"] <= 1
    c = m["concepts"]
    assert {"features", "neurons", "of"} <= set(c["detectors"]) and {"features", "neurons"} <= set(c["monosemanticity"])
    for fig in ["training_curves", "log_density", "concept_auroc", "concept_detectors"]:
        path = out / "figures" / f"{fig}.png"
        assert path.exists() and path.stat().st_size > 5000, f"figure {path.name} missing or empty"


@pytest.mark.slow
def test_tiny_sae_is_sparse_and_faithful(tiny_run):
    """Issue #5's fidelity bar on the default run: L0 <= 20, CE loss recovered >= 0.85, <= 2% dead."""
    s = json.loads((tiny_run / "metrics.json").read_text())["sae"]
    assert s["l0"] <= 20, f"L0 {s['l0']:.1f} > 20: raise l1_coeff"
    assert s["ce_recovered_zero"] >= 0.85, f"CE loss recovered {s['ce_recovered_zero']:.3f} < 0.85"
    assert s["dead_fraction"] <= 0.02, f"{s['dead_fraction']:.1%} dead features on 200k held-out tokens"


@pytest.mark.slow
def test_tiny_features_are_purer_than_neurons_and_topics_are_linear(tiny_run):
    """What the concept analysis does establish on the default run: the typical concept's
    best detector is mostly about that concept (median activation-mass share 0.76 when written;
    a feature spread evenly over the 14 concepts would have 0.07), and every concept is a
    direction in the activations (a held-out linear probe has AUROC >= 0.9; `unsafe_code` >= 0.85),
    even though no single sparse feature covers a whole concept (see docs/results.md)."""
    concepts = json.loads((tiny_run / "metrics.json").read_text())["concepts"]["rows"]
    shares = sorted(c["mass_share"] for c in concepts.values())
    assert shares[len(shares) // 2] >= 0.6, f"median best-feature mass share {shares[len(shares) // 2]:.2f} < 0.6"
    # `unsafe_code` labels single lines inside code files, whose tokens differ from the safe files'
    # (3x as common) only by the comment above and the value: 0.87 on the default run
    bar = {"unsafe_code": 0.85}
    weak = {k: round(c["probe_auroc"], 3) for k, c in concepts.items() if c["probe_auroc"] < bar.get(k, 0.9)}
    assert not weak, f"concepts the linear probe cannot find: {weak}"


@pytest.mark.slow
def test_tiny_features_detect_concepts_where_neurons_do_not(tiny_run):
    """Towards Monosemanticity's claim as the paper measures it: a concept's detector
    is a unit with >= 80% of its activation mass on the concept that lights up in >= 90% of the
    concept's held-out segments. Most concepts have a detector feature; few have a detector neuron."""
    m = json.loads((tiny_run / "metrics.json").read_text())["concepts"]
    d = m["detectors"]
    table = {k: (c["detector"] or {}).get("feature") for k, c in m["rows"].items()}
    assert d["features"] >= 12, f"only {d['features']} of 14 concepts have a detector feature: {table}"
    assert d["features"] - d["neurons"] >= 8, f"features {d['features']} vs neurons {d['neurons']}: expected a gap >= 8"
    assert d["features"] == sum(c["detector"] is not None for c in m["rows"].values())
    mono = m["monosemanticity"]
    assert mono["features"]["mean_top_concept_share"] > mono["neurons"]["mean_top_concept_share"]


def test_smoke_reproduce_writes_a_complete_report(smoke_run):
    """The whole pipeline on the smoke preset: every stage runs, the report has every section,
    and every link in it (figures, dashboard pages) points at a file of the run."""
    import re

    out, printed = smoke_run
    assert any(l.startswith("summary:") for l in printed.splitlines()), "reproduce should end with a summary line"
    md = (out / "report.md").read_text()
    for section in ["## Summary", "## Configuration", "## Wall time per stage", "## Language model", "## Sparse autoencoder",
                    "## Concept detectors", "## Absorption diagnostic", "## Ground truth", "## Steering: Golden Gate",
                    "## Steering: unsafe code", "## Figures", "## Dashboard"]:
        assert section in md, f"report.md lacks {section!r}"
    assert md.index("## Summary") < md.index("## Sparse autoencoder") < md.index("## Concept detectors") \
        < md.index("## Configuration"), "the report leads with the summary and ends with the configuration"
    for target in re.findall(r"\]\(([^)]+)\)", md):
        assert (out / target).exists(), f"report.md links to {target}, which does not exist"
    html_text = (out / "report.html").read_text()
    assert "data:image/png;base64," in html_text and "<table>" in html_text
    steering = json.loads((out / "steering.json").read_text())
    assert {"golden_gate", "unsafe_code"} <= set(steering)
    assert all(r["prompt"] for r in steering["golden_gate"]["sweep"]), "each steering example keeps its prompt"


def test_evaluate_again_on_a_finished_run_leaves_the_steering_results_seeds_and_steer_working(smoke_run, tmp_path,
                                                                                                capsys):
    """Each stage writes only its own files: `evaluate` rewrites metrics.json, and the steering
    stage's results (steering.json) stay what `seeds` and `steer --concept` read."""
    import shutil

    from sae.run.cli import main
    from sae.run.seeds import seed_row

    run = tmp_path / "smoke"
    shutil.copytree(smoke_run[0], run, ignore=shutil.ignore_patterns("dashboard"))
    steering = (run / "steering.json").read_bytes()
    assert main(["evaluate", "--run", str(run)]) == 0
    assert (run / "steering.json").read_bytes() == steering
    feature = json.loads(steering)["golden_gate"]["summary"]["feature"]
    assert seed_row(run, 0)[0]["gg_feature"] == feature
    capsys.readouterr()
    assert main(["steer", "--run", str(run), "--concept", "golden_gate", "--prompt", "The", "--n", "1",
                 "--max-new-tokens", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"feature {feature} "), "steer must clamp the steering stage's choice"


def test_feature_statistics_are_matched_to_their_sae_by_its_weights_not_by_file_times(smoke_run, tmp_path,
                                                                                     monkeypatch):
    """A run copied without keeping timestamps (feature_stats.pt now older than sae.pt) reads its
    statistics back; statistics of other weights (the SAE retrained in place) are measured again."""
    import os
    import shutil

    import sae.run.files
    from sae.run.files import load_sae, run_feature_stats, sae_path, stats_path

    run = tmp_path / "smoke"
    shutil.copytree(smoke_run[0], run, ignore=shutil.ignore_patterns("dashboard"))
    os.utime(stats_path(run), (1, 1))  # as old as can be
    monkeypatch.setattr(sae.run.files, "feature_stats", lambda *a, **k: pytest.fail("the statistics were measured again"))
    assert run_feature_stats(run).fire_count.sum() > 0

    retrained = load_sae(run)
    with torch.no_grad():
        retrained.W_enc[:, 0] *= 2  # another SAE under the same name
    retrained.save(sae_path(run))
    os.utime(sae_path(run), (0, 0))  # and older than the statistics: the timestamps say nothing
    class Measured(Exception):
        pass

    def measure(*_, **__):
        raise Measured

    monkeypatch.setattr(sae.run.files, "feature_stats", measure)
    with pytest.raises(Measured):  # statistics of other weights are measured again
        run_feature_stats(run)


def test_a_second_reproduce_into_a_locked_run_directory_is_refused(tmp_path):
    from sae.run.pipeline import run_lock

    with run_lock(tmp_path):
        with pytest.raises(ValueError, match="in use by another run"):
            reproduce(get_preset("smoke"), tmp_path, until="tokenizer", log=lambda *_: None)
    reproduce(get_preset("smoke"), tmp_path, until="tokenizer", log=lambda *_: None)  # released: runs
    assert (tmp_path / "tokenizer.json").exists()


def test_a_degenerate_sae_is_called_out():
    from sae.evaluation.reconstruction import degenerate

    sound = {"dead_fraction": 0.0, "l0": 17.4, "fvu": 0.23, "ce_recovered_zero": 0.97, "ce_recovered_mean": 0.98,
             "ce_clean": 1.2, "ce_zero_ablation": 4.6}
    assert degenerate(sound) == []
    dead = dict(sound, dead_fraction=1.0, l0=0.0, fvu=1.0, ce_recovered_zero=3.0, ce_zero_ablation=1.21)
    warnings = degenerate(dead)
    assert any("every feature is dead" in w for w in warnings)
    assert any("ce_recovered_zero 3.00 is outside" in w for w in warnings)


def test_a_new_analysis_is_one_module_and_one_registry_line(smoke_run, tmp_path, monkeypatch):
    """Adding a metric: a module (here the share of features that never fire on each concept) and a
    line in `sae.run.analyses.ANALYSES`; its result lands in metrics.json, its section in the report
    and its headline in the seed study's table, with no other file changed."""
    import shutil
    import types
    from dataclasses import dataclass

    from sae.markdown import Headline
    from sae.run import analyses
    from sae.run.report import report_markdown
    from sae.run.seeds import seed_row, spread, table_markdown

    @dataclass
    class Result:
        dead_by_concept: dict

    def run(p):
        h = p.evaluation.features  # counts[c, j, 1]: tokens of concept c on which feature j is exactly 0
        silent = (h.counts[:-1, :, 1] == h.counts[:-1].sum(-1)).double().mean(1)
        return Result({name: float(v) for name, v in zip(p.names, silent)})

    dead = types.SimpleNamespace(NAME="dead_by_concept", Result=Result, run=run,
                                 section=lambda r, page: ["## Dead features per concept", "",
                                                          f"golden_gate: {r.dead_by_concept['golden_gate']:.3f}", ""],
                                 headline=lambda r: [Headline("dead_gg", "features silent on golden_gate",
                                                              r.dead_by_concept["golden_gate"], ".3f")])
    monkeypatch.setattr(analyses, "ANALYSES", analyses.ANALYSES + [analyses.Analysis(dead, "evaluate")])
    run_dir = tmp_path / "smoke"
    shutil.copytree(smoke_run[0], run_dir, ignore=shutil.ignore_patterns("dashboard"))
    from sae.run.cli import main
    assert main(["evaluate", "--run", str(run_dir)]) == 0
    share = json.loads((run_dir / "metrics.json").read_text())["dead_by_concept"]["dead_by_concept"]["golden_gate"]
    assert 0 < share < 1
    assert f"golden_gate: {share:.3f}" in report_markdown(run_dir)
    row, columns = seed_row(run_dir, 0)
    assert row["dead_gg"] == share and f"| {share:.3f} |" in table_markdown([row], spread([row], columns), columns)


def test_files_of_another_version_are_refused_in_one_line(smoke_run, tmp_path, capsys):
    """A run written by the previous layout (no "version") is refused before any work, with the fix."""
    import shutil

    from sae.run.cli import main
    from sae.run.files import Run

    run_dir = tmp_path / "smoke"
    shutil.copytree(smoke_run[0], run_dir, ignore=shutil.ignore_patterns("dashboard"))
    m = json.loads((run_dir / "metrics.json").read_text())
    del m["version"]
    (run_dir / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="written by another version of sae"):
        Run(run_dir).result("sae")
    capsys.readouterr()
    assert main(["reproduce", "--preset", "smoke", "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "metrics.json was written by another version of sae" in err and "evaluate --run" in err and err.count("\n") == 1
