"""The inference service killed and restarted while students are streaming: nothing is lost.

A real service process is killed with SIGKILL (as a crash or an OOM kill would)
in the middle of a student's stream, then started again on the same port. The
front end's client reconnects and the student still gets the whole picture;
what was cached before is served from Redis after the restart.
"""

import signal
import threading
import time

import pytest

from frontend.client import ClassroomClient
from frontend.settings import FrontendSettings
from frontend.stream.wire import TrajectoryView
from services.common.api import pb
from tests.conftest import CACHE_SECRET
from tests.integration.helpers import collect, request
from tests.support.servers import free_port, start_inference_process, stub_for, wait_until_serving


@pytest.fixture
def service(tiny_dir, redis_server):
    port = free_port()
    # One picture a student, and the same cache secret across the restart (as compose's secrets volume keeps it).
    env = {"CLASSROOM_MODEL": "tiny", "CLASSROOM_TINY_DIR": str(tiny_dir), "CLASSROOM_REDIS_URL": redis_server.url,
           "CLASSROOM_GRPC_PORT": str(port), "CLASSROOM_RATE_LIMIT_PER_MINUTE": "0.1",
           "CLASSROOM_RATE_LIMIT_BURST": "1", "CLASSROOM_CACHE_SECRET": CACHE_SECRET}  # fmt: skip
    processes = []

    def start():
        process, address = start_inference_process(env)
        processes.append(process)
        wait_until_serving(address, process=process)
        return process, address

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def test_a_stream_survives_the_service_being_killed_and_restarted(service):
    process, address = service()
    channel, stub = stub_for(address)
    lesson = request("a red kite over hills", seed=301, num_inference_steps=4, width=64, height=64)
    before = collect(stub.Generate(lesson))
    assert before.status.source == pb.TRAJECTORY_SOURCE_COMPUTED

    client = ClassroomClient(FrontendSettings(inference_addr=address))
    reconnects: list[tuple[int, float]] = []
    trajectory = TrajectoryView()
    two_frames = threading.Event()
    failure: list[BaseException] = []

    def student():
        # No seed: the service draws one, and the resumed request must be the same one.
        long = request("a slow river at dusk", num_inference_steps=30, width=128, height=128,
                       include=["latent_preview"])  # fmt: skip
        try:
            for response in client.generate(
                long, "student-1", name="Ada", on_reconnect=lambda *a: reconnects.append(a)
            ):
                trajectory.add(response)
                if len(trajectory.steps) == 2:
                    two_frames.set()
        except BaseException as error:  # reported by the test below
            failure.append(error)

    reader = threading.Thread(target=student)
    reader.start()
    assert two_frames.wait(60)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    time.sleep(1.0)  # the class sees the service gone for a moment
    _, address = service()  # the same port, as a container restart would
    reader.join(120)

    # The student's only token went to the first attempt: resumed, the same request is not charged again.
    assert not failure, failure
    assert reconnects and reconnects[0][0] == 1  # the student was told, then it reconnected
    assert trajectory.total_steps == 30 and [s.index for s in trajectory.steps] == list(range(30))
    assert trajectory.image is not None and trajectory.source == pb.TRAJECTORY_SOURCE_COMPUTED
    # What was cached before the crash is still served, from Redis, with no model work.
    after = collect(stub.Generate(lesson))
    assert after.status.source == pb.TRAJECTORY_SOURCE_CACHE
    assert after.final.image.data == before.final.image.data
    channel.close()
    client.channel.close()
