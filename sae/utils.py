"""Small helpers shared by every stage: atomic writes, device choice, seeding.

Atomic writes matter because every stage writes into `runs/NAME/` and a later run skips a stage
whose output exists: a half-written file left by Ctrl-C must never look like a finished one.
So we write to a temporary file in the same directory and `os.replace` it (atomic on POSIX).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _atomic_write(path: str | os.PathLike, write_fn, mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)  # mkstemp makes 0600 files; give the usual permissions instead
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` (UTF-8) so that readers see the old file or the new one, never half."""
    return _atomic_write(path, lambda f: f.write(text.encode("utf-8")), "wb")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` as indented JSON."""
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """Atomically `torch.save` a checkpoint dict (read it back with `torch.load(..., weights_only=True)`)."""
    return _atomic_write(path, lambda f: torch.save(obj, f), "wb")


def load_checkpoint(path: str | os.PathLike, what: str, device: str | torch.device = "cpu") -> dict:
    """`torch.load(path, weights_only=True)` with a one-line error that names the file when it is
    missing, truncated, corrupt or not a checkpoint dict (`what` says what it should hold)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; it should hold {what}")
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a bad file
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{path} is not a readable file of {what} ({reason}); "
                         "delete it and re-run the stage that writes it") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not {what}; delete it and re-run the stage that writes it")
    return obj


def format_duration(seconds: float) -> str:
    """Seconds as h:mm:ss, for progress lines and ETAs."""
    s = max(int(round(seconds)), 0)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


def resolve_device(device: str = "auto") -> torch.device:
    """`"auto"` picks cuda, then mps, then cpu; anything else is passed to `torch.device`."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'mps'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU: use --device cpu or auto")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that a run is repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
