"""A run's configuration: `Preset` (everything one reproduction needs), the presets, and fields by dotted name.

A `Preset` nests the configs it builds under their own names (`gpt`, `train_lm`, `sae`,
`train_sae`) beside the run-level settings. `with_overrides` (`--set` on the command line) sets
any field by its dotted name, e.g. `train_sae.lr=1e-3`, except those filled in at build time:
`sae.d_in` and `sae.d_out` (the widths at `sae.site` and `sae.target_site`) and the trainers'
`seed`/`device` (the run's). Step counts are absolute: with `train_sae.n_steps`, set
`dead_window` and `resample_steps` too.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from sae.autoencoder import SAEConfig
from sae.gpt import GPTConfig
from sae.train_lm import TrainLMConfig, lm_schedule
from sae.train_sae import TrainSAEConfig, sae_schedule
from sae.utils import atomic_write_json


@dataclass(frozen=True)
class Preset:
    """Everything one reproduction needs. Presets are just instances; change fields with `with_overrides`."""

    name: str
    description: str
    seed: int = 0  # seeds every stage: the text, the tokenizer, both models, both trainers
    device: str = "auto"  # "auto" picks cuda, then mps, then cpu
    corpus: str = "toy"  # "toy" (labelled), "pystdlib", or a file/directory of text (unlabelled)
    tokenizer_chars: int = 5_000_000  # characters of training text the BPE is learned from (size: gpt.vocab_size)
    lm_train_tokens: int = 8_000_000  # size of the generated training stream (the LM samples windows from it)
    lm_val_tokens: int = 200_000  # validation stream of the LM
    judge_samples: int = 10  # sampled continuations per concept for the LM's on-concept rate
    sae_batch_size: int = 4096  # activation rows per SAE step (tokens = train_sae.n_steps × this)
    buffer_tokens: int = 2**17  # rows in the shuffling activation buffer (2^17 × 512 × 4 B = 256 MiB)
    eval_tokens: int = 200_000  # held-out tokens for the evaluation and the feature statistics
    # Towards Monosemanticity's shape: 1 layer, d_model 128, d_mlp 512; vocab_size = BPE size
    gpt: GPTConfig = field(default_factory=GPTConfig)
    train_lm: TrainLMConfig = field(default_factory=lambda: lm_schedule(2000, lr=3e-3, warmup=50))
    # the SAE on the MLP neurons of the one layer, twice as many features as neurons
    sae: SAEConfig = field(default_factory=lambda: SAEConfig(d_in=0, d_sae=1024, site="blocks.0.mlp.hook_post"))
    train_sae: TrainSAEConfig = field(default_factory=lambda: sae_schedule(732, lr=3e-3, l1_coeff=3.0))
    # the circuits stage: a skip transcoder per MLP (TopK at the SAE's L0, `train_sae`'s schedule) and
    # attribution graphs through it, checked against the world on this many held-out prompts of each kind
    circuits: bool = True
    circuit_prompts: int = 20

    def __post_init__(self):
        if self.circuit_prompts < 1:
            raise ValueError(f"circuit_prompts must be >= 1 (held-out prompts per circuit check), got {self.circuit_prompts}")

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        return replace(self.gpt, vocab_size=vocab_size)

    def sae_config(self, d_in: int, d_out: int = 0) -> SAEConfig:
        """The SAE's config with the widths at its sites filled in (d_out: a transcoder's target's)."""
        return replace(self.sae, d_in=d_in, d_out=d_out)

    def transcoder(self, layer: int, k: int) -> Preset:
        """This preset with its SAE swapped for the circuits stage's skip transcoder of MLP `layer`: TopK
        at `k` (the SAE's held-out L0, so the two compare at equal L0), as many features, the same trainer."""
        return replace(self, sae=replace(self.sae, arch="topk", k=k, skip=True, site=f"blocks.{layer}.mlp.hook_in",
                                         target_site=f"blocks.{layer}.mlp.hook_out"))

    def train_lm_config(self) -> TrainLMConfig:
        return replace(self.train_lm, seed=self.seed, device=self.device)

    def train_sae_config(self) -> TrainSAEConfig:
        return replace(self.train_sae, seed=self.seed)


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        "smoke", "seconds; for tests", tokenizer_chars=300_000, lm_train_tokens=300_000, lm_val_tokens=20_000,
        judge_samples=2, sae_batch_size=512, buffer_tokens=8192, eval_tokens=8192,
        gpt=GPTConfig(d_model=64, n_head=2, d_mlp=256, n_ctx=64, vocab_size=512),
        train_lm=lm_schedule(60, batch_size=16, lr=3e-3, warmup=10),
        sae=SAEConfig(d_in=0, d_sae=256, site="blocks.0.mlp.hook_post"),
        train_sae=sae_schedule(195, lr=3e-3, l1_coeff=3.0), circuit_prompts=4),
    "tiny": Preset("tiny", "the default: the whole reproduction on a 2-core CPU"),
    "base": Preset(
        "base", "larger model and dictionary, for a GPU", tokenizer_chars=20_000_000,
        lm_train_tokens=50_000_000, lm_val_tokens=500_000, buffer_tokens=2**19, eval_tokens=1_000_000,
        gpt=GPTConfig(d_model=256, n_head=8, d_mlp=1024, vocab_size=4096),
        train_lm=lm_schedule(5000, batch_size=64, lr=2e-3, warmup=200),
        sae=SAEConfig(d_in=0, d_sae=16384, site="blocks.0.mlp.hook_post"),
        # λ: an estimate from a 1/8-scale CPU proxy (benchmarks/base_proxy.md has the measurements);
        # `python -m benchmarks.gpu_check` checks it on a GPU
        train_sae=sae_schedule(24414, lr=3e-3, l1_coeff=0.8)),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


# ----------------------------------------------------------------------------- fields by name
# filled in when the thing is built (see the module docstring): setting them would change nothing
_DERIVED = {"sae.d_in": "the width of the activations at sae.site",
            "sae.d_out": "the width of the activations at sae.target_site",
            "train_lm.seed": "the run's seed (set seed=...)", "train_lm.device": "the run's device (set device=...)",
            "train_sae.seed": "the run's seed (set seed=...)"}


def _all_fields(config) -> dict[str, object]:
    """Every field of a config by dotted name, nested configs' fields included."""
    out: dict[str, object] = {}
    for f in fields(config):
        v = getattr(config, f.name)
        out.update({f"{f.name}.{k}": w for k, w in _all_fields(v).items()} if is_dataclass(v) else {f.name: v})
    return out


def preset_fields(p: Preset) -> dict[str, object]:
    """Every settable field by dotted name, with its value: {"seed": 0, ..., "train_sae.lr": 0.003, ...}
    (all but the name, the description, and the fields filled in at build time)."""
    return {k: v for k, v in _all_fields(p).items() if k not in _DERIVED and k not in ("name", "description")}


def _coerce(value, hint, name: str):
    """`value` (from JSON, or text from the command line) as type `hint`, or a ValueError naming `name`."""
    if typing.get_origin(hint) is tuple:
        items = [v for v in value.replace("/", ",").split(",") if v.strip()] if isinstance(value, str) else value
        if isinstance(items, (list, tuple)):
            return tuple(_coerce(v, typing.get_args(hint)[0], name) for v in items)
    elif hint is bool and str(value).lower() in ("true", "false", "1", "0"):
        return str(value).lower() in ("true", "1")
    elif hint in (int, float) and not isinstance(value, bool):
        try:
            number = float(value)
            if hint is float or number.is_integer():
                return hint(number)
        except (TypeError, ValueError):
            pass
    elif hint is str and isinstance(value, str):
        return value
    raise ValueError(f"{name} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def with_overrides(p: Preset, settings: list[str]) -> Preset:
    """`p` with fields changed by `"dotted.name=value"` settings (`--set` on the command line)."""
    valid = preset_fields(p)
    for s in settings:
        key, sep, text = (part.strip() for part in s.partition("="))
        if not sep:
            raise ValueError(f"--set takes field=value, got {s!r} (e.g. --set train_sae.lr=1e-3)")
        if key in _DERIVED:
            raise ValueError(f"{key} cannot be set: it is {_DERIVED[key]}")
        if key not in valid:
            raise ValueError(f"unknown field {key!r}; valid fields: {', '.join(valid)}")
        head, _, sub = key.partition(".")
        if sub:  # the config's own checks (__post_init__) run in `replace`
            inner = getattr(p, head)
            p = replace(p, **{head: replace(inner, **{sub: _coerce(text, typing.get_type_hints(type(inner))[sub], key)})})
        else:
            p = replace(p, **{key: _coerce(text, typing.get_type_hints(Preset)[key], key)})
    return p


def _from_dict(cls, d, where: str, key: str = ""):
    """A `cls` from its JSON object `d`: the Preset (`key` empty) or, recursively, the config nested
    at the dotted name `key`, its own checks (`__post_init__`) included."""
    hints = typing.get_type_hints(cls)
    names = ", ".join(hints)
    this = f"{where}: {key}" if key else f"{where} is not a configuration of this version of sae"
    if not isinstance(d, dict):
        raise ValueError(f"{this} must be an object with fields of {cls.__name__}: {names}, got {d!r}")
    unknown = ", ".join(repr(k) for k in d if k not in hints)
    if unknown:
        raise ValueError(f"{this} has unknown field(s) {unknown} (fields of {cls.__name__}: {names})" if key
                         else f"{this}: unknown key(s) {unknown} (valid keys: {names})")
    missing = ", ".join(repr(k) for k in ("name", "description") if cls is Preset and k not in d)
    if missing:  # a nested config's constructor names its own missing fields
        raise ValueError(f"{this}: missing key(s) {missing}")
    kw = {}
    for k, v in d.items():
        name = f"{key}.{k}" if key else k
        kw[k] = (_from_dict(hints[k], v, where, name) if is_dataclass(hints[k])
                 else _coerce(v, hints[k], f"{where}: {name}"))
    try:
        return cls(**kw)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{this}: {e}") from None


def preset_of_run(run: str | Path) -> Preset:
    """The preset a run directory was made with: its `config.json`, read as the inverse of
    `asdict(preset)` (JSON turns tuples into lists), with one-line errors naming the key."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run} is not a run directory (no config.json); make one with "
                                f"`python -m sae train-lm --out {run}`")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); fix it, or delete the run directory to start over") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path} is not a configuration of this version of sae (a JSON object with the keys "
                         f"{', '.join(typing.get_type_hints(Preset))}); delete the run directory to start over")
    try:
        return _from_dict(Preset, d, str(path))
    except ValueError as e:
        raise ValueError(f"{e}; fix it, or delete the run directory to start over") from None


def check_config(p: Preset, run: Path) -> None:
    """Write `run/config.json`, or refuse if the directory holds a run of another configuration."""
    path = run / "config.json"
    if not path.exists():
        atomic_write_json(path, asdict(p))
        return
    old = preset_of_run(run)
    if old != p:
        # every field, also those --set cannot reach (name, description, sae.d_in, ...): a
        # hand-edited config.json may differ only there, and the message must say where
        a, b = _all_fields(old), _all_fields(p)
        diff = {("preset" if k == "name" else k): (a.get(k), v) for k, v in b.items() if a.get(k) != v}
        raise ValueError(f"{run} holds a run with a different configuration (field: (old, new) {diff}); "
                         f"use another --out directory, or delete {run} to start over")


