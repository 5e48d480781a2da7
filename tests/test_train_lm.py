"""The language-model training loop: it learns, its schedule is right, its checkpoint resumes
bit-for-bit, and its validation loss per concept agrees with a naive computation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sae.gpt import GPT, GPTConfig
from sae.train_lm import SoftmaxCrossEntropy, TrainLMConfig, estimate_loss, lr_at, per_label_loss, train_lm

SMALL = dict(n_layer=1, d_model=32, n_head=2, d_mlp=64, n_ctx=16, vocab_size=64)


def make_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**SMALL))


def stream(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, SMALL["vocab_size"], n, dtype=np.int64)


def quiet(**kw) -> TrainLMConfig:
    base = dict(n_steps=12, batch_size=4, warmup=3, eval_every=0, checkpoint_every=4, log_every=0, device="cpu")
    return TrainLMConfig(**{**base, **kw})


def test_overfits_one_batch():
    data = stream(SMALL["n_ctx"] + 1, seed=0)  # exactly one window: every batch is the same
    model = make_model()
    history = train_lm(model, data, data, quiet(n_steps=150, lr=1e-2, warmup=10, min_lr_ratio=1.0))
    assert history[0]["loss"] == pytest.approx(math.log(SMALL["vocab_size"]), abs=0.3), (
        "the first loss of a fresh model should be near log(vocab_size): is the init small (std 0.02)?"
    )
    assert history[-1]["loss"] < 0.1, (
        f"a model should memorise one batch of 16 tokens, but its loss is {history[-1]['loss']:.3f}: "
        "are the targets shifted by one? is the optimizer stepping (and zero_grad called)?"
    )
    assert history[-1]["val_loss"] < 0.1, "a validation on the same window should agree"


def test_lr_schedule_warms_up_then_decays_to_min_lr():
    cfg = TrainLMConfig(n_steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(cfg.n_steps)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0), "warm-up should rise linearly to lr"
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])), "after warm-up the cosine only decreases"
    assert lrs[-1] == pytest.approx(0.1), "the last step should use lr * min_lr_ratio"


def test_history_and_checkpoint_format(tmp_path):
    model = make_model()
    path = tmp_path / "lm.pt"
    history = train_lm(model, stream(2000, 1), stream(500, 2), quiet(eval_every=6), checkpoint_path=path)
    assert [row["step"] for row in history] == list(range(1, 13))
    assert [row["step"] for row in history if "val_loss" in row] == [6, 12]
    ckpt = torch.load(path, weights_only=True)
    assert {"config", "state_dict", "optimizer", "step", "rng"} <= set(ckpt)
    assert ckpt["step"] == 12
    loaded = GPT.load(path)  # a training checkpoint is also a model file
    tokens = torch.randint(0, SMALL["vocab_size"], (2, SMALL["n_ctx"]))
    with torch.no_grad():
        assert torch.equal(loaded.eval()(tokens), model.eval()(tokens))


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    train, val = stream(3000, 1), stream(500, 2)
    cfg = quiet(n_steps=12, checkpoint_every=4, eval_every=4)

    reference = make_model()
    ref_history = train_lm(reference, train, val, cfg, checkpoint_path=tmp_path / "ref.pt")

    # Crash in the middle of step 7 (after the checkpoint at step 4), using our own hooks to raise.
    path = tmp_path / "crash.pt"
    crashing = make_model()
    calls = {"n": 0}

    def crash_on_7th_training_forward(act):
        calls["n"] += crashing.training
        if calls["n"] == 7:
            raise KeyboardInterrupt

    crash = {"blocks.0.hook_resid_pre": crash_on_7th_training_forward}
    with pytest.raises(KeyboardInterrupt), crashing.hooks(crash):
        train_lm(crashing, train, val, cfg, checkpoint_path=path)
    assert torch.load(path, weights_only=True)["step"] == 4

    resumed = make_model(seed=123)  # a different init: everything must come from the checkpoint
    history = train_lm(resumed, train, val, cfg, checkpoint_path=path, resume=True)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), (
            f"{name} differs after resuming: does the checkpoint hold the optimizer state and the batch "
            "generator's state, and is the learning rate computed from the step?"
        )
    assert [(r["step"], r["loss"], r.get("val_loss")) for r in history] == [
        (r["step"], r["loss"], r.get("val_loss")) for r in ref_history
    ]


def test_resume_refuses_a_different_model(tmp_path):
    path = tmp_path / "lm.pt"
    train_lm(make_model(), stream(2000, 1), None, quiet(n_steps=4), checkpoint_path=path)
    torch.manual_seed(0)
    other = GPT(GPTConfig(**dict(SMALL, d_mlp=128)))
    with pytest.raises(ValueError, match="resume=False"):
        train_lm(other, stream(2000, 1), None, quiet(n_steps=8), checkpoint_path=path, resume=True)


def test_per_label_loss_matches_a_naive_loop():
    model = make_model().eval()
    n_ctx, n_windows = SMALL["n_ctx"], 5
    tokens = stream(n_windows * n_ctx + 1, 3)  # windows at 0, 16, ... score every target exactly once
    labels = np.random.default_rng(4).integers(-1, 3, len(tokens))  # -1: no concept, skipped
    names = ["golden_gate", "dna", "code"]

    sums, counts = {n: 0.0 for n in names}, {n: 0 for n in names}
    with torch.no_grad():
        for w in range(n_windows):
            window = torch.from_numpy(tokens[w * n_ctx : w * n_ctx + n_ctx + 1])
            logp = F.log_softmax(model(window[None, :-1])[0], dim=-1)
            for t in range(n_ctx):
                label = labels[w * n_ctx + t + 1]  # the label of the token being predicted
                if label >= 0:
                    sums[names[label]] -= logp[t, window[t + 1]].item()
                    counts[names[label]] += 1
    naive = {n: sums[n] / counts[n] for n in names}

    ours = per_label_loss(model, tokens, labels, names)
    assert ours.keys() == naive.keys()
    for n in names:
        assert ours[n] == pytest.approx(naive[n], rel=1e-5), (
            f"{n}: {ours[n]:.5f} vs naive {naive[n]:.5f}; is each loss attributed to the label of the "
            "*predicted* token (labels[t + 1]), not of the input token?"
        )
    all_tokens = estimate_loss(model, tokens)
    weighted = sum(sums.values()) / sum(counts.values())
    assert all_tokens == pytest.approx(weighted, rel=0.05)


def test_val_labels_add_per_concept_losses_to_history():
    val = stream(400, 2)
    labels = np.arange(len(val)) // 100 % 2
    history = train_lm(
        make_model(), stream(2000, 1), val, quiet(n_steps=3), val_labels=labels, label_names=["a", "b"]
    )
    assert set(history[-1]["val_loss_by_label"]) == {"a", "b"}


def test_softmax_cross_entropy_matches_torch():
    logits = torch.randn(20, 7, dtype=torch.float64) * 5
    targets = torch.randint(0, 7, (20,))
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    SoftmaxCrossEntropy.apply(a, targets).backward()
    loss = F.cross_entropy(b, targets)
    loss.backward()
    assert torch.allclose(SoftmaxCrossEntropy.apply(logits, targets), loss)
    assert torch.allclose(a.grad, b.grad), "the gradient of mean cross-entropy is (softmax - onehot) / N"


def test_bad_data_gives_a_clear_error():
    with pytest.raises(ValueError, match="vocab_size"):
        train_lm(make_model(), stream(100, 0) + 64, None, quiet())
    with pytest.raises(ValueError, match="n_ctx"):
        train_lm(make_model(), stream(10, 0), None, quiet())
    with pytest.raises(ValueError, match="1-D"):
        train_lm(make_model(), stream(100, 0).reshape(10, 10), None, quiet())
