"""The analyses a run makes, in order: the one list that the pipeline, the report, the seed study and
the command line iterate over.

An analysis is one module with
    NAME                       its key in its run file
    Result                     a dataclass: what it measured (saved with `asdict`)
    run(x) -> Result | None    x: the held-out pass (`sae.evaluation.evaluate.Pass`) for an
                               "evaluate" analysis, the run (`sae.run.files.Run`) for the others;
                               None where it does not apply (concepts on unlabelled text)
    section(result, page)      its part of the report (Markdown lines; `page.feature(f)` links a
                               feature, `page.figure(name)` shows a figure of the run)
    headline(result)           its headline numbers (`sae.markdown.Headline`): the report's summary
                               table and the seed study's columns
    TARGETS (optional)         {claim: test on {headline key: value}}, which every seed must meet
To add one, write the module and add a line below.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import NamedTuple

from sae import circuit_checks
from sae.evaluation import concepts, ground_truth, reconstruction
from sae.steering import benchmark, golden_gate, unsafe_code


class Analysis(NamedTuple):
    module: object
    stage: str  # "evaluate": computed from the held-out pass into metrics.json; the others (FILES): from the run


ANALYSES = [
    Analysis(reconstruction, "evaluate"),
    Analysis(concepts, "evaluate"),
    Analysis(ground_truth, "evaluate"),
    Analysis(golden_gate, "steering"),
    Analysis(unsafe_code, "steering"),
    Analysis(benchmark, "steer_eval"),
    Analysis(circuit_checks, "circuits"),
]

FILES = {"evaluate": "metrics.json", "steering": "steering.json", "steer_eval": "steer_eval.json",
         "circuits": "circuits.json"}
VERSION = 2  # of the files' layout: one key an analysis (a file without it is another version's)


def of_stage(stage: str) -> list:
    return [a.module for a in ANALYSES if a.stage == stage]


def to_json(results: dict) -> dict:
    """A stage's file: {"version": VERSION, NAME: asdict(result), ...}."""
    return {"version": VERSION, **{name: asdict(r) for name, r in results.items()}}


def from_json(d: dict, stage: str, where: str, fix: str) -> dict:
    """{NAME: Result} of the stage's analyses in the file's object `d`, or a one-line error when another
    version of sae wrote it."""
    if d.get("version") != VERSION:
        raise ValueError(f"{where} was written by another version of sae; {fix}")
    out = {}
    for a in of_stage(stage):
        if a.NAME in d:
            try:
                out[a.NAME] = a.Result(**d[a.NAME])
            except TypeError:
                raise ValueError(f"{where} was written by another version of sae ({a.NAME!r} differs); {fix}") from None
    return out
