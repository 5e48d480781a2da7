"""The (skip) transcoder: an SAE whose target is another activation, trained by the same trainer."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from sae.architectures import ARCHITECTURES
from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.train_sae import sae_schedule, train_sae

D_IN, D_OUT = 12, 8


def make(arch="relu", skip=True, seed=0, **kw):
    cfg = SAEConfig(d_in=D_IN, d_sae=48, d_out=D_OUT, arch=arch, k=kw.pop("k", 4), skip=skip, **kw)
    sae = SparseAutoencoder(cfg, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-trivial biases, skip path and scales, so that a term in the wrong place shows
        sae.b_dec.normal_(0, 0.3, generator=g)
        sae.b_enc.normal_(0, 0.1, generator=g)
        if skip:
            sae.W_skip.normal_(0, 0.2, generator=g)
        sae.set_input_scale_(1.7, 0.6)
    return sae


def pairs(n, seed=0, sparse=True):
    """Rows [x | y]: y a linear map of x plus a sparse non-linear part (a few ReLU'd directions)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D_IN, generator=g)
    lin, enc = torch.randn(D_IN, D_OUT, generator=g) / D_IN ** 0.5, torch.randn(D_IN, 16, generator=g)
    dec = torch.randn(16, D_OUT, generator=g)
    y = x @ lin + sparse * (x @ enc - 2.5).relu() @ dec
    return torch.cat([x, y], 1)


def tiny_mlp_transcoder(d_sae: int):
    """A one-layer model (d_model 16, 32 neurons) and an untrained transcoder of its MLP."""
    from sae.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=16, n_head=2, d_mlp=32, n_ctx=16, vocab_size=50))
    tc = SparseAutoencoder(SAEConfig(d_in=16, d_sae=d_sae, d_out=16, site="blocks.0.mlp.hook_in",
                                     target_site="blocks.0.mlp.hook_out"))
    tc.set_input_scale_(1.0, 1.0)
    return model, tc


def test_forward_is_the_skip_transcoders_equation():
    sae = make()
    x, y = sae.split(pairs(32))
    out = sae(x, target=y)
    x_s, y_s = x * 1.7, y * 0.6
    pre = x_s @ sae.W_enc + sae.b_enc  # no "- b_dec": b_dec is in the target's space
    f = pre.relu()
    y_hat_s = f @ sae.W_dec + sae.b_dec + x_s @ sae.W_skip
    torch.testing.assert_close(out.f, f)
    torch.testing.assert_close(out.x_hat, y_hat_s / 0.6)
    torch.testing.assert_close(out.mse, (y_s - y_hat_s).pow(2).sum(-1).mean())
    torch.testing.assert_close(sae.predict(x, sae.encode(x)), out.x_hat)  # the inference path agrees
    assert out.x_hat.shape == y.shape and sae.write_site == ""


def test_the_skip_path_is_optional_and_starts_at_zero():
    assert not hasattr(make(skip=False), "W_skip")
    fresh = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=48, d_out=D_OUT))
    assert (fresh.W_skip == 0).all() and fresh.W_dec.shape == (48, D_OUT) and fresh.b_dec.shape == (D_OUT,)
    assert not hasattr(SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=48)), "W_skip"), "an SAE has no skip path"


def test_mistakes_are_clear_errors():
    sae = make()
    with pytest.raises(ValueError, match="needs the target"):
        sae(torch.randn(4, D_IN))
    with pytest.raises(ValueError, match=r"d_in \+ d_out"):
        sae.split(torch.randn(4, D_IN))
    with pytest.raises(ValueError, match="target's scale"):
        sae.set_input_scale_(1.0)
    with pytest.raises(ValueError, match="leave target_site empty"):
        SAEConfig(d_in=4, d_sae=8, site="blocks.0.mlp.hook_out", target_site="blocks.0.mlp.hook_out")


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_trains_as_a_transcoder_through_the_sae_trainer(arch):
    """Every σ works as a transcoder's, through the trainer that trains SAEs (resampling and AuxK
    included): the loss falls, and the skip path carries the linear part."""
    rows = pairs(4096 * 4)
    sae = make(arch, seed=1, k=6)
    sae.set_input_scale_(*sae.scales_for(rows))
    batches = (rows[i % 16 * 1024:(i % 16 + 1) * 1024] for i in range(10_000))
    cfg = sae_schedule(120, lr=3e-3, l1_coeff=1.0 if arch == "jumprelu" else 0.3, log_every=0, checkpoint_every=0,
                       resample_steps=(40,), dead_window=20, resample_inputs=2048)
    history = train_sae(sae, batches, cfg)
    assert history[-1]["fvu"] < 0.5 * history[0]["fvu"], (history[0]["fvu"], history[-1]["fvu"])
    assert sae.W_skip.abs().sum() > 0


def test_the_skip_path_is_what_lets_a_narrow_transcoder_fit_a_linear_map():
    rows, fvu = pairs(4096 * 4, sparse=False), {}
    for skip in (True, False):
        sae = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=4, d_out=D_OUT, arch="topk", k=2, skip=skip),
                                generator=torch.Generator().manual_seed(0))
        sae.set_input_scale_(*sae.scales_for(rows))
        batches = (rows[i % 16 * 1024:(i % 16 + 1) * 1024] for i in range(10_000))
        fvu[skip] = train_sae(sae, batches, sae_schedule(300, lr=1e-2, log_every=0, checkpoint_every=0))[-1]["fvu"]
    assert fvu[True] < 0.05 and fvu[False] > 0.2, fvu


def test_save_and_load_round_trip_a_transcoder(tmp_path):
    sae = make("topk")
    sae.save(tmp_path / "tc.pt")
    loaded = SparseAutoencoder.load(tmp_path / "tc.pt", device="cpu")
    x, y = sae.split(pairs(16))
    assert loaded.transcoder and loaded.cfg == sae.cfg
    torch.testing.assert_close(loaded(x, target=y).x_hat, sae(x, target=y).x_hat)


def test_buffer_rows_are_the_input_and_target_sites_side_by_side():
    from sae.buffer import ActivationBuffer, harvest
    from sae.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=16, n_head=2, d_mlp=32, n_ctx=8, vocab_size=50))
    tokens = torch.randint(0, 50, (4096,)).numpy()
    buf = ActivationBuffer(model, tokens, "blocks.0.mlp.hook_in", buffer_tokens=512, batch_size=64,
                           target_site="blocks.0.mlp.hook_out")
    assert (buf.d_in, buf.d_out) == (16, 16) and buf.next_batch().shape == (64, 32)
    ctx = torch.randint(0, 50, (2, 8))
    both = harvest(model, ctx, "blocks.0.mlp.hook_in", target_site="blocks.0.mlp.hook_out")
    assert torch.equal(both[:, :16], harvest(model, ctx, "blocks.0.mlp.hook_in"))
    assert torch.equal(both[:, 16:], harvest(model, ctx, "blocks.0.mlp.hook_out"))
    assert buf.estimate_target_scale() > 0 and buf.estimate_scale() > 0


def test_a_transcoder_that_predicts_the_mlp_exactly_recovers_all_of_the_loss():
    """The evaluator splices a transcoder's prediction in at its target site (the MLP replaced): a
    transcoder whose prediction is the MLP's own output scores FVU 0 and CE recovered 1."""
    from sae.evaluation.evaluator import evaluate_sae

    model, sae = tiny_mlp_transcoder(32)
    tokens = torch.randint(0, 50, (16 * 20,)).numpy()
    mlp = model.blocks[0].mlp
    sae.predict = lambda x, f, active=None: mlp.c_proj(mlp.act(mlp.c_fc(x)))  # the MLP itself
    m = evaluate_sae(model, sae, tokens, n_tokens=len(tokens), log=False).metrics
    assert m["fvu"] < 1e-10 and abs(m["ce_recovered_zero"] - 1) < 1e-5 and abs(m["kl"]) < 1e-6


def test_train_sae_evaluate_and_circuit_with_a_skip_transcoder_on_a_run(smoke_run, tmp_path, capsys):
    """`python -m sae train-sae --set sae.site=... --set sae.target_site=...`, `evaluate`, then
    `circuit`: its page escapes the prompt, links only inside its folder, and bad input is one line."""
    import re
    from urllib.parse import unquote

    from sae.run.cli import main

    run = tmp_path / "smoke"
    shutil.copytree(smoke_run[0], run, ignore=shutil.ignore_patterns("dashboard", "*.ckpt", "tc*"))  # (the stage's)
    assert main(["train-sae", "--run", str(run), "--name", "tc", "--set", "sae.site=blocks.0.mlp.hook_in",
                 "--set", "sae.target_site=blocks.0.mlp.hook_out", "--set", "sae.arch=topk", "--set", "sae.k=8",
                 "--set", "train_sae.n_steps=30", "--set", "train_sae.resample_steps=",
                 "--set", "train_sae.dead_window=10"]) == 0
    tc = SparseAutoencoder.load(run / "tc.pt")
    assert tc.transcoder and tc.write_site == "blocks.0.mlp.hook_out" and tc.W_skip.abs().sum() > 0
    assert main(["evaluate", "--run", str(run), "--sae", "tc"]) == 0
    m = json.loads((run / "tc_metrics.json").read_text())["sae"]
    assert 0 < m["fvu"] < 1 and m["ce_recovered_zero"] > 0, m

    capsys.readouterr()
    assert main(["circuit", "--run", str(run), "--prompt", "<b>The Golden", "--target", " Gate"]) == 0
    printed = capsys.readouterr().out
    assert "replacement score" in printed and "feature" in printed and "wrote" in printed
    page = Path(printed.rsplit("wrote ", 1)[1].strip())
    text = page.read_text()
    assert "&lt;b&gt;The Golden" in text and "<b>The" not in text and "<svg" in text
    refs = re.findall(r'(?:href|src)="([^"]*)"', text)
    assert any(r.startswith("features/f") for r in refs) and "http" not in " ".join(refs)
    for folder_page in (run / "circuits").rglob("*.html"):
        for ref in re.findall(r'(?:href|src)="([^"]*)"', folder_page.read_text()):
            if not ref.startswith(("data:", "#")):
                assert (folder_page.parent / unquote(ref)).resolve().is_file(), f"{folder_page.name}: broken link {ref}"
    for args, message in [(["--target", " Golden Gate"], "must be one token"), (["--target", " Gate", "--sae", "sae"],
                          "is an SAE, not a transcoder"), (["--target", " Gate", "--sae", "none"], "no transcoder none.pt")]:
        assert main(["circuit", "--run", str(run), "--prompt", "The", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_reproduce_refuses_a_transcoder_and_says_how_to_train_one(tmp_path):
    from sae.run.config import get_preset, with_overrides
    from sae.run.pipeline import reproduce

    p = with_overrides(get_preset("smoke"), ["sae.site=blocks.0.mlp.hook_in", "sae.target_site=blocks.0.mlp.hook_out"])
    with pytest.raises(ValueError, match="train-sae --run RUN --name tc2"):
        reproduce(p, tmp_path / "run")


def test_a_transcoders_neurons_are_the_mlps_it_replaces():
    """Features against neurons: a transcoder of an MLP is compared with that MLP's neurons (its
    held-out pass carries them as `units`), an SAE with what it reads."""
    from sae.evaluation.evaluator import evaluate_sae
    from sae.evaluation.held_out import held_out_batches

    model, tc = tiny_mlp_transcoder(24)
    tokens = torch.randint(0, 50, (16 * 8,)).numpy()
    labels = torch.randint(-1, 3, (16 * 8,)).numpy()
    b = next(held_out_batches(model, tc, tokens, n_tokens=len(tokens)))
    _, cache = model.run_with_cache(b.ctx, ["blocks.0.mlp.hook_post"])
    assert torch.equal(b.units, cache["blocks.0.mlp.hook_post"][:, 1:].reshape(-1, 32))
    ev = evaluate_sae(model, tc, tokens, labels, n_concepts=3, n_tokens=len(tokens), log=False)
    assert ev.neurons.n_units == 32 and ev.features.n_units == 24
    sae = SparseAutoencoder(SAEConfig(d_in=16, d_sae=24, site="blocks.0.mlp.hook_in"))
    assert next(held_out_batches(model, sae, tokens, n_tokens=len(tokens))).units.shape[1] == 16


def test_the_circuits_stage_sets_a_transcoder_beside_the_sae_and_checks_its_graphs(smoke_run):
    """`reproduce`'s circuits stage: a skip transcoder trained at the SAE's held-out L0, evaluated
    like the SAE, the world checks through it, a report section and the seed study's numbers."""
    from sae.circuit_checks import headline
    from sae.run.files import Run, load_sae

    run, printed = smoke_run
    r = Run(run).result("circuits")
    tc = load_sae(run, "tc")
    assert tc.transcoder and tc.cfg.arch == "topk" and tc.cfg.skip and tc.cfg.d_sae == Run(run).sae.cfg.d_sae
    assert r.k == tc.cfg.k == max(1, round(Run(run).result("sae").l0)), "k: the SAE's held-out L0"
    t = r.transcoders[0]
    assert t["site"] == "blocks.0.mlp.hook_in → blocks.0.mlp.hook_out" and 0 < t["l0"] <= r.k
    assert 0 < t["fvu"] < 1 and t["ce_added"] == Run(run, name="tc").result("sae").ce_added_nats
    assert r.golden_gate["n_prompts"] == r.unsafe["n_cuts"] == 4, "the smoke preset's circuit_prompts"
    assert all(1 <= k for k in r.unsafe["ranks"]) and 0 <= r.golden_gate["golden_gate_share"] <= 1
    assert "[8/9] circuits   finished" in printed
    report = (run / "report.md").read_text()
    assert "## Circuits: a skip transcoder and attribution graphs" in report
    assert f"| CE added by the splice (nats/token) | {r.sae['ce_added']:.3f} | {t['ce_added']:.3f} |" in report
    assert {h.key for h in headline(r)} >= {"tc_fvu", "tc_ce_added", "circuit_gg_share", "circuit_comment_top3"}


def test_circuits_false_skips_the_stage_and_the_report_leaves_it_out(smoke_run, tmp_path):
    import shutil
    from dataclasses import replace

    from sae.run.config import get_preset, with_overrides
    from sae.run.files import Run
    from sae.run.pipeline import stage_circuits
    from sae.run.report import report_markdown

    run = tmp_path / "run"
    shutil.copytree(smoke_run[0], run, ignore=shutil.ignore_patterns("dashboard", "tc*", "circuits.json"))
    assert stage_circuits(replace(get_preset("smoke"), circuits=False), run) == {"skipped": True}
    assert not (run / "tc.pt").exists() and Run(run).results("circuits") == {}
    assert "## Circuits" not in report_markdown(run)
    with pytest.raises(ValueError, match="circuit_prompts must be >= 1"):
        with_overrides(get_preset("smoke"), ["circuit_prompts=0"])
