"""The checks of chapters 7 and 9's run-based exercises: the right answer passes, the plausible
wrong ones fail with a message that names the mistake, a placeholder only gets a reminder. Cheap
inputs: a random one-layer GPT and a random SAE on its MLP neurons, no trained run."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.gpt import GPT, GPTConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tutorials"))

import exercises.ch07  # noqa: E402
import exercises.ch09  # noqa: E402

SITE = "blocks.0.mlp.hook_post"
N_CTX, VOCAB = 16, 20


class FakeTokenizer:
    def token_str(self, i: int) -> str:
        return f"t{i} "


def random_model_and_sae(d_sae: int = 24):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=32, n_head=2, d_mlp=64, n_ctx=N_CTX, vocab_size=VOCAB)).eval()
    sae = SparseAutoencoder(SAEConfig(d_in=64, d_sae=d_sae, site=SITE))
    with torch.no_grad():  # biased so that most features fire
        sae.b_enc.fill_(0.05)
        sae.input_scale.fill_(3.0)
    return model, sae


# ----------------------------------------------------------------------------- chapter 7
@pytest.fixture(scope="module")
def ch07():
    model, sae = random_model_and_sae()
    tokens = np.random.default_rng(0).integers(0, VOCAB, 400).astype(np.int32)
    n_windows = len(tokens) // N_CTX
    ctx = torch.from_numpy(tokens[: n_windows * N_CTX].astype(np.int64)).view(n_windows, N_CTX)
    with torch.no_grad():  # brute force: every position but the first of each window, as the check reads them
        f = sae.encode(model.run_with_cache(ctx, [SITE])[1][SITE][:, 1:]).reshape(-1, sae.cfg.d_sae).double()
    is_token = ctx[:, 1:].reshape(-1) == 7
    features = {"a": 2, "b": 5}
    assert all((f[is_token, j] > 0).any() for j in features.values()), "pick features that fire on the token"
    return model, sae, tokens, f, is_token, features


def check_ch07(answer, ch07):
    model, sae, tokens, _, _, features = ch07
    return exercises.ch07.check(answer, features, 7, model, sae, tokens, n_tokens=len(tokens))


def test_ch07_the_right_share_passes(ch07, capsys):
    f, is_token = ch07[3], ch07[4]
    assert check_ch07(lambda j, t: (f[is_token, j].sum() / f[:, j].sum()).item(), ch07) is True
    assert "✓" in capsys.readouterr().out


def test_ch07_a_placeholder_only_gets_a_reminder(ch07, capsys):
    assert check_ch07(lambda j, t: None, ch07) is None
    assert "exercise not done yet" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, named", [
    (lambda f, on, j: ((f[on, j] > 0).sum() / (f[:, j] > 0).sum()).item(), "counted firings"),
    (lambda f, on, j: ((f[on, j] > 0).sum() / on.sum()).item(), "share of the token's occurrences"),
    (lambda f, on, j: (f[on, j].sum() / on.sum()).item(), "mean activation on the token"),
    (lambda f, on, j: (f[on, j].sum() / f[on].sum()).item(), "normalised over the features"),
    (lambda f, on, j: (100 * f[on, j].sum() / f[:, j].sum()).item(), "percentage"),
], ids=["firings", "token recall", "mean activation", "over features", "percentage"])
def test_ch07_a_wrong_share_fails_and_the_message_names_the_mistake(ch07, capsys, wrong, named):
    f, is_token = ch07[3], ch07[4]
    assert check_ch07(lambda j, t: wrong(f, is_token, j), ch07) is False
    out = capsys.readouterr().out
    assert "✗" in out and named in out, out


def test_ch07_an_unlisted_wrong_share_still_fails(ch07, capsys):
    f, is_token = ch07[3], ch07[4]
    assert check_ch07(lambda j, t: 0.5 * (f[is_token, j].sum() / f[:, j].sum()).item(), ch07) is False
    assert "differ from the reference" in capsys.readouterr().out


# ----------------------------------------------------------------------------- chapter 9
def fake_result() -> dict:
    """Families over three sizes, built so that each plausible wrong answer is a different concept:
    beta and delta tie at the largest size (beta comes first), eps has the largest family at the
    middle size, alpha comes first at the smallest (where every family is its root), and gamma
    has the most concept features without a large family."""
    counts = {  # name: (descendants at 8, at 16, features_per_size at 16)
        "alpha": (1, 1, 2), "beta": (1, 3, 3), "delta": (2, 3, 3), "eps": (4, 2, 2), "gamma": (1, 1, 9)}
    concepts = {}
    for k, (name, (n8, n16, per16)) in enumerate(counts.items()):
        concepts[name] = {"root": k, "family": {4: [k], 8: list(range(n8)), 16: list(range(3 * k, 3 * k + n16))},
                          "features_per_size": {4: 1, 8: 1, 16: per16}}
    return {"sizes": [4, 8, 16], "concepts": concepts}


@pytest.fixture(scope="module")
def ch09():
    model, sae = random_model_and_sae(d_sae=16)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, VOCAB, 160).astype(np.int32)
    labels = rng.integers(-1, 5, 160).astype(np.int8)
    return model, sae, tokens, labels


def check_ch09(answer, ch09):
    model, sae, tokens, labels = ch09
    return exercises.ch09.check(answer, fake_result(), model, sae, FakeTokenizer(), tokens, labels, len(tokens))


def test_ch09_the_right_concept_passes_and_its_family_is_printed(ch09, capsys):
    assert exercises.ch09.largest_family(fake_result()) == "beta"
    assert check_ch09("beta", ch09) is True
    out = capsys.readouterr().out
    assert "beta: 3 descendants in the 16-feature dictionary" in out and "✓" in out


def test_ch09_a_placeholder_only_gets_a_reminder(ch09, capsys):
    assert check_ch09(None, ch09) is None
    assert "exercise not done yet" in capsys.readouterr().out


@pytest.mark.parametrize("answer, named", [
    ("delta", "a tie"),
    ("eps", "descendants in the 8-feature dictionary"),
    ("alpha", "descendants in the 4-feature dictionary"),
    ("gamma", "features_per_size"),
    ("Golden Gate", "not a concept"),
])
def test_ch09_a_wrong_concept_fails_and_the_message_names_the_mistake(ch09, capsys, answer, named):
    assert check_ch09(answer, ch09) is False
    out = capsys.readouterr().out
    assert "✗" in out and named in out, out
