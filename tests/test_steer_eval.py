"""The steering benchmark: each method's edit against a hand-made case, the scores on hand-made texts,
the judge's quality on held-out sentences, the key/value cache, and a selection that never reads the
test prompts."""

import json

import numpy as np
import pytest
import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.gpt import GPT, GPTConfig
from sae.steering import benchmark as B
from sae.steering import scores as S
from sae.steering.clamp import clamp_features
from sae.steering.methods import Handle, concept_tokens, fit_directions, output_scores, row_edit

SITE = "blocks.0.mlp.hook_post"


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=32, n_head=2, d_mlp=64, n_ctx=24, vocab_size=50)).eval()
    sae = SparseAutoencoder(SAEConfig(d_in=64, d_sae=128, site=SITE))
    with torch.no_grad():
        sae.b_enc.fill_(0.05)
    sae.set_input_scale_(3.0)
    tokens = torch.randint(0, 50, (1, 12), generator=torch.Generator().manual_seed(1))
    return model, sae, tokens


def _logits(model, sae, tokens, rows):
    with torch.no_grad(), model.hooks({SITE: row_edit(sae, rows)}):
        return model(tokens.repeat(len(rows), 1))


def test_each_row_is_edited_as_its_own_method(small):
    """One batch: a clamped feature, nothing, a clamped neuron, an added direction: each row equals
    the model under that edit alone (the clamp as `clamp_features`, the neuron set, the vector added)."""
    model, sae, tokens = small
    u = torch.randn(64, generator=torch.Generator().manual_seed(2))
    u = u / u.norm()
    rows = [(Handle("c", "feature", "f", unit=7, scale=2.0), 1.5), None, (Handle("n", "neuron", "n", unit=3, scale=4.0), 0.5),
            (Handle("a", "add", "a", direction=u, scale=5.0), 2.0), (Handle("p", "prompt", "p"), 1)]
    got = _logits(model, sae, tokens, rows)
    with torch.no_grad():
        clean = model(tokens)
        with clamp_features(model, sae, clamp={7: 3.0}):
            clamp = model(tokens)

        def set_neuron(act):
            act = act.clone()
            act[..., 3] = 2.0
            return act
        with model.hooks({SITE: set_neuron}):
            neuron = model(tokens)
        with model.hooks({SITE: lambda act: act + 10.0 * u}):
            added = model(tokens)
    for r, want in enumerate([clamp, clean, neuron, added, clean]):
        assert torch.allclose(got[r], want[0], atol=1e-5), f"row {r} is not its method's edit"
    # two features clamped together, each at its own strength × the row's: clamp_features with both
    f7, f9 = Handle("c", "feature", "f", unit=7, scale=2.0), Handle("c", "feature", "f", unit=9, scale=1.0)
    pair = Handle("p", "features", "f7 + f9", parts=[(f7, 1.5), (f9, 4.0)])
    got = _logits(model, sae, tokens, [(pair, 0.5), None])
    with torch.no_grad(), clamp_features(model, sae, clamp={7: 1.5, 9: 2.0}):
        both = model(tokens)
    assert torch.allclose(got[0], both[0], atol=1e-5) and torch.allclose(got[1], clean[0], atol=1e-5)


def test_directions_on_a_hand_made_case():
    """Two concepts placed along two axes: DiffMean and the probe point along their own axis; every
    direction has unit norm; the random ones (four a concept) are the same for the same seed."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=g) * 0.3
    labels = torch.full((600,), -1)
    labels[:200], labels[200:400] = 0, 1
    x[:200, 2] += 3.0
    x[200:400, 5] -= 2.0
    d = fit_directions(x, labels, 2, seed=3)
    assert d["diffmean"].shape == d["probe"].shape == (2, 8) and d["random"].shape == (2, 4, 8)
    for name, t in d.items():
        assert torch.allclose(t.norm(dim=-1), torch.ones(t.shape[:-1]), atol=1e-5), name
    for c in (0, 1):  # DiffMean: mean(x | c) − mean(x | not c), by hand
        want = x[labels == c].mean(0) - x[labels != c].mean(0)
        assert torch.allclose(d["diffmean"][c], want / want.norm(), atol=1e-5)
    # the probe isolates each concept's own axis (DiffMean of concept 1 also leans on concept 0's)
    assert d["probe"][0].abs().argmax() == 2 and d["probe"][0][2] > 0.9
    assert d["probe"][1].abs().argmax() == 5 and d["probe"][1][5] < -0.9
    assert torch.equal(d["random"], fit_directions(x, labels, 2, seed=3)["random"])


def test_concept_tokens_and_output_scores(small):
    """A concept's own tokens are frequent on it and rare elsewhere; a feature whose decoder writes
    towards those tokens' unembedding scores highest."""
    tokens = np.array([5] * 20 + [6] * 20 + [7] * 3 + [8] * 10)
    labels = np.array([0] * 20 + [0] * 10 + [1] * 10 + [0] * 3 + [1] * 10)
    assert concept_tokens(tokens, labels, 0, min_count=5) == [5]  # 6 is half on it, 7 too rare
    model, sae, _ = small
    target = [11, 12]
    # the MLP-space direction whose direct logit effect is the two tokens' unembedding: through the pseudo-inverse
    want = model.lm_head.weight[target].sum(0) / model.ln_f.weight
    d = torch.linalg.lstsq(model.blocks[0].mlp.c_proj.weight, want[:, None]).solution[:, 0]
    with torch.no_grad():
        sae.W_dec[42] = d / d.norm() * sae.W_dec[0].norm()
    assert int(output_scores(model, sae, target).argmax()) == 42


def test_scores_tell_a_continuation_that_drifts_back_from_one_that_stays():
    stays = ("The Golden Gate Bridge glowed in the fog. Its towers rose over the bay. "
             "The suspension bridge spans the strait.")
    drifts = ("The Golden Gate Bridge glowed in the fog. Simmer the soup with garlic. "
              "Whisk the eggs and butter in the skillet.")
    s = S.score_texts([stays], [1.0], "golden_gate")
    d = S.score_texts([drifts], [1.0], "golden_gate")
    assert s["concept"] == 1.0 and s["on_target"] == 1.0 and s["steered"] == 1.0
    assert d["concept"] == pytest.approx(1 / 3) and d["on_target"] == 0.0 and d["other"] == {"cooking": 2}
    broken = S.score_texts([stays], [3.0], "golden_gate")  # on target, not fluent
    assert broken["steered"] == 0.0 and broken["fluent"] == 0.0 and broken["score"] == pytest.approx(2 * 0.5 / 1.5)
    assert S.fluency(S.FLUENT_CE) == 1.0 and S.fluency(2 * S.FLUENT_CE) == 0.0


def test_off_target_is_total_variation_of_the_other_sentences():
    tv, top, change = S.off_target({"weather": 3, "none": 1}, {"cooking": 2, "none": 2})
    assert tv == pytest.approx(0.75) and top == "weather" and change == pytest.approx(0.75)
    assert S.off_target({}, {"cooking": 1}) == (None, None, None)


def test_the_sentence_judge_on_held_out_labelled_sentences():
    """Precision and recall of the judge per steered concept, on test-split sentences (pinned at
    what it measures, less a margin: at 30 segments a concept, precision >= 0.93 everywhere,
    recall >= 0.74; arithmetic's and manipulation's sentences without a keyword are the misses)."""
    q = S.judge_quality()
    assert set(q) == set(S.STEERED)
    low = {c: v for c, v in q.items() if v["precision"] < 0.9 or v["recall"] < 0.7}
    assert not low, low


def test_prompts_are_disjoint_and_held_out():
    val, test = B.prompt_sets(3, seed=0)
    assert set(val) == set(test) == set(B.DISTRACTORS)
    vs, ts = {p for ps in val.values() for p in ps}, {p for ps in test.values() for p in ps}
    assert len(vs) == 12 and len(ts) == 12 and not vs & ts


def test_generate_with_a_key_value_cache(small):
    model, _, tokens = small
    plain = model.generate(tokens, 8, temperature=0)
    assert torch.equal(model.generate(tokens, 8, temperature=0, use_cache=True), plain)
    with torch.no_grad():
        kv = [{} for _ in model.blocks]
        first = model(plain[:, :10], kv=kv)
        step = model(plain[:, 10:11], kv=kv)
        full = model(plain[:, :11])
    assert torch.allclose(first, full[:, :10], atol=1e-5) and torch.allclose(step[:, 0], full[:, 10], atol=1e-5)
    long = model.generate(tokens, 20, temperature=0, use_cache=True)  # past n_ctx: slides, no cache
    assert torch.equal(long, model.generate(tokens, 20, temperature=0))


def test_selection_never_reads_the_test_prompts(smoke_run, monkeypatch):
    """Other test prompts change the test rows but not one choice made on validation."""
    from sae.run.files import Run
    run = Run(smoke_run[0])
    sizes = B.Sizes(1, 1, 1, 1, 1, 8, 8, 2_000, 2, 4)

    def choices(test_prompts):
        real = B.prompt_sets
        monkeypatch.setattr(B, "prompt_sets", lambda n, seed: (real(n, seed)[0], test_prompts))
        r = B.steer_eval(run.model, run.sae, run.tok, run.result("concepts").rows, run.stats.max_act.tolist(),
                         sizes=sizes, concepts=["golden_gate"])
        return {m: (v["unit"], v["strength"]) for m, v in r.concepts["golden_gate"]["methods"].items()}

    a = choices({c: ["The fox"] for c in B.DISTRACTORS})
    b = choices({c: ["Fans filled the stadium"] for c in B.DISTRACTORS})
    assert a == b


def test_the_smoke_run_has_the_benchmark_in_its_file_report_and_headlines(smoke_run):
    out, printed = smoke_run
    d = json.loads((out / "steer_eval.json").read_text())["steer_eval"]
    assert list(d["concepts"]) == B.STEERED
    for row in d["concepts"].values():
        assert set(row["methods"]) == set(B.METHODS)
        for m, v in row["methods"].items():
            assert 0 <= v["steered"] <= v["on_target"] <= 1 and (m == "prompt" or v["capability"]), m
    assert (out / "figures" / "steer_eval.png").exists()
    assert "## Steering benchmark: is a feature a good handle?" in (out / "report.md").read_text()
    assert "[7/9] steer_eval" in printed


def test_the_steer_eval_command_on_a_finished_run(smoke_run, tmp_path, capsys):
    """`python -m sae steer-eval --run R` reruns the benchmark: the same file as the stage wrote, its
    entry in stages.json, the report rewritten, a table printed; a run without an evaluation is
    refused in one line."""
    import shutil

    from sae.run.cli import main
    run = tmp_path / "run"
    shutil.copytree(smoke_run[0], run)
    before = json.loads((run / "steer_eval.json").read_text())["steer_eval"]
    (run / "report.md").write_text("old")
    assert main(["steer-eval", "--run", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "steered share on the test prompts" in printed and "golden_gate" in printed
    after = json.loads((run / "steer_eval.json").read_text())["steer_eval"]
    assert after["concepts"] == before["concepts"], "the same run, the same numbers"
    assert "steer_eval" in json.loads((run / "stages.json").read_text())
    assert "## Steering benchmark" in (run / "report.md").read_text()
    (run / "metrics.json").unlink()
    assert main(["steer-eval", "--run", str(run)]) == 2
    assert "concepts" in capsys.readouterr().err


def test_generate_with_given_uniforms_samples_the_models_distribution(small):
    """Inverse-CDF sampling from given uniforms: rows with the same uniforms write the same text,
    and the first token's frequencies over many rows match the model's probabilities."""
    model, _, tokens = small
    u = torch.rand(1, 6, generator=torch.Generator().manual_seed(0)).repeat(3, 1)
    out = model.generate(tokens.repeat(3, 1), 6, temperature=0.8, uniforms=u, use_cache=True)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    with torch.no_grad():
        p = torch.softmax(model(tokens)[0, -1] / 0.8, -1)
    many = torch.rand(20_000, 1, generator=torch.Generator().manual_seed(1))
    first = model.generate(tokens.repeat(20_000, 1), 1, temperature=0.8, uniforms=many)[:, -1]
    assert (torch.bincount(first, minlength=len(p)).float() / 20_000 - p).abs().max() < 0.01
