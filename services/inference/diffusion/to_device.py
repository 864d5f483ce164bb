"""Host data for the device (row indices, timesteps, guidance scales, token ids, noise), copied without waiting.

`torch.tensor(values, device="cuda")`, or a CPU tensor's `.to("cuda")`, copies from pageable
memory, and such a copy waits until everything queued on the device before it is done.
The batching worker makes these numbers right after it queues a UNet call: each such copy
made it wait for that call, so the GPU then sat idle while the worker did the step's Python
and launched the next call (on an H200, about 45 ms a step beside a 184 ms call of 32
students). Copied from pinned memory the numbers are queued like any kernel, and the worker
goes on to queue the next step while the device works.

`tests/unit/test_device_waits.py` holds the worker's code to it without a GPU: the meta
device stands in for one, and any copy that would wait is counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device`: on a GPU, copied behind the work already queued, not waited for.

    The pinned copy comes from PyTorch's caching host allocator, which keeps it until the
    copy to the device has run: `host` (pageable, as the callers' are) may change or go as
    soon as this returns. The meta device stands in for a GPU in the tests
    (tests/support/device_waits.py) and is copied to the same way; any other device as
    PyTorch copies by default.
    """
    if device.type == "cpu":
        return host
    like_a_gpu = device.type in ("cuda", "meta")
    return (host.pin_memory() if like_a_gpu else host).to(device, non_blocking=like_a_gpu)


def on_device(
    values: Sequence[float] | Sequence[Sequence[int]] | np.ndarray, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """`values` as a tensor of `dtype` on `device`, copied as `to_device` copies."""
    return to_device(torch.tensor(values, dtype=dtype), device)
