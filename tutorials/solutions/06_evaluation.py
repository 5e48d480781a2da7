"""Answers to chapter 6's exercises (run from anywhere; `SAE_FAST=1` uses the smoke run)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

import torch.nn.functional as F  # noqa: E402

from common import PRESET, RUN  # noqa: E402
import exercises.ch06  # noqa: E402
from sae import evaluation as M  # noqa: E402
from sae.world.corpus import CONCEPTS  # noqa: E402
from sae.run import corpus_tokens, load_run, load_sae, reproduce, sae_path, train_sae_on_run, with_overrides, write_evaluation  # noqa: E402


# Exercise: CE loss recovered, from the logits (the logits at t predict the token at t + 1)
def ce_loss_recovered(tokens, clean_logits, sae_logits, ablated_logits):
    def ce(logits):  # mean next-token cross-entropy in nats
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()).item()

    clean, spliced, ablated = ce(clean_logits), ce(sae_logits), ce(ablated_logits)
    return clean, spliced, ablated, (ablated - spliced) / (ablated - clean)


assert exercises.ch06.CE_RECOVERED.check(ce_loss_recovered)

reproduce(PRESET, RUN, until="evaluate")
tok, model = load_run(RUN)
tokens, labels = corpus_tokens(PRESET, tok, "val", PRESET.eval_tokens + model.cfg.n_ctx)
ev = M.evaluate_sae(model, load_sae(RUN), tokens, labels, n_concepts=len(CONCEPTS), n_tokens=PRESET.eval_tokens)


# Exercise 1: a concept counts if one unit passes both bars for it
def count_detectors(d: M.Detectors, share_bar: float, recall_bar: float) -> int:
    passes = (d.share >= share_bar) & (d.recall >= recall_bar)  # (concepts, units)
    return int(passes.any(dim=1).sum())


assert exercises.ch06.check_bars(count_detectors, ev)

# Exercise 2: the attention-output dictionary (in fast mode a smoke-sized one: the code path, not the numbers)
steps = 244 if PRESET.name == "tiny" else PRESET.train_sae.n_steps
p = with_overrides(PRESET, ["sae.site=blocks.0.attn.hook_out", "sae.d_sae=64", f"train_sae.n_steps={steps}"])
if not sae_path(RUN, "attn64").exists():
    train_sae_on_run(p, RUN, "attn64")
metrics = write_evaluation(p, RUN, "attn64")
attention_count = sum(c["auroc"] >= 0.9 for c in metrics["concepts"]["rows"].values())
assert exercises.ch06.check_attention(attention_count, RUN)
