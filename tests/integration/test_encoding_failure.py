"""A trajectory whose events cannot be encoded fails every reader at once, and the service goes on."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2

from services.common.api import STUDENT_METADATA
from services.inference.diffusion.jobs import MODEL_FAILURE
from services.inference.trajectories import frames
from tests.integration.helpers import collect, request
from tests.support.servers import health_status


def test_an_encoding_failure_reaches_every_reader_and_cancels_the_job(server, stub, monkeypatch):
    real = frames.frame_message

    def failing(event, preview):
        if event.step_index == 3:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
        return real(event, preview)

    monkeypatch.setattr(frames, "frame_message", failing)
    spec = request("a kettle on a stove", seed=77, num_inference_steps=40, width=64, height=64)

    def read(name: str) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as failure:
            # A deadline far above the run's length: a reader left hanging would end in DEADLINE_EXCEEDED.
            collect(stub.Generate(spec, metadata=((STUDENT_METADATA, name),), timeout=60))
        return failure.value

    with ThreadPoolExecutor(2) as pool:
        errors = list(pool.map(read, ["first reader", "second reader"]))
    for error in errors:
        assert error.code() == grpc.StatusCode.INTERNAL
        assert error.details() == MODEL_FAILURE
    monkeypatch.undo()

    # The job leaves the batch at its next step boundary: no GPU time goes to a stream nobody can read.
    runner = server.classroom.scheduler
    deadline = time.monotonic() + 10
    while [view for view in runner.jobs() if view.prompt == spec.prompt] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [view for view in runner.jobs() if view.prompt == spec.prompt] == []
    channel = grpc.insecure_channel(server.address)
    assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
    channel.close()
    # The same request again is computed afresh, whole, for the same student.
    stream = collect(stub.Generate(spec, metadata=((STUDENT_METADATA, "first reader"),)))
    assert len(stream.frames) == 40
