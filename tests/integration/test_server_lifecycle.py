"""Health, reflection, cancellation and graceful shutdown of a real server."""

import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from services.common.api import MODEL_LOADING, SERVICE_NAME, pb, unbatch
from services.common.errors import error_reason, student_error
from services.inference.allocator import jemalloc_library
from tests.integration.helpers import collect, request
from tests.support.servers import (
    health_status,
    running_server,
    start_inference_process,
    stub_for,
    wait_until_serving,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def wait_for(condition, timeout=60.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def test_health_goes_from_not_serving_to_serving(settings, tmp_path):
    # A fresh tiny folder must be built before it loads: a window in which the server listens but is not ready.
    cold = settings.model_copy(update={"tiny_dir": tmp_path / "cold-tiny"})
    with running_server(cold, wait_for_model=False) as server:
        channel, stub = stub_for(server.address)
        assert health_status(channel) == NOT_SERVING
        assert health_status(channel, "") == NOT_SERVING
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetModelInfo(pb.GetModelInfoRequest())
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "still loading" in caught.value.details()
        # Clients act on the machine-readable reason, not on the sentence.
        assert error_reason(caught.value) == MODEL_LOADING
        assert student_error(caught.value).reason == MODEL_LOADING
        assert wait_for(lambda: health_status(channel) == SERVING)
        assert stub.GetModelInfo(pb.GetModelInfoRequest()).model_id == "tiny"
        channel.close()


def test_reflection_lists_the_service(server):
    with grpc.insecure_channel(server.address) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert SERVICE_NAME in services
        assert "grpc.health.v1.Health" in services


def test_model_info_reports_limits_and_schedulers(stub):
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.device == "cpu" and info.dtype == "float32"
    assert (info.default_width, info.latent_channels, info.vae_downsample_factor) == (512, 4, 8)
    assert info.vae_scaling_factor == pytest.approx(0.18215)
    assert {s.name for s in info.schedulers} >= {"ddim", "pndm", "lms", "euler", "euler_ancestral", "dpm_solver_pp"}
    assert [s.ancestral for s in info.schedulers if s.name == "euler_ancestral"] == [True]
    assert (info.limits.min_steps, info.limits.max_steps, info.limits.max_guidance_scale) == (1, 150, 30)
    assert (info.limits.min_size, info.limits.max_size, info.limits.size_multiple) == (64, 1024, 8)
    assert info.limits.max_seed == 2**32 - 1
    assert info.text_max_length == 77 and info.tokenizer_vocab_size == 49408
    assert "noise_predictions" in info.include_paths and "noise_predictions" not in info.default_include_paths


def test_cancelled_stream_frees_the_runner(stub):
    before = stub.GetServerStats(pb.GetServerStatsRequest())
    call = stub.Generate(request(seed=2, num_inference_steps=150, width=512, height=512, scheduler="euler"))
    frames = 0
    for response in unbatch(call):
        frames += response.WhichOneof("event") == "frame"
        if frames == 2:
            call.cancel()
            break

    def cancelled():
        stats = stub.GetServerStats(pb.GetServerStatsRequest())
        return stats.generations_cancelled == before.generations_cancelled + 1 and stats.active_generations == 0

    assert wait_for(cancelled, timeout=30)
    after = stub.GetServerStats(pb.GetServerStatsRequest())
    assert after.denoising_steps - before.denoising_steps < 150  # it stopped early
    assert after.generations_completed == before.generations_completed
    stream = collect(stub.Generate(request(seed=3, num_inference_steps=3, width=64, height=64)))
    assert len(stream.frames) == 3


def test_sigterm_drains_open_streams_then_exits(tiny_dir):
    env = {
        "CLASSROOM_MODEL": "tiny",
        "CLASSROOM_TINY_DIR": str(tiny_dir),
        "CLASSROOM_SHUTDOWN_GRACE_S": "60",
        "CLASSROOM_REDIS_URL": "",
    }
    process, address = start_inference_process(env, stderr=subprocess.PIPE)
    try:
        wait_until_serving(address, process=process)
        # The command line's process started itself again with jemalloc preloaded (allocator.py): same process.
        assert jemalloc_library() is not None, "make install puts libjemalloc2 on the machine"
        assert "libjemalloc" in Path(f"/proc/{process.pid}/maps").read_text()
        channel, stub = stub_for(address)
        call = stub.Generate(request(seed=4, num_inference_steps=30, width=256, height=256))
        responses = unbatch(call)
        first = next(responses)
        assert first.WhichOneof("event") == "status"
        received: list = [first]
        reader = threading.Thread(target=lambda: received.extend(responses))
        reader.start()
        process.send_signal(signal.SIGTERM)
        reader.join(120)
        kinds = [r.WhichOneof("event") for r in received]
        assert kinds[-1] == "final" and kinds.count("frame") == 30  # the open stream finished
        assert process.wait(60) == 0
        channel.close()
    finally:
        if process.poll() is None:
            process.kill()
        log = process.stderr.read()
    assert "draining" in log
    assert "memory allocator: jemalloc (dirty_decay_ms:-1" in log
