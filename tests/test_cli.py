"""The command line: help, samples, stats, tokenizer, clear one-line errors with exit code 2."""

import json
import re
import subprocess
import sys

from sae.run.cli import main
from sae.run.pipeline import STAGES


def _run(*args):
    return subprocess.run([sys.executable, "-m", "sae", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands():
    p = _run("--help")
    assert p.returncode == 0
    for cmd in ["reproduce", "corpus", "tokenizer"]:
        assert cmd in p.stdout


def test_corpus_samples_show_labels_in_plain_text_when_piped():
    p = _run("corpus", "--concept", "golden_gate", "--n", "3")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("--- sample") == 3
    assert "[golden_gate]" in p.stdout and "\x1b[" not in p.stdout, "piped output must be plain text"


def test_unknown_concept_is_one_line_exit_2():
    p = _run("corpus", "--concept", "golden_bridge")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "valid concepts" in lines[0] and "golden_gate" in lines[0]


def test_unknown_corpus_and_preset_are_one_line_exit_2(tmp_path):
    p = _run("corpus", "--corpus", "nonexistent_corpus")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert main(["reproduce", "--preset", "huge", "--out", str(tmp_path)]) == 2


def test_corpus_stats(capsys, tmp_path):
    assert main(["tokenizer", "--out", str(tmp_path), "--vocab-size", "512", "--chars", "200000"]) == 0
    assert (tmp_path / "tokenizer.json").exists()
    assert main(["corpus", "--stats", "--tokens", "20000", "--tokenizer", str(tmp_path / "tokenizer.json")]) == 0
    out = capsys.readouterr().out
    for name in ["golden_gate", "unsafe_code", "animals"]:
        assert name in out


def test_reproduce_smoke_runs_says_how_long_and_resumes(smoke_run, capsys):
    """The whole smoke reproduction ran under `DeviceCheck` (the `smoke_run` fixture); a second
    `reproduce` skips every stage, and one with another configuration is refused."""
    out, printed = smoke_run
    assert (out / "tokenizer.json").exists() and (out / "config.json").exists() and (out / "report.md").exists()
    assert re.search(r"^estimate: about \d+:\d\d:\d\d on this machine \(cpu, \d+ threads, fp32 matmul \d+ GFLOP/s\)",
                     printed, re.M), "reproduce must say how long it will take before it starts"
    assert len(re.findall(r"\| about \d+:\d\d:\d\d left$", printed, re.M)) == len(STAGES) - 2, \
        "each stage but the last two must update the time left"
    before = (out / "stages.json").read_text()
    assert main(["reproduce", "--preset", "smoke", "--out", str(out)]) == 0
    again = capsys.readouterr().out
    assert again.count("skipped") == len(STAGES) and "estimate" not in again, "a finished run is skipped, with no estimate"
    assert main(["reproduce", "--preset", "smoke", "--out", str(out), "--seed", "5"]) == 2, \
        "a run directory with another configuration must be refused"
    assert json.loads((out / "config.json").read_text())["seed"] == 0 and (out / "stages.json").read_text() == before


def test_set_reaches_any_field_and_an_unknown_one_is_one_line_exit_2(tmp_path):
    p = _run("reproduce", "--preset", "smoke", "--out", str(tmp_path / "r"), "--set", "train_sae.lrr=1e-3")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown field 'train_sae.lrr'" in lines[0] and "train_sae.lr" in lines[0]
    assert not (tmp_path / "r").exists(), "a bad setting must be refused before anything is written"


def test_steer_a_concept_uses_the_steering_stages_choice_and_judges_each_sample(smoke_run, capsys):
    """`steer --concept golden_gate` without --value reproduces the demo's setting, read from
    steering.json (feature, multiple, temperature), and prints the demos' verdict for every
    continuation; --value and --temperature override it."""
    out = smoke_run[0]
    s = json.loads((out / "steering.json").read_text())["golden_gate"]["summary"]
    argv = ["steer", "--run", str(out), "--concept", "golden_gate", "--prompt", "The goalkeeper", "--n", "2",
            "--max-new-tokens", "8"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    first = text.splitlines()[0]
    assert first.startswith(f"feature {s['feature']} ") and f"({s['multiple']:g}x)" in first, first
    assert f"temperature {s['temperature']:g} (the steering stage's choice)" in first, first
    verdicts = re.findall(r"^ +(on|off) topic \(.+\), CE \d+\.\d\d nats/token, (fluent|not fluent)$", text, re.M)
    assert len(verdicts) == 4, text
    assert main(argv + ["--value", "2x", "--temperature", "0.5"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "(2x)" in first and "temperature 0.5" in first and "choice" not in first, first
