"""How long `reproduce` will take on this machine, from a half-second probe of its matmul rate.

Each stage's *work* is counted from the preset's sizes, in floating-point operations of its
matmuls (a forward pass costs 2 FLOPs per weight per token, training 3 times that):

    lm        3 · F · (LM training tokens)           F: the LM's forward FLOPs per token
    sae       (F + 6 · 2 · d_in · d_sae) · (SAE training tokens)     the buffer's forward + SAE step
    evaluate  (4 · F + 4 · d_in · d_sae) · (evaluation tokens)       four LM passes + the SAE
    steering, steer_eval  F                           fixed prompts and samples: scale with F only
    circuits  what `sae` and `evaluate` cost, with the transcoder's d_model inputs, per layer (the
              graphs: fixed prompts, mostly Python; 0 with circuits=false)
    tokenizer, dashboard: the BPE's training characters, the dictionary's features

A stage also has costs that do not grow with its work (Python between small matmuls, sampling
token by token, writing files): on the `smoke` preset they are nearly all of it. So each stage is a
line through two runs timed on one machine (`CALIBRATION`: `smoke` and the default `tiny`), in
seconds at the rate the probe measured during the `tiny` run, r₁:

    seconds(stage) = max(0, t₀ + (t₁ − t₀) · (work − w₀) / (w₁ − w₀)) × (r₁ / this machine's rate)

with w₀, w₁ the two runs' work and t₀, t₁ their seconds (the `smoke` run's rescaled to r₁).

The probe is the rate of a 1024 × 1024 float32 matmul, on the run's device with torch's threads.
A busy machine and a GPU run at other fractions of their rate, so read the figure as the order of
magnitude it is; `reproduce` prints it again after each stage, rescaled by how the finished stages
compared with it. `benchmarks/bench_estimate.py` sets the estimate beside a run's actual seconds.
"""

from __future__ import annotations

import time

import torch

from sae.run.config import get_preset

# Two runs on the machine that calibrated this, stage by stage: seconds, and the probe's rate
# during each (`python -m benchmarks.bench_estimate --preset smoke`, then `--preset tiny`;
# steer_eval and circuits, added later, timed on other machines and rescaled to these rates).
CALIBRATION = {
    "smoke": {"gflops": 259.0, "seconds": {"tokenizer": 0.21, "lm": 2.92, "sae": 1.2, "evaluate": 1.13,
                                           "dashboard": 0.81, "steering": 17.65, "steer_eval": 7.2,
                                           "circuits": 5.5}},
    "tiny": {"gflops": 337.0, "seconds": {"tokenizer": 1.7, "lm": 178.0, "sae": 78.7, "evaluate": 11.5,
                                          "dashboard": 7.7, "steering": 51.3, "steer_eval": 87.0,
                                          "circuits": 83.0}},
}


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
    d_in = g.d_mlp if p.sae.site.endswith(("mlp.hook_pre", "mlp.hook_post")) else g.d_model  # hook_in/out: d_model
    sae, tc = 2 * d_in * p.sae.d_sae, 2 * g.d_model * p.sae.d_sae
    circuits = g.n_layer * ((forward + 6 * tc) * p.train_sae.n_steps * p.sae_batch_size + (4 * forward + 2 * tc) * p.eval_tokens)
    return {"tokenizer": p.tokenizer_chars, "lm": 3 * forward * p.train_lm.n_steps * p.train_lm.batch_size * g.n_ctx,
            "sae": (forward + 6 * sae) * p.train_sae.n_steps * p.sae_batch_size,
            "evaluate": (4 * forward + 2 * sae) * p.eval_tokens, "dashboard": p.sae.d_sae, "steering": forward,
            "steer_eval": forward, "circuits": circuits if p.circuits else 0}


def estimate_seconds(p, gflops: float, stages) -> dict[str, float]:
    """Seconds per stage (of `stages`) for preset `p` on a machine whose probe gives `gflops`."""
    rate = CALIBRATION["tiny"]["gflops"]
    (w0, t0), (w1, t1) = [(stage_work(get_preset(name)), {s: v * c["gflops"] / rate for s, v in c["seconds"].items()})
                          for name, c in CALIBRATION.items()]
    work = stage_work(p)
    return {s: max(0.0, t0[s] + (t1[s] - t0[s]) * (work[s] - w0[s]) / (w1[s] - w0[s])) * rate / max(gflops, 1e-9)
            for s in stages if s in work}
