"""The waits for a GPU that the worker's code would make, counted on a machine without one.

A copy between the host and a GPU made the plain way (`tensor.cpu()`, `.item()`,
`torch.tensor(values, device="cuda")`, a CPU tensor's `.to("cuda")`, a device tensor
indexed with host indices) waits until the device has done everything queued before it;
the batching worker, having queued a UNet call, would then wait out that call while the
GPU waits for its next one. Here the meta device stands in for the GPU: its tensors have
shapes and no data, so every operation runs as it would there, and `DeviceWaits` notes
each copy that would wait, with the line of the service's code that made it. A copy to
the device counts unless it is `non_blocking` from pinned memory (as `to_device` makes
it: `pin_memory()` here marks the tensor instead, a CPU-only build having none); a copy
to the host counts unless it is `non_blocking` (as `HostCopy` makes it), and comes back
as zeros. Operations whose result's size depends on the data (`nonzero`, a mask) raise
on the meta device: such a wait fails the test outright.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

STAND_IN = torch.device("meta")  # the GPU's stand-in
_ATEN = torch.ops.aten
_COPIES = (_ATEN.to, _ATEN._to_copy, _ATEN.copy_)


@dataclass(frozen=True)
class Wait:
    what: str
    where: str  # the service's own line that made it (file:line), or "" when none is on the stack

    def __str__(self) -> str:
        return f"{self.what} at {self.where or 'an unknown line'}"


def _service_line() -> str:
    for frame in reversed(traceback.extract_stack()):
        if "/services/" in frame.filename:
            return f"{frame.filename.split('/services/')[-1]}:{frame.lineno}"
    return ""


class _Copies(TorchDispatchMode):
    def __init__(self, waits: list[Wait]) -> None:
        super().__init__()
        self.waits = waits
        self.pinned: set[int] = set()  # the host memory `pin_memory()` gave (its tensors' addresses)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        named = {a.name: v for a, v in zip(func._schema.arguments, args, strict=False)} | kwargs
        packet = func.overloadpacket
        if packet in (_ATEN.pin_memory, _ATEN._pin_memory):
            pinned = named["self"].clone()
            self.pinned.add(pinned.data_ptr())
            return pinned
        indexed = packet in (_ATEN.index, _ATEN.index_put, _ATEN.index_put_) and named["self"].device == STAND_IN
        if indexed and any(isinstance(i, torch.Tensor) and i.device.type == "cpu" for i in named["indices"]):
            self.waits.append(Wait("a device tensor indexed with host indices", _service_line()))
        if packet in _COPIES:
            if packet is _ATEN.copy_:
                source, target = named["src"], named["self"].device
            else:
                source = named["self"]
                target = named.get("device") or (named["other"].device if "other" in named else source.device)
            target = torch.device(target)
            unwaited = named.get("non_blocking", False)
            if source.device.type == "cpu" and target.type == STAND_IN.type:
                unwaited = unwaited and source.data_ptr() in self.pinned  # from pageable memory it waits
            if target.type != source.device.type and not unwaited:
                self.waits.append(Wait(f"a copy from {source.device.type} to {target.type}", _service_line()))
            if source.device.type == STAND_IN.type and target.type == "cpu":
                if packet is _ATEN.copy_:
                    return named["self"]
                return torch.zeros(source.shape, dtype=named.get("dtype") or source.dtype)
        if packet is _ATEN._local_scalar_dense and named["self"].device.type == STAND_IN.type:
            self.waits.append(Wait("a number read from the device", _service_line()))
            return 0
        return func(*args, **kwargs)


class _Made(TorchFunctionMode):
    """`torch.tensor(values, device=...)`: built on the host and copied in one call, out of the dispatcher's sight."""

    def __init__(self, waits: list[Wait]) -> None:
        super().__init__()
        self.waits = waits

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        device = kwargs.get("device")
        if func in (torch.tensor, torch.as_tensor) and device is not None and torch.device(device).type != "cpu":
            self.waits.append(Wait(f"torch.{func.__name__}(..., device={device})", _service_line()))
        return func(*args, **kwargs)


@dataclass
class DeviceWaits:
    """`with DeviceWaits() as waits:` the code under test; then `waits.found`, each a `Wait`."""

    found: list[Wait] = field(default_factory=list)
    _modes: tuple[Any, ...] = ()

    def __enter__(self) -> DeviceWaits:
        self._modes = (_Made(self.found), _Copies(self.found))
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)


def on_stand_in(model: Any) -> Any:
    """`model` (a `DiffusionModel`) with its networks moved to the meta device: the GPU's stand-in.

    Run it inside `DeviceWaits` only: there its copies to the device pin their memory as on a GPU.
    """
    for module in (model.text_encoder, model.unet, model.vae):
        module.to(STAND_IN)
    model.device = STAND_IN  # (a fresh model: no encoding kept yet; its input norms were read as it loaded)
    return model
