"""Steering: the clamp, what fluent means, and the two demonstrations (Golden Gate, unsafe code)."""
