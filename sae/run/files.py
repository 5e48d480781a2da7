"""A run directory, `runs/NAME/`: its text, and what it holds.

The one module that knows the layout (the library modules below take objects; the stages in
`sae.run.pipeline` decide what to compute): `config.json` (the run's `Preset`, `sae.run.config`),
`tokenizer.json` and `lm.pt` (`load_run`), `NAME.pt` (`load_sae`; the default is `sae.pt`),
`feature_stats.pt` (`run_feature_stats`, written by the evaluation pass), and the JSON files.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from sae.autoencoder import SparseAutoencoder
from sae.gpt import GPT
from sae.interpret import FeatureStats, feature_stats
from sae.run import analyses
from sae.run.config import Preset, preset_of_run
from sae.tokenizer import Tokenizer
from sae.utils import read_json, weights_fingerprint
from sae.world.corpus import text_files, text_tokens, toy_text, toy_tokens


def training_text(p: Preset) -> str:
    """The text the run's tokenizer is trained on (`tokenizer_chars` characters)."""
    if p.corpus == "toy":
        return toy_text(p.tokenizer_chars, seed=p.seed, split="train")
    return "\n\n".join(t for _, t in text_files(p.corpus, "train"))[: p.tokenizer_chars]


def corpus_tokens(p: Preset, tok: Tokenizer, split: str, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """The run's token stream of one split: `(tokens, labels)` (labels -1 for real text)."""
    if p.corpus == "toy":
        return toy_tokens(tok, n_tokens, seed=p.seed, split=split)
    return text_tokens(tok, p.corpus, split, n_tokens)


def load_run(run: str | Path, device: str = "cpu") -> tuple[Tokenizer, GPT]:
    """The tokenizer and the language model of a run directory."""
    run = Path(run)
    if not (run / "lm.pt").exists():
        raise FileNotFoundError(f"no trained model in {run} (lm.pt missing); run `python -m sae train-lm --out {run}` first")
    return Tokenizer.load(run / "tokenizer.json"), GPT.load(run / "lm.pt", device=device)


def sae_path(run: str | Path, name: str = "sae") -> Path:
    """Where the run's SAE called `name` lives: `run/NAME.pt`."""
    return Path(run) / f"{name}.pt"


def load_sae(run: str | Path, name: str = "sae", device: str = "cpu") -> SparseAutoencoder:
    """The run's SAE `name` (default: the one `reproduce` trains), with a clear error if there is none."""
    path = sae_path(run, name)
    if not path.exists():
        hint = (f"run `python -m sae reproduce --out {run}`" if name == "sae"
                else f"train one with `python -m sae train-sae --run {run} --name {name}`")
        raise FileNotFoundError(f"no SAE {name!r} in {run} ({path.name} missing); {hint}")
    return SparseAutoencoder.load(path, device=device)


def stats_path(run: str | Path, name: str = "sae") -> Path:
    """The feature statistics of SAE `name`: `feature_stats.pt` (or `NAME_feature_stats.pt`)."""
    return Path(run) / ("feature_stats.pt" if name == "sae" else f"{name}_feature_stats.pt")


def run_feature_stats(run: str | Path, name: str = "sae", device: str = "cpu") -> FeatureStats:
    """The statistics of the run's SAE on its held-out text: the file the evaluation pass wrote,
    or a fresh pass if it is missing or its `sae_fingerprint` is another SAE's. A file from before
    fingerprints is trusted when it is not older than the SAE's file."""
    run = Path(run)
    path, sae_file = stats_path(run, name), sae_path(run, name)
    sae = load_sae(run, name, device)
    if path.exists():
        stats = FeatureStats.load(path)
        if (stats.sae_fingerprint == weights_fingerprint(sae) if stats.sae_fingerprint
                else path.stat().st_mtime >= sae_file.stat().st_mtime):
            return stats
    p = preset_of_run(run)
    tok, model = load_run(run, device)
    tokens, labels = corpus_tokens(p, tok, "val", p.eval_tokens + model.cfg.n_ctx)
    stats = feature_stats(model, sae, tokens, labels if p.corpus == "toy" else None,
                          n_tokens=p.eval_tokens, seed=p.seed)
    stats.save(path)
    return stats


# ----------------------------------------------------------------------------- the run's JSON files
# The JSON files the stages write (besides config.json), all read back by later stages or the
# report; `reproduce` reads every one of them.
RUN_JSON_FILES = ("stages.json", "metrics.json", "lm_history.json", "sae_history.json", "steering.json", "steer_eval.json",
                  "tc_metrics.json", "circuits.json")


def json_fix(run: str | Path, name: str) -> str:
    """What to do about a broken JSON file `name` of a run: delete it and re-run what writes it."""
    again = "re-run the `python -m sae reproduce` command that made the run (finished stages are skipped)"
    if name == "metrics.json":
        return f"delete it and re-run `python -m sae evaluate --run {run}`"
    if name.endswith("_metrics.json"):
        return f"delete it and re-run `python -m sae evaluate --run {run} --sae {name[:-len('_metrics.json')]}`"
    if name.endswith("_history.json") and name not in ("lm_history.json", "sae_history.json"):
        sae = name[:-len("_history.json")]
        return f"delete it and {sae}.pt, and re-run `python -m sae train-sae --run {run} --name {sae}`"
    if name == "stages.json":
        return f"delete it (it only summarises the stages) and {again}"
    return f"delete it and {again}"


def read_run_json(run: str | Path, name: str, missing: dict | list | None = None) -> dict | list:
    """The run's JSON file `name` (a list for histories, else an object), or a one-line error
    naming the file and how to rebuild it; `missing`, if given, stands for an absent file."""
    path = Path(run) / name
    if missing is not None and not path.exists():
        return missing
    return read_json(path, list if name.endswith("_history.json") else dict, json_fix(run, name))


def check_run_dir(run: str | Path) -> Path:
    """`run` as a Path, or a one-line error when it does not exist or is a file: what a command's
    `--run` must name is a folder that `reproduce` (or `train-lm`) wrote."""
    run = Path(run)
    if not run.exists():
        raise FileNotFoundError(f"{run} does not exist: give a run directory that `python -m sae reproduce` wrote "
                                "(e.g. runs/tiny), or make one with `python -m sae reproduce --out DIR`")
    if not run.is_dir():
        raise ValueError(f"{run} is a file, not a run directory: give the folder that `python -m sae reproduce` "
                         "wrote (e.g. runs/tiny)")
    return run


def check_run_files(run: str | Path, names=RUN_JSON_FILES) -> None:
    """Read every JSON file in `names` that the run has (config.json too, if named), so that one
    truncated, hand-broken or of another version of sae stops a command early, in one line."""
    for name in names:
        if name == "config.json":
            preset_of_run(run)
        elif (Path(run) / name).exists():
            stage = next((st for st, f in analyses.FILES.items() if f == name), None)
            d = read_run_json(run, name)
            if stage is not None:
                analyses.from_json(d, stage, str(Path(run) / name), json_fix(run, name))


class Run:
    """A run directory opened once: its preset, tokenizer, model, SAE `name`, feature statistics and
    analyses' results, each loaded when first asked for and kept. What the stages, the report and
    the commands receive, instead of a path that every helper reopens."""

    def __init__(self, path: str | Path, device: str = "cpu", name: str = "sae", log=None):
        self.path, self.device, self.name, self.log = Path(path), str(device), name, log
        self._results: dict[str, dict] = {}

    @cached_property
    def preset(self) -> Preset:
        return preset_of_run(self.path)

    @cached_property
    def _lm(self) -> tuple[Tokenizer, GPT]:
        return load_run(self.path, self.device)

    @property
    def tok(self) -> Tokenizer:
        return self._lm[0]

    @property
    def model(self) -> GPT:
        return self._lm[1]

    @cached_property
    def sae(self) -> SparseAutoencoder:
        return load_sae(self.path, self.name, self.device)

    @cached_property
    def stats(self) -> FeatureStats:
        return run_feature_stats(self.path, self.name, self.device)

    def named(self, name: str) -> Run:
        """The same run directory opened on another SAE or transcoder (`NAME.pt`, `NAME_metrics.json`)."""
        return Run(self.path, self.device, name, self.log)

    def file_of(self, stage: str) -> str:
        """The file a stage's analyses write: `metrics.json` (`NAME_metrics.json` for another SAE), `steering.json`."""
        name = analyses.FILES[stage]
        return f"{self.name}_{name}" if stage == "evaluate" and self.name != "sae" else name

    def results(self, stage: str) -> dict:
        """{NAME: Result} of the stage's analyses ({} before the stage has run)."""
        if stage not in self._results:
            name = self.file_of(stage)
            d = read_run_json(self.path, name, missing={})
            self._results[stage] = analyses.from_json(d, stage, str(self.path / name), json_fix(self.path, name)) if d else {}
        return self._results[stage]

    def result(self, name: str):
        """Analysis `name`'s result, or a one-line error naming the stage that makes it."""
        for a in analyses.ANALYSES:
            if a.module.NAME == name:
                r = self.results(a.stage).get(name)
                if r is None:
                    raise FileNotFoundError(f"{self.path} has no {name!r} results ({self.file_of(a.stage)}); run "
                                            f"`python -m sae reproduce --out {self.path}` (finished stages are skipped)")
                return r
        raise ValueError(f"unknown analysis {name!r}; analyses: {', '.join(a.module.NAME for a in analyses.ANALYSES)}")
