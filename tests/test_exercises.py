"""The write-the-maths exercises (tutorials/exercises): every right answer passes its check, and
every plausible mistake an exercise lists is caught and named, on the exercise's own test cases."""

import importlib
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tutorials"))

from exercises import MathsExercise  # noqa: E402

CHAPTERS = sorted(p.stem for p in (ROOT / "tutorials" / "exercises").glob("ch[0-9][0-9].py"))


def _maths_exercises() -> list[MathsExercise]:
    found = []
    for name in CHAPTERS:
        module = importlib.import_module(f"exercises.{name}")
        found += [v for v in vars(module).values() if isinstance(v, MathsExercise)]
    return found


EXERCISES = _maths_exercises()


def test_every_chapter_has_a_write_the_maths_exercise_in_its_text_and_its_answers():
    for name in CHAPTERS:
        chapter = next((ROOT / "tutorials").glob(f"{name[2:]}_*.py"))
        solution = ROOT / "tutorials" / "solutions" / chapter.name
        mine = [e for e in EXERCISES if e.chapter == chapter.stem]
        assert mine, f"{chapter.name} has no write-the-maths exercise in tutorials/exercises/{name}.py"
        for e in mine:
            assert f"def {e.name}(" in chapter.read_text(), f"{chapter.name} has no stub for {e.name}"
            assert f"def {e.name}(" in solution.read_text(), f"{solution.name} does not answer {e.name}"


@pytest.mark.parametrize("exercise", EXERCISES, ids=[e.name for e in EXERCISES])
def test_the_right_answer_passes_and_every_listed_mistake_is_caught_by_name(exercise, capsys):
    assert len(exercise.mistakes) >= 2, f"{exercise.name}: list at least two plausible mistakes"
    assert exercise.check(exercise.reference) is True
    for what, wrong in exercise.mistakes.items():
        capsys.readouterr()
        assert exercise.check(wrong) is False, f"{exercise.name} accepts a wrong answer: {what}"
        assert what in capsys.readouterr().out, f"{exercise.name}: the message does not name the mistake {what!r}"


@pytest.mark.parametrize("exercise", EXERCISES, ids=[e.name for e in EXERCISES])
def test_a_stub_that_returns_none_only_gets_a_reminder(exercise, capsys):
    assert exercise.check(lambda **_: None) is None
    assert "exercise not done yet" in capsys.readouterr().out


def test_an_unlisted_mistake_is_still_rejected_with_the_case_and_the_difference(capsys):
    e = next(e for e in EXERCISES if e.name == "sae_forward")

    def off_by_a_little(**kw):
        f, x_hat, loss = e.reference(**kw)
        return f, x_hat, loss * 1.01

    assert e.check(off_by_a_little) is False
    assert "differs from the right answer on test case 1" in capsys.readouterr().out


def test_a_wrong_value_of_the_right_shape_is_not_reported_as_a_shape_error(capsys):
    e = next(e for e in EXERCISES if e.name == "clamp_splice")

    def doubled(**kw):
        return 2 * e.reference(**kw)

    assert e.check(doubled) is False
    out = capsys.readouterr().out
    assert "the shape (6, 5) is right but the values are not (largest difference" in out, out
    assert "expected a tensor" not in out


def test_the_forward_pass_exercise_is_the_library_s_relu_sae():
    """With unit-norm decoder rows and the input already scaled, sae_forward's loss is what
    SparseAutoencoder(arch="relu") trains on."""
    from sae.autoencoder import SAEConfig, SparseAutoencoder

    sae = SparseAutoencoder(SAEConfig(d_in=6, d_sae=10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_enc.normal_(generator=torch.Generator().manual_seed(1))
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(2))
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(3))
    ex = next(e for e in EXERCISES if e.name == "sae_forward")
    with torch.no_grad():
        f, x_hat, loss = ex.reference(x, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, 0.3)
        out = sae(x, l1_coeff=0.3)
    assert torch.allclose(f, out.f, atol=1e-6) and torch.allclose(x_hat, out.x_hat, atol=1e-6)
    assert abs(loss.item() - out.loss.item()) < 1e-5


def test_the_clamp_exercise_is_the_library_s_splice():
    """clamp_splice on scaled activations (f is in the SAE's units, so the value is not rescaled),
    put into the model, gives clamp_features' logits."""
    from sae.autoencoder import SAEConfig, SparseAutoencoder
    from sae.gpt import GPT, GPTConfig
    from sae.steering.clamp import clamp_features

    model = GPT(GPTConfig(vocab_size=50, n_ctx=16, n_layer=1, d_model=16, n_head=2, d_mlp=32)).eval()
    site = "blocks.0.mlp.hook_post"
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=40, site=site), generator=torch.Generator().manual_seed(0))
    sae.set_input_scale_(1.7)
    with torch.no_grad():
        sae.b_enc.fill_(0.1)
    tokens = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    ex = next(e for e in EXERCISES if e.name == "clamp_splice")
    s = sae.input_scale

    def hook(act):
        x = act.reshape(-1, act.shape[-1]) * s
        return (ex.reference(x, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, 5, 4.0) / s).reshape(act.shape)

    with torch.no_grad():
        with clamp_features(model, sae, clamp={5: 4.0}):
            library = model(tokens)
        with model.hooks({site: hook}):
            mine = model(tokens)
    assert torch.allclose(mine, library, atol=1e-4)


def test_the_batchtopk_exercise_is_the_library_s_training_activation():
    """Chapter 10's right answer is what `sae.architectures.BatchTopK` trains with."""
    from sae.architectures import BatchTopK
    from sae.autoencoder import SAEConfig

    ex = next(e for e in EXERCISES if e.name == "batchtopk")
    for case in ex.cases():
        arch = BatchTopK(SAEConfig(d_in=4, d_sae=case["pre"].shape[1], arch="batchtopk", k=case["k"]))
        assert torch.equal(arch.train_activation(None, case["pre"]), ex.reference(**case))
