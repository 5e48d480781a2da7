"""Steering: the clamp, what fluent means, and the two demonstrations (Golden Gate, unsafe code).

The names chapters use are handed on here (`from sae.steering import clamp_features, ...`).
"""

from sae.steering.clamp import add_direction, clamp_features  # noqa: F401
from sae.steering.fluency import FLUENT_CE, TEMPERATURE  # noqa: F401
from sae.steering.golden_gate import golden_gate_demo, topic_sweep  # noqa: F401
from sae.steering.unsafe_code import risk_cuts, unsafe_code_demo, unsafe_context_sensitivity  # noqa: F401
