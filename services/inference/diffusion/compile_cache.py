"""Keeping the compiled UNet between starts: torch's compile caches in one folder per torch, device and model.

Compiling the UNet (`acceleration.compile_unet`) costs about half a minute per
batch bucket on a GPU, nearly all of it inductor's code generation and Triton's
kernel builds. torch keeps what they produce in two caches on disk, both on by
default: inductor's FX graph cache (the generated code of each graph) and
AOTAutograd's cache (the traced graph before it). A later start that compiles
the same graphs with the same torch on the same device finds them there and
loads them in seconds; only Dynamo's trace of the UNet's Python is done again.

The caches live wherever `TORCHINDUCTOR_CACHE_DIR` points (Triton's kernels
beside them, unless `TRITON_CACHE_DIR` says otherwise). The service points it at
a folder of its own under `CLASSROOM_COMPILE_CACHE_DIR` (a volume in
docker-compose.yml), one folder per key: the torch, CUDA, Triton and Python
versions, the device's name and compute capability, the model's name and
revision, its precision and memory format, and the compile mode. torch's own
cache keys already cover most of that; a folder per key also keeps what is
compiled for one model or GPU apart from another's, so an upgrade of torch, a
new GPU or a new model compiles afresh into a new folder, and the old one can
be deleted as a whole.

Each folder keeps `compiled.json`: its key, and what each start found there (the
buckets compiled, the seconds, the cache's hits and misses).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

MANIFEST = "compiled.json"
# The starts a folder's manifest remembers.
KEPT_STARTS = 20


@dataclass(frozen=True)
class CacheKey:
    """Everything that makes compiled code fit one start and not another: equal keys share a folder."""

    torch: str
    cuda: str  # the CUDA torch was built with, "none" on a CPU build
    triton: str  # "none" where Triton is not installed (a CPU)
    python: str  # major.minor: the compiled modules are built for its ABI
    device: str  # "NVIDIA H100 80GB HBM3 sm_90", or the CPU's vector instructions
    model: str  # the model's name and revision (a commit, or the hash of a local folder)
    dtype: str
    channels_last: bool
    mode: str  # torch.compile's mode
    backend: str

    def folder_name(self) -> str:
        """Readable for the person clearing a disk, unique by the hash of the whole key."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]
        readable = re.sub(r"[^A-Za-z0-9.+]+", "-", f"torch-{self.torch}-{self.device}").strip("-")[:80]
        return f"{readable}-{digest}"


def device_identity(device: torch.device) -> str:
    """The device as compiled code depends on it: a GPU's name and compute capability, a CPU's vector unit."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} sm_{major}{minor}"
    return f"cpu {platform.machine()} {torch.backends.cpu.get_cpu_capability()}"


def _triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "none"
    return str(triton.__version__)


def cache_key(
    model_name: str,
    revision: str,
    device: torch.device,
    dtype: torch.dtype,
    channels_last: bool,
    mode: str,
    backend: str,
    torch_version: str = torch.__version__,
) -> CacheKey:
    """The key of a compile of this model on this device with this torch."""
    return CacheKey(
        torch=torch_version,
        cuda=torch.version.cuda or "none",
        triton=_triton_version(),
        python=f"{platform.python_version_tuple()[0]}.{platform.python_version_tuple()[1]}",
        device=device_identity(device),
        model=f"{model_name}@{revision}",
        dtype=str(dtype).removeprefix("torch."),
        channels_last=channels_last,
        mode=mode,
        backend=backend,
    )


def cache_folder(root: Path, key: CacheKey) -> Path:
    """Where a compile with this key keeps its caches, under the service's compile cache."""
    return root / key.folder_name()


def use_cache_folder(folder: Path, key: CacheKey) -> None:
    """Point torch's compile caches at this folder, for the rest of the process (before anything is compiled)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    # Triton's kernels and launchers: beside the graphs, unless the operator put them elsewhere.
    os.environ.setdefault("TRITON_CACHE_DIR", str(folder / "triton"))
    manifest = folder / MANIFEST
    if not manifest.exists():
        manifest.write_text(json.dumps({"key": asdict(key), "starts": []}, indent=1))


def compiled_before(folder: Path, buckets: tuple[int, ...]) -> bool:
    """Whether an earlier start compiled every one of these buckets into this folder."""
    done: set[int] = set()
    for start in read_starts(folder):
        done |= set(start.get("buckets", []))
    return set(buckets) <= done


def read_starts(folder: Path) -> list[dict[str, Any]]:
    """What earlier starts recorded in this folder (none when there is no readable manifest)."""
    try:
        return list(json.loads((folder / MANIFEST).read_text()).get("starts", []))
    except (OSError, ValueError, AttributeError):
        return []


def record_start(folder: Path, start: dict[str, Any]) -> None:
    """Add this start to the folder's manifest (the last few are kept)."""
    manifest = folder / MANIFEST
    try:
        content = json.loads(manifest.read_text())
    except (OSError, ValueError):
        content = {}
    starts = [*content.get("starts", []), {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **start}]
    content["starts"] = starts[-KEPT_STARTS:]
    temporary = manifest.with_suffix(".tmp")
    temporary.write_text(json.dumps(content, indent=1))
    temporary.replace(manifest)


def cache_counts() -> dict[str, int]:
    """The counters torch keeps of the two caches in this process: hits and misses of each."""
    from torch._dynamo.utils import counters

    return {
        "graph_hits": counters["inductor"]["fxgraph_cache_hit"],
        "graph_misses": counters["inductor"]["fxgraph_cache_miss"],
        "autograd_hits": counters["aot_autograd"]["autograd_cache_hit"],
        "autograd_misses": counters["aot_autograd"]["autograd_cache_miss"],
    }


def counted_since(before: dict[str, int]) -> dict[str, int]:
    """The counts since `before` (another `cache_counts()`)."""
    return {name: count - before.get(name, 0) for name, count in cache_counts().items()}
