"""sae: dictionary learning for language-model interpretability, small enough to read.

Pipeline (one module per box; see the README's diagram): corpus -> tokenizer -> gpt -> buffer ->
autoencoder -> metrics -> interpret -> steering. `sae.run` knows the run directory and its
presets; `sae.pipeline` runs the stages; `sae.cli` is `python -m sae`.
"""

__version__ = "0.1.0"
