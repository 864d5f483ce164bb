"""The full garbage collection's pause in a process holding what the service holds after start-up.

Run as `python -m tests.bench.gc_heap`, with the service's settings in the environment:
it imports the server, loads the model as the service does, then times a full
collection before and after `freeze_startup_heap`. Prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import time

from services.inference.diffusion.models import DiffusionModel
from services.inference.server import freeze_startup_heap
from services.inference.settings import InferenceSettings


def full_collection_s() -> float:
    started = time.perf_counter()
    gc.collect()
    return time.perf_counter() - started


def main() -> None:
    model = DiffusionModel.load(InferenceSettings())
    gc.collect()
    tracked = len(gc.get_objects())
    before = min(full_collection_s() for _ in range(3))
    freeze_startup_heap()
    after = min(full_collection_s() for _ in range(3))
    print(json.dumps({"tracked": tracked, "frozen": gc.get_freeze_count(), "before_s": before, "after_s": after}))
    del model


if __name__ == "__main__":
    main()
