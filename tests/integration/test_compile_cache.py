"""A second start finds what the first one compiled: torch's caches in the service's compile cache folder.

Two processes compile the same small stand-in UNet with inductor on this CPU
into the same `CLASSROOM_COMPILE_CACHE_DIR`: the first finds nothing and
compiles, the second loads the compiled graph from the folder (torch's own hit
counters say so). The tiny model's UNet takes about 90 s to compile cold on
this 2-core CPU, too long for the suite: the GPU suite's `compile_start` part
starts the real service with the SD 1.5-shaped UNet from a cold then a warm cache.
"""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

START = """
import json, sys
from pathlib import Path
import torch
from services.inference.diffusion.acceleration import accelerate
from services.inference.settings import InferenceSettings
from tests.unit.test_compile_cache import small_model

torch.set_num_threads(1)
model = small_model()
eager = model.unet
folder = Path(sys.argv[1])
settings = InferenceSettings(model="tiny", max_batch_size=1, unet_compile="default", compile_cache_dir=folder)
report = accelerate(model, settings)
inputs = (torch.randn(2, 4, 8, 8), torch.tensor([10.0, 10.0]), torch.randn(2, 7, 8))
with torch.inference_mode():
    same = torch.allclose(model.unet(*inputs)[0], eager(*inputs)[0], atol=1e-5)
print(json.dumps({"folder": report.compile_cache, "before": report.compiled_before, "counts": report.cache_counts,
                  "buckets": report.buckets, "same": same}))
"""


def start(cache_root) -> dict:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    env.pop("TRITON_CACHE_DIR", None)
    run = subprocess.run(
        [sys.executable, "-c", START, str(cache_root)], env=env, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_second_start_loads_what_the_first_compiled(tmp_path):
    first = start(tmp_path)
    assert not first["before"] and first["buckets"] == [1] and first["same"]
    assert first["counts"]["graph_misses"] >= 1 and first["counts"]["graph_hits"] == 0
    second = start(tmp_path)
    assert second["folder"] == first["folder"] and os.path.dirname(second["folder"]) == str(tmp_path)
    assert second["before"] and second["same"]
    assert second["counts"]["graph_hits"] >= 1 and second["counts"]["graph_misses"] == 0
