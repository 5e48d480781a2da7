"""Helpers every stage shares: atomic writes, checked reads, output-path checks, devices, seeding.

Atomic writes matter because every stage writes into `runs/NAME/` and a later run skips a stage
whose output exists: a half-written file left by Ctrl-C must never look like a finished one.
So we write to a temporary file in the same directory and `os.replace` it (atomic on POSIX).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch


def _atomic_write(path: str | os.PathLike, write_fn, mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _naming(e, path) from None
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)  # mkstemp makes 0600 files; give the usual permissions instead
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None:  # e.g. a full disk
            raise _naming(e, path) from None
        raise
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (`.NAME.XXXXXXXX.tmp`, anywhere under `folder`) that an atomic
    write leaves when its process is killed before the rename (SIGKILL, a power cut: nothing runs
    to clean up). Call it only while no other process writes into `folder` (under its run lock)."""
    stale = [p for p in Path(folder).rglob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _naming(e: OSError, path: Path) -> OSError:
    """`e` naming the file being written, not its temporary file (or no file, as on a full disk)."""
    return type(e)(e.errno, e.strerror, str(path))


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
        # torch's first sentence says what is wrong; the rest is advice for torch developers
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:200]
        raise ValueError(f"{path} is not a readable file of {what} ({reason}); "
                         "delete it and re-run the stage that writes it") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not {what}; delete it and re-run the stage that writes it")
    return obj


def read_json(path: str | os.PathLike, kind: type, fix: str) -> Any:
    """The JSON value in `path`, which must be a `kind` (dict or list), or a one-line ValueError
    naming the file and `fix` (what to do about it) when it is truncated, corrupt or of the wrong
    shape (cut off by a full disk, edited by hand), not a traceback deep inside some stage."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is truncated or not valid JSON ({e}); {fix}") from None
    if not isinstance(obj, kind):
        json_name = {dict: "object", list: "list"}
        raise ValueError(f"{path} holds a JSON {json_name.get(type(obj), type(obj).__name__)}, not the "
                         f"{json_name.get(kind, kind.__name__)} it should; {fix}")
    return obj


def check_output_dir(path: str | os.PathLike) -> Path:
    """Raise a one-line ValueError unless `path` is a writable directory or can be made one.

    Call it before the work, not after minutes of training. The nearest existing ancestor decides:
    it must be a directory (not a file that `path` would lie under) that we may write into."""
    return _check_writable_dir(Path(path), f"cannot write into {path}", "it")


def check_output_file(path: str | os.PathLike) -> Path:
    """Raise a one-line ValueError unless the file `path` can be written (see `check_output_dir`).
    An existing file is fine (atomic writes replace it); a directory of that name is not."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a directory; give another output directory or move it away")
    _check_writable_dir(path.parent, f"cannot write {path}", str(path.parent))
    return path


def _check_writable_dir(path: Path, problem: str, subject: str) -> Path:
    """`check_output_dir`'s check; the message starts with `problem`, and `subject` names `path` in it."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = f"{subject} is a file" if existing == path else f"{subject} lies under {existing}, which is a file"
        raise ValueError(f"{problem}: {where}, not a directory; give another output directory or move the file away")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{problem}: you have no write permission on {existing}; give another output directory "
                         "or change its permissions")
    return path


def describe_os_error(e: OSError) -> str:
    """An OSError (permission denied, not a directory, disk full, ...) as one line naming the path
    and what to do, for the command line."""
    reason = e.strerror or (str(e).strip().splitlines() or [type(e).__name__])[0]
    where = f"{e.filename}: " if e.filename else ""
    if e.errno == errno.ENOSPC:
        fix = "free some space and re-run the same command (finished stages are kept)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "you may not write there: change its permissions, or write somewhere else (e.g. another --out)"
    elif e.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
        fix = "a file stands where a directory should be, or the reverse: give another path or move it away"
    else:
        fix = "check the path and the disk"
    return f"{where}{reason}; {fix}"


def weights_fingerprint(module: torch.nn.Module, prefix: bytes = b"") -> str:
    """SHA-256 (16 hex digits) of `prefix` (e.g. the config) and a module's parameters and buffers,
    by name: equal exactly when the weights are bit-identical, whatever the file's path or mtime."""
    h = hashlib.sha256(prefix)
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


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


PRECISIONS = ("auto", "bf16", "fp32")


def resolve_precision(precision: str, device: torch.device) -> str:
    """`"auto"` is "bf16" on CUDA and "fp32" elsewhere (a CPU gains nothing from bfloat16 matmuls)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    return precision


@contextmanager
def mixed_precision(precision: str, device: torch.device) -> Iterator[None]:
    """The forward pass of a training step, in `precision` (`resolve_precision`).

    "bf16": matrix products in bfloat16 under `torch.autocast` (loss and reductions stay float32)
    and the remaining float32 ones in TF32, so tensor cores do the work; parameters and optimizer
    state stay float32, and the backward pass follows the dtypes the forward recorded. bfloat16
    keeps float32's range with an 8-bit mantissa: about 3 significant digits per product, summed
    in float32. "fp32": nothing changes. TF32 is switched back off on exit."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "fp32":
        yield
        return
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`model.eval()` within the block; the model's training flag is restored on exit."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that a run is repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
