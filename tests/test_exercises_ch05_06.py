"""The checks of chapters 5 and 6 that read a run or an evaluation (`check_topk`, `check_bars`,
`check_attention`): the right answer passes, and each plausible wrong one fails with a message that
names it. Every input is hand-built (a few small files, a few small tensors), so nothing is trained."""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tutorials"))

import exercises.ch05  # noqa: E402
import exercises.ch06  # noqa: E402
from sae.autoencoder import SAEConfig, SparseAutoencoder  # noqa: E402
from sae.evaluation.detectors import Detectors  # noqa: E402
from sae.run.files import sae_path  # noqa: E402


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data))


def _sae_metrics(**kw) -> dict:
    return {"l0": 7.6, "fvu": 0.2, "ce_recovered_zero": 0.9, "dead_fraction": 0.0, **kw}


# ----------------------------------------------------------------------------- chapter 5: TopK
@pytest.fixture
def topk_run(tmp_path):
    """A run whose default SAE has L0 7.6 (so k = 8) and a TopK SAE `topk8` with the lower FVU but
    the lower CE recovered."""
    _write(tmp_path / "metrics.json", {"sae": _sae_metrics()})
    SparseAutoencoder(SAEConfig(d_in=4, d_sae=16, arch="topk", k=8)).save(sae_path(tmp_path, "topk8"))
    _write(tmp_path / "topk8_metrics.json", {"sae": _sae_metrics(l0=8.0, fvu=0.1, ce_recovered_zero=0.85)})
    return tmp_path


def test_check_topk_accepts_the_lower_fvu(topk_run, capsys):
    assert exercises.ch05.check_topk("topk", topk_run) is True
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("answer, named", [
    ("relu", "recovers more of the loss"),  # compared CE recovered, not FVU
    ("TopK", 'answer "topk" or "relu"'),
    (True, 'answer "topk" or "relu"'),
])
def test_check_topk_names_a_wrong_answer(topk_run, capsys, answer, named):
    assert exercises.ch05.check_topk(answer, topk_run) is False
    assert named in capsys.readouterr().out


@pytest.mark.parametrize("cfg, named", [
    (SAEConfig(d_in=4, d_sae=16, arch="topk", k=4), "k=4"),  # trained with another k
    (SAEConfig(d_in=4, d_sae=16, arch="relu"), "arch='relu'"),  # forgot sae.arch=topk
])
def test_check_topk_names_the_wrong_sae(topk_run, capsys, cfg, named):
    SparseAutoencoder(cfg).save(sae_path(topk_run, "topk8"))
    os.utime(topk_run / "topk8_metrics.json")  # evaluated after training
    assert exercises.ch05.check_topk("topk", topk_run) is False
    assert named in capsys.readouterr().out


def test_check_topk_names_a_missing_or_stale_evaluation(topk_run, capsys):
    pt = sae_path(topk_run, "topk8")
    os.utime(topk_run / "topk8_metrics.json", (pt.stat().st_atime, pt.stat().st_mtime - 60))
    assert exercises.ch05.check_topk("topk", topk_run) is False
    assert "older than topk8.pt" in capsys.readouterr().out
    (topk_run / "topk8_metrics.json").unlink()
    assert exercises.ch05.check_topk("topk", topk_run) is False
    assert "does not exist" in capsys.readouterr().out


def test_check_topk_leaves_the_placeholder_open(topk_run, capsys):
    assert exercises.ch05.check_topk(None, topk_run) is None
    assert "not done yet" in capsys.readouterr().out


# ----------------------------------------------------------------------------- chapter 6: the bars
def right_count(d, share_bar, recall_bar):
    return int(((d.share >= share_bar) & (d.recall >= recall_bar)).any(dim=1).sum())


WRONG_COUNTS = {  # a plausible wrong count_detectors -> what the message must say
    "different units": (lambda d, s, r: int(((d.share >= s).any(1) & (d.recall >= r).any(1)).sum()),
                        "another the recall bar"),
    "or": (lambda d, s, r: int(((d.share >= s) | (d.recall >= r)).any(1).sum()), "not either one (or)"),
    "strict": (lambda d, s, r: int(((d.share > s) & (d.recall > r)).any(1).sum()), "not >"),
    "pairs": (lambda d, s, r: int(((d.share >= s) & (d.recall >= r)).sum()), "count concepts"),
    "share only": (lambda d, s, r: int((d.share >= s).any(1).sum()), "the recall bar is missing"),
}


@pytest.fixture
def ev():
    g = torch.Generator().manual_seed(0)
    d = [Detectors(torch.rand(5, 20, generator=g), torch.rand(5, 20, generator=g), torch.ones(20, dtype=torch.bool))
         for _ in range(2)]
    return SimpleNamespace(feature_detectors=d[0], neuron_detectors=d[1])


def test_check_bars_accepts_the_reference(ev, capsys):
    assert exercises.ch06.check_bars(right_count, ev) is True
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("mistake", WRONG_COUNTS)
def test_check_bars_names_the_mistake(ev, capsys, mistake):
    wrong, named = WRONG_COUNTS[mistake]
    assert exercises.ch06.check_bars(wrong, ev) is False
    assert named in capsys.readouterr().out


def test_check_bars_leaves_the_placeholder_open(ev):
    assert exercises.ch06.check_bars(lambda d, s, r: None, ev) is None


# ----------------------------------------------------------------------------- chapter 6: attention
@pytest.fixture
def attention_run(tmp_path):
    """attn64 has 3 concepts at AUROC >= 0.9 (one exactly at the bar); each slip gives another count:
    the MLP dictionary 0, the detectors 5, the neurons 1, the probe 4."""
    aurocs = [(0.95, 0.95, 0.95), (0.9, 0.5, 0.95), (0.91, 0.5, 0.95), (0.5, 0.5, 0.95), (0.5, 0.5, 0.5)]
    concepts = {f"c{i}": {"auroc": a, "neuron_auroc": n, "probe_auroc": p} for i, (a, n, p) in enumerate(aurocs)}
    _write(tmp_path / "attn64_metrics.json", {"sae": {"site": "blocks.0.attn.hook_out", "ce_recovered_zero": 0.76},
                                             "concepts": {"detectors": {"features": 5}, "rows": concepts}})
    _write(tmp_path / "metrics.json", {"concepts": {"rows": {c: {"auroc": 0.6} for c in concepts}}})
    return tmp_path


def test_check_attention_accepts_the_count(attention_run, capsys):
    assert exercises.ch06.check_attention(3, attention_run) is True
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("count, named", [
    (0, "the MLP dictionary"),
    (5, "concept detectors"),
    (1, "neuron_auroc"),
    (4, "probe_auroc"),
    ("3", "an int"),
    (2, "is not the number of concepts"),  # no known slip: the message still says what is wrong
])
def test_check_attention_names_the_slip(attention_run, capsys, count, named):
    assert exercises.ch06.check_attention(count, attention_run) is False
    assert named in capsys.readouterr().out


def test_check_attention_names_the_wrong_site_and_a_missing_file(attention_run, capsys):
    path = attention_run / "attn64_metrics.json"
    m = json.loads(path.read_text())
    m["sae"]["site"] = "blocks.0.mlp.hook_post"  # trained without --set sae.site=...
    _write(path, m)
    assert exercises.ch06.check_attention(3, attention_run) is False
    assert "not the attention output" in capsys.readouterr().out
    path.unlink()
    assert exercises.ch06.check_attention(3, attention_run) is False
    assert "does not exist" in capsys.readouterr().out
    assert exercises.ch06.check_attention(None, attention_run) is None
