"""The toy world: its concepts (`concepts`, `code`), the labelled corpus built from them, and the synthetic task (`toy`)."""
