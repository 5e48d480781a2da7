"""How long `reproduce` will take on this machine, from a half-second probe of its matmul rate.

Each stage's *work* is counted from the preset's sizes, in floating-point operations of its
matmuls (a forward pass costs 2 FLOPs per weight per token, training 3 times that):

    lm        3 · F · (LM training tokens)           F: the LM's forward FLOPs per token
    sae       (F + 6 · 2 · d_in · d_sae) · (SAE training tokens)     the buffer's forward + SAE step
    evaluate  (4 · F + 4 · d_in · d_sae) · (evaluation tokens)       four LM passes + the SAE
    steering  F                                       fixed prompts and samples: scales with F only
    tokenizer, dashboard: the BPE's training characters, the dictionary's features

A stage runs at its own fraction of the machine's matmul rate (small matmuls, Python between
them), so each stage's seconds per unit of work is calibrated once, on the default run of a
machine whose rate the same probe measured (`CALIBRATION`). On another machine:

    seconds(stage) = work(stage) / (units per second at calibration) × (calibration rate / this rate)

The Python-bound stages (tokenizer, dashboard) do not scale with the probe exactly, and a GPU runs
at a different fraction of its rate, so read the figure as the order of magnitude it is; `reproduce`
prints it again after each stage, rescaled by how the finished stages compared with it.
"""

from __future__ import annotations

import time

import torch

from sae.run.config import get_preset

# The default (`tiny`) run, stage by stage, on the machine that calibrated this: seconds, and the
# probe's rate there (see docs/results.md's wall-time table).
CALIBRATION = {"gflops": 33.0, "preset": "tiny",
               "seconds": {"tokenizer": 9.1, "lm": 1196, "sae": 629, "evaluate": 86, "dashboard": 41, "steering": 188}}


def matmul_gflops(device: str | torch.device = "cpu", seconds: float = 0.5) -> float:
    """The float32 matmul rate of `device` (1024², torch's threads), measured for about `seconds`."""
    a = torch.randn(1024, 1024, device=device)
    (a @ a).sum().item()  # warm up
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        b = a @ a
        n += 1
    b.sum().item()  # wait for an asynchronous device
    return n * 2 * 1024**3 / (time.perf_counter() - t0) / 1e9


def stage_work(p) -> dict[str, float]:
    """Each stage's work for preset `p` (see the module docstring)."""
    g = p.gpt
    forward = 2 * (g.n_layer * (4 * g.d_model**2 + 2 * g.d_model * g.d_mlp + g.n_ctx * g.d_model)
                   + g.d_model * g.vocab_size)
    d_in = g.d_mlp if "mlp" in p.sae.site else g.d_model
    sae = 2 * d_in * p.sae.d_sae
    return {"tokenizer": p.tokenizer_chars, "lm": 3 * forward * p.train_lm.n_steps * p.train_lm.batch_size * g.n_ctx,
            "sae": (forward + 6 * sae) * p.train_sae.n_steps * p.sae_batch_size,
            "evaluate": (4 * forward + 2 * sae) * p.eval_tokens, "dashboard": p.sae.d_sae, "steering": forward}


def estimate_seconds(p, gflops: float, stages) -> dict[str, float]:
    """Seconds per stage (of `stages`) for preset `p` on a machine whose probe gives `gflops`."""
    ref = stage_work(get_preset(CALIBRATION["preset"]))
    work = stage_work(p)
    slower = CALIBRATION["gflops"] / max(gflops, 1e-9)
    return {s: work[s] / ref[s] * CALIBRATION["seconds"][s] * slower for s in stages if s in work}
