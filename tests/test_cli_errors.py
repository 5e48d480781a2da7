"""Every bad command-line input ends in one line on stderr and exit code 2: no traceback, no
silent exit 0, and nothing written (no partial output left behind).

Most tests call `sae.run.cli.main` in-process (no interpreter start per call); a few run
`python -m sae` to check the same at the process level. The run they read is made once per
module, with untrained weights (see `run`); a test that breaks a file of it works on its own copy.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sae.autoencoder import SparseAutoencoder
from sae.run.cli import main
from sae.world.corpus import toy_text
from sae.gpt import GPT
from sae.interpret import FeatureStats, feature_stats
from sae.run.config import check_config, get_preset
from sae.run.files import corpus_tokens
from sae.steering.clamp import MAX_MULTIPLE, parse_value
from sae.tokenizer import Tokenizer
from sae.utils import atomic_write_json, check_output_dir, check_output_file

FEATURE = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run directory holding every file the commands read, made in seconds: the smoke preset's
    configuration and shapes with untrained weights (these tests check refusals, not results, and
    a real smoke run takes 40 s or, on a busy machine, minutes). Read it, never change it."""
    p = get_preset("smoke")
    out = tmp_path_factory.mktemp("run") / "run"
    out.mkdir()
    check_config(p, out)  # config.json, as `reproduce --preset smoke` writes it
    tok = Tokenizer.train(toy_text(100_000, seed=0), 300)
    tok.save(out / "tokenizer.json")
    torch.manual_seed(0)
    model = GPT(p.gpt_config(tok.vocab_size))
    model.save(out / "lm.pt")
    sae = SparseAutoencoder(p.sae_config(model.cfg.d_mlp))
    sae.save(out / "sae.pt", preset=p.name)
    tokens, labels = corpus_tokens(p, tok, "val", 2048 + model.cfg.n_ctx)
    feature_stats(model, sae, tokens, labels, n_tokens=2048, seed=0).save(out / "feature_stats.pt")  # after sae.pt
    atomic_write_json(out / "metrics.json", {"version": 2, "concepts": {"detectors": {}, "monosemanticity": {},
                                                                        "rows": {"golden_gate": {"feature": FEATURE}}}})
    atomic_write_json(out / "stages.json", {"tokenizer": {"vocab_size": tok.vocab_size}})
    for name in ("lm_history.json", "sae_history.json"):
        atomic_write_json(out / name, [{"step": 0}, {"step": 1}])
    return out


@pytest.fixture
def run_copy(run, tmp_path) -> Path:
    """A copy of the shared run that a test may break (mtimes kept: feature_stats.pt stays newer than sae.pt)."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, copy_function=shutil.copy2, ignore=shutil.ignore_patterns("figures", ".lock"))
    return copy


def _tree(path: Path) -> dict[str, float]:
    """Every file and folder under `path` with its modification time: equal before and after a
    refused command means nothing was written."""
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in sorted(path.rglob("*"))}


def _refused(capsys, *argv, names=()) -> str:
    """Run the CLI in-process; assert exit code 2, one line on stderr naming each of `names`, and
    nothing on stdout. Returns the line. (argparse's own errors end in SystemExit.)"""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, f"exit code {rc}, stderr: {err}"
    assert len(lines) == 1, f"expected one line, got: {err}"
    assert out == "", f"a refused command must print nothing on stdout, got: {out}"
    for name in names:
        assert name in lines[0], f"{name!r} not in: {lines[0]}"
    return lines[0]


def _cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sae", *map(str, argv)], capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------- 1, 2: steering values


@pytest.mark.parametrize("value, message", [("1e400", "finite"), ("inf", "finite"), ("-1e400", "finite"),
                                            ("nan", "finite"), ("1e30", "at most"), ("1e400x", "finite"),
                                            ("1001x", "at most")])
def test_steer_refuses_non_finite_and_huge_values(run, capsys, value, message):
    before = _tree(run)
    line = _refused(capsys, "steer", "--run", run, "--feature", FEATURE, "--prompt", "The", f"--value={value}",
                    names=[message, value])
    assert "10x" in line, "the message should say what to give instead"
    assert _tree(run) == before


def test_steer_value_bound_and_why_are_in_the_message():
    assert parse_value(f"{MAX_MULTIPLE:g}x", 2.0) == 2000.0 and parse_value("-2000", 2.0) == -2000.0
    with pytest.raises(ValueError, match=r"at most 2000 .*1000x feature 7's max activation 2\.00.*overflows") as e:
        parse_value("2001", 2.0, feature=7)
    assert "\n" not in str(e.value)
    for bad in [float("inf"), float("nan"), "-inf", "nan"]:
        with pytest.raises(ValueError, match="finite"):
            parse_value(bad, 2.0)


def test_a_negative_multiple_works_with_equals_and_the_bare_form_says_so(run, capsys):
    assert main(["steer", "--run", str(run), "--feature", str(FEATURE), "--prompt", "The", "--value=-3x",
                 "--n", "1", "--max-new-tokens", "2"]) == 0
    assert "clamped to -" in capsys.readouterr().out
    _refused(capsys, "steer", "--run", run, "--feature", FEATURE, "--prompt", "The", "--value", "-3x",
             names=["--value", "--value=-3x"])


def test_a_multiple_of_a_dead_feature_is_refused_and_an_absolute_value_works(run_copy, capsys):
    stats = FeatureStats.load(run_copy / "feature_stats.pt")
    stats.max_act[FEATURE] = 0.0  # as if it never fired on the held-out text
    stats.fire_count[FEATURE] = 0
    stats.save(run_copy / "feature_stats.pt")  # newer than sae.pt, so it is read back as is
    for value in ["10x", "0.5x"]:
        line = _refused(capsys, "steer", "--run", run_copy, "--feature", FEATURE, "--prompt", "The", "--value", value,
                        names=[f"feature {FEATURE}", "never fired", "absolute value", "another feature"])
        assert value in line
    assert main(["steer", "--run", str(run_copy), "--feature", str(FEATURE), "--prompt", "The", "--value", "5",
                 "--n", "1", "--max-new-tokens", "2"]) == 0
    assert "clamped to 5.00" in capsys.readouterr().out


# ----------------------------------------------------------------------------- 3: sampling arguments


@pytest.mark.parametrize("command", ["generate", "steer"])
@pytest.mark.parametrize("flag, value", [("--n", "0"), ("--n", "-2"), ("--max-new-tokens", "0"),
                                         ("--max-new-tokens", "-5"), ("--n", "two")])
def test_counts_must_be_positive_in_generate_and_steer_alike(tmp_path, capsys, command, flag, value):
    extra = ["--feature", "3"] if command == "steer" else []
    _refused(capsys, command, "--run", tmp_path, "--prompt", "The", *extra, f"{flag}={value}",
             names=[flag, ">= 1", value])


@pytest.mark.parametrize("flag, value, message", [("--top-k", "0", ">= 1"), ("--top-k", "-1", ">= 1"),
                                                  ("--temperature", "nan", "finite"),
                                                  ("--temperature", "inf", "finite"),
                                                  ("--temperature", "-1", ">= 0"), ("--seed", str(2**70), "2**62")])
def test_bad_sampling_arguments_are_refused_before_loading_anything(tmp_path, capsys, flag, value, message):
    _refused(capsys, "generate", "--run", tmp_path / "nowhere", "--prompt", "The", f"{flag}={value}",
             names=[flag, message])


def test_generate_itself_checks_top_k_and_temperature(run):
    from sae.run.files import load_run

    _, model = load_run(run)
    for kw, message in [({"top_k": 0}, "top_k"), ({"temperature": float("nan")}, "temperature"),
                        ({"temperature": float("inf")}, "temperature")]:
        with pytest.raises(ValueError, match=message):
            model.generate([0], 2, **kw)
    assert model.generate([0], 2, temperature=0).shape == (3,), "temperature 0 (greedy) stays allowed"


def test_bad_sampling_arguments_are_one_line_at_the_process_level(run):
    for args in [["generate", "--top-k", "0"], ["steer", "--feature", FEATURE, "--value=inf"]]:
        p = _cli(*args, "--run", run, "--prompt", "The")
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and p.stdout == "", p.stderr


# ----------------------------------------------------------------------------- 4: output paths


@pytest.mark.parametrize("argv", [
    ["reproduce", "--preset", "smoke", "--out", "{f}"], ["reproduce", "--preset", "smoke", "--out", "{f}/sub"],
    ["train-lm", "--preset", "smoke", "--out", "{f}/sub"],
    ["tokenizer", "--out", "{f}"], ["tokenizer", "--out", "{f}/sub"],
    ["dashboard", "--run", "{run}", "--out", "{f}"], ["dashboard", "--run", "{run}", "--out", "{f}/sub"]])
def test_an_output_path_that_is_or_lies_under_a_file_is_refused_before_the_work(run, tmp_path, capsys, argv):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    before, run_before = _tree(tmp_path), _tree(run)
    # one line and nothing on stdout: the tokenizer did not start training (it logs to stderr first)
    line = _refused(capsys, *[a.format(f=afile, run=run) for a in argv], names=[str(afile), "not a directory"])
    assert "give another" in line
    assert _tree(tmp_path) == before and _tree(run) == run_before and afile.read_text() == "not a directory"


def test_an_output_file_that_is_a_directory_is_refused(tmp_path, capsys):
    (tmp_path / "tokenizer.json").mkdir()
    _refused(capsys, "tokenizer", "--out", tmp_path, names=["tokenizer.json", "is a directory"])


def test_an_unwritable_output_directory_is_named(tmp_path, monkeypatch):
    # as root (the tests' usual user) permissions stop nothing, so make os.access say no
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    for check, path in [(check_output_dir, tmp_path / "a" / "b"), (check_output_file, tmp_path / "x.json")]:
        with pytest.raises(ValueError, match="no write permission on " + str(tmp_path)) as e:
            check(path)
        assert str(path) in str(e.value) and "change its permissions" in str(e.value)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes through chmod")
def test_an_unwritable_output_directory_is_refused_for_real(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _refused(capsys, "tokenizer", "--out", ro / "sub", names=[str(ro), "permission"])
        assert not (ro / "sub").exists()
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("err, fix", [(errno.EACCES, "change its permissions"), (errno.ENOSPC, "free some space"),
                                      (errno.ENOTDIR, "a file stands where a directory should be")])
def test_an_os_error_while_writing_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch, err, fix):
    """Permission denied, a full disk, ... found only when writing (the checks up front cannot see
    everything): one line naming the file being written, not its temporary file, and no traceback."""
    import sae.utils

    def fail(*_, **__):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(sae.utils.os, "fsync", fail)
    rc = main(["tokenizer", "--out", str(tmp_path), "--vocab-size", "300", "--chars", "2000"])
    stderr = capsys.readouterr().err
    # training logs its progress on stderr before the write fails; the error is the last line
    last = stderr.strip().splitlines()[-1]
    assert rc == 2 and "Traceback" not in stderr
    assert last.startswith("python -m sae: error: ")
    for name in [str(tmp_path / "tokenizer.json"), os.strerror(err), fix]:
        assert name in last, f"{name!r} not in: {last}"
    assert not list(tmp_path.iterdir()), "the temporary file must be removed"


@pytest.mark.parametrize("err, where", [(errno.ENOSPC, "rename"), (errno.EROFS, "create")],
                         ids=["disk-full", "read-only-folder"])
def test_a_failed_write_in_a_run_keeps_the_file_it_would_replace_and_every_other(run_copy, capsys, monkeypatch,
                                                                                   err, where):
    """`evaluate` rewrites metrics.json and its write fails (a full disk when the file is complete,
    or a folder that turned read-only before the temporary file exists): one line naming
    metrics.json, the old metrics.json as it was, every file the command did not write as it was,
    and no temporary file left."""
    import sae.utils

    def snapshot():
        return {str(p.relative_to(run_copy)): p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}

    before = snapshot()
    real_replace, real_mkstemp = sae.utils.os.replace, sae.utils.tempfile.mkstemp

    def replace(src, dst):
        if Path(dst).name == "metrics.json" and where == "rename":
            raise OSError(err, os.strerror(err))
        return real_replace(src, dst)

    def mkstemp(*args, **kwargs):
        if kwargs.get("prefix", "").startswith(".metrics.json.") and where == "create":
            raise OSError(err, os.strerror(err), str(run_copy))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(sae.utils.os, "replace", replace)
    monkeypatch.setattr(sae.utils.tempfile, "mkstemp", mkstemp)
    rc = main(["evaluate", "--run", str(run_copy)])
    stderr = capsys.readouterr().err
    last = stderr.strip().splitlines()[-1]
    assert rc == 2 and "Traceback" not in stderr, stderr[-2000:]
    for name in [str(run_copy / "metrics.json"), os.strerror(err)]:
        assert name in last, f"{name!r} not in: {last}"
    after = snapshot()
    written = {"feature_stats.pt"}  # the evaluation's first file, written before metrics.json failed
    assert {k: v for k, v in after.items() if k not in written} == {k: v for k, v in before.items() if k not in written}
    assert not [p for p in run_copy.rglob("*.tmp")], "the temporary file must be removed"


# ----------------------------------------------------------------------------- 5: corrupt or truncated files

# (file, command that reads it); every file a run reads, each through a command that needs it
READERS = [("lm.pt", ["generate", "--prompt", "The"]), ("tokenizer.json", ["generate", "--prompt", "The"]),
           ("sae.pt", ["feature", str(FEATURE)]), ("feature_stats.pt", ["feature", str(FEATURE)]),
           ("feature_stats.pt", ["steer", "--feature", str(FEATURE), "--prompt", "The"]),
           ("metrics.json", ["dashboard"]), ("metrics.json", ["steer", "--concept", "golden_gate", "--prompt", "The"]),
           ("config.json", ["evaluate"]), ("stages.json", ["evaluate"]), ("lm_history.json", ["evaluate"]),
           ("sae_history.json", ["evaluate"]), ("config.json", ["train-sae", "--name", "other"]),
           ("config.json", ["reproduce"]), ("stages.json", ["reproduce"]), ("metrics.json", ["reproduce"]),
           ("lm_history.json", ["reproduce"]), ("sae_history.json", ["reproduce"]), ("steering.json", ["reproduce"]),
           ("steer_eval.json", ["reproduce"]), ("tc_metrics.json", ["reproduce"]), ("circuits.json", ["reproduce"])]


def _argv(command: list[str], run: Path) -> list[str]:
    if command[0] == "reproduce":
        return ["reproduce", "--preset", "smoke", "--out", str(run)]
    return [command[0], "--run", str(run), *command[1:]]


@pytest.mark.parametrize("damage", ["truncated", "wrong type"])
@pytest.mark.parametrize("name, command", READERS, ids=[f"{n}-{c[0]}" for n, c in READERS])
def test_a_truncated_or_invalid_run_file_is_one_line_naming_it_and_the_fix(run_copy, capsys, name, command, damage):
    path = run_copy / name
    if name in ("steering.json", "steer_eval.json", "tc_metrics.json", "circuits.json") and not path.exists():
        # the shared run stops before them
        path.write_text(json.dumps({c: {"feature": 1, "rate_clamped": 0.5, "rate_baseline": 0.1}
                                    for c in ("golden_gate", "unsafe_code")}, indent=2))
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[:min(100, len(data) // 2)])
    elif name.endswith(".pt"):
        torch.save([1, 2, 3], path)  # a readable checkpoint file that does not hold a dict
    else:
        path.write_text("[]" if not name.endswith("_history.json") else "{}")
    before = _tree(run_copy)
    line = _refused(capsys, *_argv(command, run_copy), names=[name])
    assert "delete" in line, f"the message should say how to fix it: {line}"
    assert _tree(run_copy) == before, "a refused command must write nothing"


def test_feature_stats_of_another_shape_is_one_line_naming_it(run_copy, capsys):
    torch.save({"fire_count": torch.zeros(3)}, run_copy / "feature_stats.pt")  # a dict, but not FeatureStats
    line = _refused(capsys, "feature", "--run", str(run_copy), str(FEATURE), names=["feature_stats.pt"])
    assert "delete" in line and "evaluate" in line, line


# ----------------------------------------------------------------------------- 6: a hand-edited config.json


def _edit_config(run_dir: Path, **changes) -> None:
    path = run_dir / "config.json"
    d = json.loads(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key].update(value)
        else:
            d[key] = value
    path.write_text(json.dumps(d, indent=2))


@pytest.mark.parametrize("changes, names", [
    ({"seed": "x"}, ["seed must be int", "'x'"]), ({"gpt": 3}, ["gpt must be an object", "GPTConfig"]),
    ({"bogus": 1}, ["unknown key", "'bogus'"]), ({"gpt": {"n_layers": 2}}, ["gpt has unknown field", "'n_layers'"]),
    ({"gpt": {"d_model": -1}}, ["gpt:", "d_model"]), ({"name": 5}, ["name must be str"])])
@pytest.mark.parametrize("command", ["evaluate", "reproduce"])
def test_a_hand_edited_config_is_one_line_naming_the_key(run_copy, capsys, changes, names, command):
    _edit_config(run_copy, **changes)
    before = _tree(run_copy)
    line = _refused(capsys, *_argv([command], run_copy), names=["config.json", *names])
    assert "different configuration" not in line
    assert "fix it" in line or "delete the run directory" in line
    assert _tree(run_copy) == before


@pytest.mark.parametrize("changes, field", [({"description": "edited"}, "description"),
                                            ({"sae": {"d_in": 5}}, "sae.d_in"), ({"seed": 4}, "seed")])
def test_reproduce_into_a_run_of_another_configuration_names_the_field(run_copy, capsys, changes, field):
    """Also for fields `--set` cannot reach: the message used to say 'a different configuration ({})'."""
    _edit_config(run_copy, **changes)
    before = _tree(run_copy)
    line = _refused(capsys, *_argv(["reproduce"], run_copy), names=["different configuration", f"'{field}'"])
    assert "{}" not in line
    assert _tree(run_copy) == before, "the refusal comes before the run directory is locked or written"


# ----------------------------------------------------------------------------- 8: the seed study, matryoshka


@pytest.mark.parametrize("argv, names", [
    (["--seeds", "4-2"], ["--seeds", "distinct seeds", "0-4"]),
    (["--seeds", "a"], ["--seeds", "0-4"]),
    (["--seeds", "1,1"], ["--seeds", "distinct"]),
    (["--seeds", "-1"], ["--seeds", "0-4"]),
    (["--preset", "bogus"], ["bogus", "smoke, tiny, base"]),
    (["--set", "foo=1"], ["foo", "valid fields"]),
    (["--device", "bogus"], ["bogus", "'cpu'"]),
    (["--set", "corpus=pystdlib"], ["toy corpus"]),
], ids=["range-backwards", "not-a-seed", "repeated", "negative", "preset", "set-unknown", "device", "not-toy"])
def test_the_seed_study_refuses_bad_input_before_any_run(tmp_path, capsys, argv, names):
    _refused(capsys, "seeds", "--out", tmp_path / "seeds", *argv, names=names)
    assert not (tmp_path / "seeds" / "seed0").exists(), "nothing may be trained before the refusal"


@pytest.mark.parametrize("sizes, names", [("5,3", ["increasing", "d_sae=256", "(5, 3)"]),
                                          ("0,256", ["increasing", "(0, 256)"]),
                                          ("64,100000", ["ending at d_sae=256"]),
                                          ("64,64,256", ["increasing"]),
                                          ("a", ["sae.matryoshka_sizes", "int", "'a'"])],
                         ids=["decreasing", "zero", "past-d_sae", "repeated", "not-a-number"])
def test_matryoshka_with_bad_prefix_sizes_is_refused_before_training(run_copy, capsys, sizes, names):
    before = _tree(run_copy)
    _refused(capsys, "train-sae", "--run", run_copy, "--name", "m", "--set", "sae.arch=matryoshka",
             "--set", f"sae.matryoshka_sizes={sizes}", names=names)
    assert _tree(run_copy) == before


# ----------------------------------------------------------------------------- 9: the benchmarks' arguments
# Every script of benchmarks/ parses with `sae.run.command.Parser` and runs under `sae.run.command.run_command`, as
# `python -m benchmarks.NAME` does: one line, exit code 2, before the work.

BENCH_BAD = [
    ("bench_buffer", ["{missing}"], ["has no lm.pt"]),
    ("bench_chapters", ["--chapters", "99"], ["no chapter 99", "01"]),
    ("bench_corpus", ["--bogus"], ["unrecognized arguments: --bogus"]),
    ("bench_ddp", ["--device", "bogus"], ["unknown device 'bogus'"]),
    ("bench_evaluate", ["--run", "{missing}"], ["{missing}", "not a run directory"]),
    ("bench_evaluate", ["--tokens", "0"], ["--tokens", ">= 1"]),
    ("bench_evaluate", ["--device", "bogus"], ["unknown device 'bogus'"]),
    ("bench_lm", ["--steps", "0"], ["--steps", ">= 1"]),
    ("bench_lm", ["--batch-sizes", "8", "0"], ["--batch-sizes", ">= 1"]),
    ("bench_lm", ["--threads", "-2"], ["--threads", ">= 1"]),
    ("bench_lm", ["--device", "bogus"], ["unknown device 'bogus'"]),
    ("bench_peers", ["--trainers", "bogus"], ["unknown trainers", "sae_topk"]),
    ("bench_peers", ["--steps", "0"], ["--steps", ">= 1"]),
    ("bench_peers", ["--heldout", "x"], ["--heldout", "'x'"]),
    ("bench_peers", ["--l1-dl=-1"], ["--l1-dl", "> 0"]),
    ("bench_recovery", ["--arch", "bogus"], ["--arch", "bogus", "topk"]),
    ("bench_recovery", ["--steps", "0"], ["--steps", ">= 1"]),
    ("bench_recovery", ["--task", "flat,bogus"], ["--task", "bogus", "hierarchy"]),
    ("bench_recovery", ["--seeds", "x"], ["--seeds", "0-4"]),
    ("bench_recovery", ["--seed", "x"], ["--seed", "whole number"]),
    ("bench_recovery", ["--set", "bogus=1"], ["--set", "sae.FIELD=VALUE"]),
    ("bench_recovery", ["--set", "sae.arch=matryoshka", "--set", "sae.matryoshka_sizes=9,3", "--arch", "matryoshka"],
     ["increasing prefix sizes"]),
    ("bench_sae", ["--k", "0"], ["--k", ">= 1"]),
    ("bench_sae", ["--device", "bogus"], ["unknown device 'bogus'"]),
    ("gpu_check", ["--device", "bogus"], ["unknown device 'bogus'"]),
    ("gpu_check", ["--budget=-1"], ["--budget", "> 0"]),
    ("gpu_check", ["--budget", "nan"], ["--budget", "finite"]),
    ("sweep_sae", [], ["give a run directory"]),
    ("sweep_sae", ["{missing}", "sae.k=4"], ["{missing}", "not a run directory"]),
    ("sweep_sae", ["{run}", "bogus=1"], ["bogus", "valid fields"]),
]


@pytest.mark.parametrize("name, argv, names", BENCH_BAD, ids=[f"{n}-{'_'.join(a)[:30]}" for n, a, _ in BENCH_BAD])
def test_a_benchmark_refuses_bad_arguments_in_one_line(run, tmp_path, capsys, monkeypatch, name, argv, names):
    import importlib

    from sae.run.command import run_command

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # `benchmarks` is not installed
    monkeypatch.chdir(tmp_path)  # a default path such as runs/... lands here
    module = importlib.import_module(f"benchmarks.{name}")
    fill = {"missing": str(tmp_path / "missing"), "run": str(run)}
    argv = [a.format(**fill) for a in argv]
    threads = torch.get_num_threads()
    try:
        rc = run_command(lambda: module.main(argv), module.PROG)
    except SystemExit as e:  # argparse's own refusals
        rc = e.code
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, f"exit code {rc}, stderr: {err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith(f"{module.PROG}: error: "), err
    for n in names:
        assert n.format(**fill) in lines[0], f"{n!r} not in: {lines[0]}"
    assert not list(tmp_path.iterdir()), f"a refused benchmark wrote {list(tmp_path.iterdir())}"


def test_a_benchmark_refuses_bad_arguments_at_the_process_level(tmp_path):
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-m", "benchmarks.bench_recovery", "--steps", "0"], capture_output=True,
                       text=True, timeout=300, cwd=root)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "python -m benchmarks.bench_recovery: error: argument --steps: must be >= 1, got 0 "
        "(see python -m benchmarks.bench_recovery --help)"], p.stderr


# ----------------------------------------------------------------------------- 10: --run that is not a run directory

RUN_COMMANDS = [["evaluate"], ["dashboard"], ["feature", "3"], ["steer", "--feature", "3", "--prompt", "The"],
                ["generate", "--prompt", "The"], ["train-sae", "--name", "x"],
                ["circuit", "--prompt", "The", "--target", " Gate"]]


@pytest.mark.parametrize("kind", ["missing", "file"])
@pytest.mark.parametrize("command", RUN_COMMANDS, ids=[c[0] for c in RUN_COMMANDS])
def test_a_run_that_does_not_exist_or_is_a_file_is_named_as_such(tmp_path, capsys, command, kind):
    path = tmp_path / ("nope" if kind == "missing" else "README.md")
    if kind == "file":
        path.write_text("# not a run\n")
    expect = ["does not exist"] if kind == "missing" else ["is a file, not a run directory"]
    _refused(capsys, command[0], "--run", path, *command[1:], names=[str(path), *expect])
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if kind == "missing" else ["README.md"])
