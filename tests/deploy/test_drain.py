"""A replica told to stop (SIGTERM, as Kubernetes stops a pod): it takes no new work, and no picture is lost.

Two real replicas on one Redis (the simulated GPU, so a picture takes seconds
without a model), a front-end client with round robin over both. The stopping
replica says NOT_SERVING, new pictures go to the other, a picture it had started
finishes within its grace, and one that cannot finish in time is cut when the
grace ends and asked again of the other replica by the client, as a pod's would be.
"""

from __future__ import annotations

import signal
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.api import SERVICE_NAME, bearer, pb, pb_grpc, unbatch
from services.common.client import ClassroomClient, ClientSettings
from services.inference.diffusion.simulated import SIMULATED_H100
from tests.support.replicas import API_TOKEN, running_replicas

GRACE_S = 3.0


def wait_for(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def active(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.DiffusionServiceStub(channel)
        return stub.GetServerStats(
            pb.GetServerStatsRequest(), metadata=bearer(API_TOKEN), timeout=10
        ).active_generations


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=2
            )
        except grpc.RpcError:
            return False  # no longer listening: not serving either
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def picture(steps: int, seed: int) -> pb.GenerateRequest:
    return pb.GenerateRequest(prompt=f"a drained picture {seed}", seed=seed, num_inference_steps=steps)


def test_a_stopping_replica_takes_no_new_work_and_loses_no_picture(tmp_path):
    settings = {"CLASSROOM_MODEL": SIMULATED_H100, "CLASSROOM_SHUTDOWN_GRACE_S": str(GRACE_S)}
    with running_replicas(tmp_path, count=2, **settings) as replicas:
        both = ClientSettings(inference_addr="ipv4:" + ",".join(replicas.addresses), api_token=API_TOKEN)
        client = ClassroomClient(both)
        # A long picture (150 steps: about 5 s of simulated GPU) through the front end's client, round robin.
        reconnects: list[int] = []
        long_events: list[str] = []

        def long_picture() -> None:
            responses = client.generate(picture(150, 1), "student-long", on_reconnect=lambda n, _: reconnects.append(n))
            long_events.extend(r.WhichOneof("event") for r in responses)

        reader = threading.Thread(target=long_picture)
        reader.start()
        assert wait_for(lambda: any(active(a) for a in replicas.addresses))
        stopping = next(i for i, a in enumerate(replicas.addresses) if active(a))
        other = replicas.addresses[1 - stopping]
        # A short picture (10 steps) started on the same replica, straight to it.
        with grpc.insecure_channel(replicas.addresses[stopping]) as channel:
            stub = pb_grpc.DiffusionServiceStub(channel)
            metadata = (*bearer(API_TOKEN), ("x-student-id", "student-short"))
            short = unbatch(stub.Generate(picture(10, 2), metadata=metadata))
            short_events = [next(short).WhichOneof("event")]
            while short_events[-1] != "frame":
                short_events.append(next(short).WhichOneof("event"))

            replicas.processes[stopping].send_signal(signal.SIGTERM)
            assert wait_for(lambda: not serving(replicas.addresses[stopping]), timeout=10)
            # New work goes to the replica that stays, through the same round-robin client.
            fresh = [r.WhichOneof("event") for r in client.generate(picture(10, 3), "student-new")]
            assert fresh[-1] == "final"
            assert serving(other)
            # What the stopping replica had started and could finish, it finished.
            short_events += [r.WhichOneof("event") for r in short]
        assert short_events[-1] == "final" and short_events.count("frame") == 10

        # The long one was cut when the grace ended; the client asked the other replica, and it came.
        reader.join(120)
        assert long_events and long_events[-1] == "final", long_events[-3:]
        assert reconnects, "the long picture finished on the stopping replica: make it longer than the grace"
        assert replicas.processes[stopping].wait(30) == 0  # a clean exit after the grace
        assert "draining" in replicas.log(stopping)
        client.close()
