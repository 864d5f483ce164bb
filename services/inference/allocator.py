"""The service's memory allocator: jemalloc, keeping the pages it has, when the machine has it.

Why: every denoising step makes fresh tensors (the batch's guidance, the scheduler's
step, the float16 copies for the wire), tens of megabytes at a class of 64. With
glibc's allocator each of them came from pages the kernel had to map and zero again:
protobuf's Python runtime calls `malloc_trim(0)` after every 10,000 blocks of message
memory it frees, which hands every free page of every glibc arena back to the system,
and a class's stream frees that many every second or two. On the simulated GPU (2-core
EPYC, 64 students) the worker thread took 440,000 page faults in 34 s, a third of its
CPU time in the kernel (docs/benchmarks.md, "Page faults: protobuf's malloc_trim").

jemalloc does not answer glibc's `malloc_trim`, and with its decay off
(`MALLOC_CONF` below) it keeps freed pages for the next step's tensors: the same
process's resident memory stays at its peak instead of going up and down by a step's
tensors. A process can only choose its allocator before it starts, so `serve` starts
itself once more with jemalloc preloaded (`reexec`), the same process id, arguments
and environment. CLASSROOM_ALLOCATOR=system keeps glibc's; a machine without
libjemalloc (Debian's libjemalloc2) keeps it too, and says so in the log.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

# Debian and Ubuntu (the images, CI), then the usual other places.
JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)
# Freed pages are kept for reuse (no decay) instead of handed back and faulted in again at the next step;
# large tensors (8 MB at a class of 64) share the arenas instead of a separate one that returns pages at once.
MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1,oversize_threshold:0"


def jemalloc_library(paths: tuple[str, ...] = JEMALLOC_PATHS) -> str | None:
    """The first libjemalloc on this machine, or None."""
    return next((path for path in paths if Path(path).is_file()), None)


def preloaded(environ: Mapping[str, str]) -> bool:
    """Whether this process was started with jemalloc preloaded."""
    return "jemalloc" in environ.get("LD_PRELOAD", "")


def environment(environ: Mapping[str, str], library: str) -> dict[str, str]:
    """The environment to start again with: jemalloc first in LD_PRELOAD, and its settings unless set already."""
    others = environ.get("LD_PRELOAD", "").strip()
    return {
        **environ,
        "LD_PRELOAD": f"{library} {others}".strip(),
        "MALLOC_CONF": environ.get("MALLOC_CONF") or MALLOC_CONF,
    }


def reexec(choice: str, library: Path | None = None) -> None:
    """Start this process again with jemalloc (`library`, else the system's) preloaded; else return.

    Called by `serve` before it imports torch or opens a port: nothing is lost by starting again.
    Nothing happens when asked for glibc's, when jemalloc is preloaded already, or when there is none.
    """
    if choice != "jemalloc" or not sys.platform.startswith("linux") or preloaded(os.environ):
        return
    library = str(library) if library is not None and library.is_file() else jemalloc_library()
    if library is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment(os.environ, library))


def describe(choice: str) -> str:
    """A line for the start log: which allocator this process runs with."""
    if preloaded(os.environ):
        return f"memory allocator: jemalloc ({os.environ.get('MALLOC_CONF', '')})"
    if choice == "jemalloc":
        return "memory allocator: glibc's (no libjemalloc on this machine: apt-get install libjemalloc2)"
    return "memory allocator: glibc's (CLASSROOM_ALLOCATOR=system)"
