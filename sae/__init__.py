"""sae: dictionary learning for language-model interpretability, small enough to read.

The library is flat (tokenizer -> gpt -> buffer -> autoencoder -> train_sae -> interpret); around
it, `sae.world` (the toy world and its corpus), `sae.evaluation` (metrics, the held-out pass, the
evaluation analyses), `sae.steering` (the clamp and the steering demonstrations) and `sae.run`
(presets, the run directory, the stages, the report; `sae.run.cli` is `python -m sae`).
"""

__version__ = "0.1.0"
