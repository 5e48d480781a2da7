"""Evaluation: the metrics' formulas, the held-out pass, concept detectors, ground truth and comparisons.

The names chapters use are handed on here (`from sae import evaluation as M`).
"""

from sae.evaluation.formulas import (auroc, ce_recovered, density_summary, explained_variance, fvu, l0, l1,  # noqa: F401
                                     log_density_histogram, mse, nmse)
from sae.evaluation.held_out import Active, HeldOutBatch, first_half_rows, held_out_batches, label_segments  # noqa: F401
from sae.evaluation.detectors import (DETECTOR_FIRE, DETECTOR_RECALL, DETECTOR_SHARE, ConceptHistogram,  # noqa: F401
                                      Detectors, MeanDiffProbe, SegmentPeaks)
from sae.evaluation.evaluator import Evaluation, Evaluator, evaluate_sae  # noqa: F401
