"""The "vary the experiment" checks of chapters 2-4 pass the right answer and reject plausible
wrong ones with a message that names the mistake. Cheap inputs only: a toy tokenizer, a random
tiny GPT, and run directories that hold just the two files the check reads."""

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from sae.world import corpus as C
from sae.buffer import ActivationBuffer
from sae.gpt import GPT, GPTConfig
from sae.run.config import get_preset, with_overrides

ROOT = Path(__file__).resolve().parents[1]
TINY = GPTConfig(d_model=32, n_head=2, d_mlp=64, n_ctx=16, vocab_size=64)  # random weights suffice for these checks
sys.path.insert(0, str(ROOT / "tutorials"))

import exercises.ch02  # noqa: E402
import exercises.ch03  # noqa: E402
import exercises.ch04  # noqa: E402


# ----------------------------------------------------------------------------- chapter 2
def astronomy() -> dict:
    """A small concept that passes the check: 25 templates (5 verbs x 5 objects), each naming a keyword."""
    verbs = ["observed", "photographed", "mapped", "tracked", "sketched"]
    objects = ["the comet", "a distant galaxy", "the nebula", "the ringed planet", "the asteroid"]
    return dict(
        slots=dict(who=["the astronomer", "Galileo", "Carl Sagan", "the stargazers", "an amateur astronomer",
                        "Johannes Kepler", "the observatory staff", "a young astronomer"],
                   scope=["a telescope", "the big telescope", "a backyard telescope", "the radio telescope",
                          "the space telescope", "a small telescope"],
                   when=["tonight", "before dawn", "after midnight", "in August", "at dusk", "every clear night",
                         "on a moonless night", "last winter"]),
        templates=[f"{{Who}} {verb} {obj} through {{scope}} {{when}}." for verb in verbs for obj in objects],
        keywords=["astronom*", "telescope*", "galax*", "nebula*", "comet*", "planet*", "asteroid*",
                  "observatory", "stargazer*"],
    )


def check_concept(spec, tok, capsys) -> tuple[bool, str]:
    concepts = list(C.CONCEPTS)
    ok = exercises.ch02.check_concept(spec, tok)
    assert C.CONCEPTS == concepts and "astronomy" not in C.CONCEPT_ID, "the check must restore the toy world"
    return ok, capsys.readouterr().out


def test_check_concept_passes_a_good_concept(toy_tokenizer, capsys):
    ok, out = check_concept(astronomy(), toy_tokenizer, capsys)
    assert ok is True and "✗" not in out, out


def test_check_concept_reports_an_open_exercise(toy_tokenizer, capsys):
    assert exercises.ch02.check_concept(None, toy_tokenizer) is None
    assert "not done yet" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, change, message", [
    ("a list of templates, not a concept dict", lambda s: s["templates"], "a concept is a dict"),
    ("no keywords for the judge", lambda s: {**s, "keywords": []}, "give the judge `keywords`"),
    ("fewer than 25 templates", lambda s: {**s, "templates": s["templates"][:10]}, "needs >= 25"),
    ("a slot the concept does not define", lambda s: {**s, "templates": s["templates"][:-1] + ["{Moon} rose."]},
     "templates do not compile"),
    ("templates without slots: few distinct sentences",
     lambda s: {**s, "templates": [f"The astronomer saw galaxy number {i}." for i in range(30)]},
     "distinct sentences"),
    ("a keyword every concept uses", lambda s: {**s, "keywords": s["keywords"] + ["the", "a", "of"]},
     "steal other concepts"),
])
def test_check_concept_rejects_and_names_the_mistake(toy_tokenizer, capsys, mistake, change, message):
    ok, out = check_concept(change(astronomy()), toy_tokenizer, capsys)
    assert ok is False and "✗" in out and message in out, f"{mistake}: {out}"


# ----------------------------------------------------------------------------- chapter 3
def fake_run(path: Path, preset, val_loss: float | None = 4.5) -> Path:
    """A run directory with what check_relu reads: config.json and (with `val_loss`) an `lm` stage."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(asdict(preset)))
    stages = {"tokenizer": {}} if val_loss is None else {"lm": {"val_loss": val_loss, "on_concept_rate": 0.5}}
    (path / "stages.json").write_text(json.dumps(stages))
    return path


@pytest.fixture
def gelu_run(tmp_path):
    return fake_run(tmp_path / "smoke", get_preset("smoke"))


def relu_preset(*more):
    return with_overrides(get_preset("smoke"), ["gpt.activation=relu", *more])


def test_check_relu_passes_a_relu_twin(gelu_run, tmp_path, capsys):
    relu = fake_run(tmp_path / "smoke_relu", relu_preset(), val_loss=4.55)
    assert exercises.ch03.check_relu(relu, gelu_run) is True
    assert exercises.ch03.check_relu(str(relu), gelu_run) is True
    assert exercises.ch03.check_relu(None, gelu_run) is None


@pytest.mark.parametrize("mistake, make, message", [
    ("the GELU run itself", lambda tmp, gelu: gelu, "is the GELU run itself"),
    ("the model, not its directory", lambda tmp, gelu: GPT(TINY), "not a GPT"),
    ("the activation left at GELU", lambda tmp, gelu: fake_run(tmp / "copy", get_preset("smoke")),
     "not 'relu'"),
    ("another field changed too", lambda tmp, gelu: fake_run(tmp / "lr", relu_preset("train_lm.lr=0.01")),
     "differs from"),
    ("the language model not trained", lambda tmp, gelu: fake_run(tmp / "untrained", relu_preset(), val_loss=None),
     "no trained language model"),
])
def test_check_relu_rejects_and_names_the_mistake(gelu_run, tmp_path, capsys, mistake, make, message):
    assert exercises.ch03.check_relu(make(tmp_path, gelu_run), gelu_run) is False, mistake
    out = capsys.readouterr().out
    assert "✗" in out and message in out, f"{mistake}: {out}"


# ----------------------------------------------------------------------------- chapter 4
@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return GPT(TINY).eval()


def buffer(model, site: str) -> ActivationBuffer:
    tokens = np.random.default_rng(0).integers(0, TINY.vocab_size, 4096).astype(np.int32)
    return ActivationBuffer(model, tokens, site, buffer_tokens=1024, batch_size=64, seed=0)


def test_check_resid_buffer_passes_the_residual_stream(tiny_model, capsys):
    assert exercises.ch04.check_resid_buffer(buffer(tiny_model, "blocks.0.hook_resid_post"), tiny_model) is True
    assert exercises.ch04.check_resid_buffer(None, tiny_model) is None


@pytest.mark.parametrize("mistake, make, message", [
    ("the chapter's MLP buffer", lambda m: buffer(m, "blocks.0.mlp.hook_post"), "the residual stream after the block"),
    ("the residual stream before the block", lambda m: buffer(m, "blocks.0.hook_resid_pre"),
     "the residual stream after the block"),
    ("rows of activations, not a buffer", lambda m: buffer(m, "blocks.0.hook_resid_post").next_batch(),
     "build an ActivationBuffer"),
    ("a buffer of another model", lambda m: buffer(GPT(TINY), "blocks.0.hook_resid_post"), "another model"),
])
def test_check_resid_buffer_rejects_and_names_the_mistake(tiny_model, capsys, mistake, make, message):
    assert exercises.ch04.check_resid_buffer(make(tiny_model), tiny_model) is False, mistake
    out = capsys.readouterr().out
    assert "✗" in out and message in out, f"{mistake}: {out}"
