"""A CPU stand-in for CUDA's device checks, so that tests on a machine without a GPU catch code
that would crash on one ("Expected all tensors to be on the same device").

On a CPU every tensor is on the same device, so mixing cannot fail. `DeviceCheck` therefore
tracks where each tensor *would* be if the model lived on a GPU:

    host    created without a device (torch.tensor(ids), torch.zeros(n), torch.from_numpy(a)),
            or brought back with .cpu(); and everything computed only from host tensors
    device  a model's parameters and buffers, anything moved with .to(device) / .cuda(), and
            everything computed from a device tensor
    (untagged: anything made with device=..., which is wherever that device is)

and raises, naming the operation and where the host tensor was made, when
- a module (the GPT, the SAE, any submodule) is called with a host tensor, or
- an operation mixes a device tensor with a host tensor of one element or more (0-dim host
  tensors are the one mix CUDA allows, as scalars).

Indexing follows CUDA's rule: a device tensor may be indexed by host indices (PyTorch moves
them), a host tensor not by device indices; assignment and copies (`x[i] = v`, `copy_`, `to`)
move data between devices and are always allowed. Limits: a tensor made with an explicit
`device="cpu"` is not tagged (on a CPU machine it is indistinguishable from the model's device),
and numbers leaving torch (.item(), .tolist(), .numpy()) are not tracked.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

HOST, DEVICE = "host", "device"
_FACTORIES = {torch.tensor, torch.as_tensor, torch.zeros, torch.ones, torch.full, torch.empty, torch.arange,
              torch.rand, torch.randn, torch.randint, torch.randperm, torch.linspace, torch.logspace, torch.eye}
_MOVES = {torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.__setitem__, torch.Tensor.index_put_,
          torch.Tensor.cuda, torch.Tensor.cpu}


def _where(t) -> str | None:
    return getattr(t, "_device_check", None) if isinstance(t, torch.Tensor) else None


def _mark(t, where: str, origin: str = "") -> None:
    if isinstance(t, torch.Tensor):
        t._device_check = where
        if origin:
            t._device_check_origin = origin
    elif isinstance(t, (tuple, list)):
        for x in t:
            _mark(x, where, origin)


def _tensors(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (tuple, list)):
        for y in x:
            yield from _tensors(y)
    elif isinstance(x, dict):
        for y in x.values():
            yield from _tensors(y)


def _caller() -> str:
    """file:line of the innermost frame in the project's own code (sae/, tutorials/, benchmarks/, tests/)."""
    f = sys._getframe(2)
    while f is not None:
        name = f.f_code.co_filename
        if any(p in name for p in ("/sae/", "/tutorials/", "/benchmarks/", "/tests/")) and "device_check" not in name:
            return f"{name.rsplit('/', 2)[-2]}/{name.rsplit('/', 1)[-1]}:{f.f_lineno}"
        f = f.f_back
    return "?"


class DeviceCheck(TorchFunctionMode):
    """`with DeviceCheck(): ...` runs the block with the device rules above (see the module docstring)."""

    def __enter__(self):
        self._from_numpy = torch.from_numpy
        torch.from_numpy = self._host_from_numpy  # not a torch function: torch.overrides cannot see it
        self._hook = torch.nn.modules.module.register_module_forward_pre_hook(self._module_call)
        return super().__enter__()

    def __exit__(self, *exc):
        torch.from_numpy = self._from_numpy
        self._hook.remove()
        return super().__exit__(*exc)

    def _host_from_numpy(self, a: np.ndarray) -> torch.Tensor:
        t = self._from_numpy(a)
        _mark(t, HOST, _caller())
        return t

    @staticmethod
    def _module_call(module, args):
        for p in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
            p._device_check = DEVICE
        for t in _tensors(args):
            if _where(t) == HOST and t.dim() > 0:
                raise RuntimeError(f"{type(module).__name__} called with a tensor made on the host at "
                                   f"{getattr(t, '_device_check_origin', '?')}; on a GPU this crashes: create it "
                                   "on the model's device (device=...) or move it (.to(device))")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _FACTORIES:
            if kwargs.get("device") is None:
                _mark(out, HOST, _caller())
            # made with device=...: untagged, as on a GPU it is wherever that device is (the
            # model's, or the host's when it was taken from a host tensor)
            return out
        if func in _MOVES:
            moved = (func is torch.Tensor.cuda or (func is torch.Tensor.to and (
                "device" in kwargs or any(isinstance(a, (str, torch.device, torch.Tensor)) for a in args[1:]))))
            if (moved or func is torch.Tensor.cpu) and out is args[0]:
                # on a CPU the move returns the tensor itself; on a GPU it returns a copy and the
                # original stays where it was: tag a new alias, not the original
                out = out.view_as(out)
            if func is torch.Tensor.cpu:
                _mark(out, HOST, _caller())
            elif moved:
                _mark(out, DEVICE)
            elif func is torch.Tensor.to and _where(args[0]):  # a dtype change stays where it was
                _mark(out, _where(args[0]), getattr(args[0], "_device_check_origin", ""))
            return out
        inputs = list(_tensors(args)) + list(_tensors(kwargs))
        device = any(_where(t) == DEVICE for t in inputs)
        host = [t for t in inputs if _where(t) == HOST and t.dim() > 0]
        if func is torch.Tensor.__getitem__ and _where(args[0]) == DEVICE:
            host = []  # a device tensor indexed by host indices: CUDA allows it
        if device and host:
            name = getattr(func, "__qualname__", getattr(func, "__name__", str(func)))
            raise RuntimeError(f"{name} mixes a device tensor with a tensor made on the host at "
                               f"{getattr(host[0], '_device_check_origin', '?')} (called from {_caller()}); on a "
                               "GPU this crashes: create it on the model's device (device=...) or move it (.to(device))")
        if device or host:
            origin = getattr(host[0], "_device_check_origin", "") if host and not device else ""
            _mark(out, DEVICE if device else HOST, origin)
        return out
