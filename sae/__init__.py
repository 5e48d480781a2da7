"""sae: dictionary learning for language-model interpretability, small enough to read.

Pipeline (one module per box, see DESIGN.md in the README):
corpus -> tokenizer -> gpt -> buffer -> autoencoder -> metrics -> interpret -> steering.
"""

__version__ = "0.1.0"
