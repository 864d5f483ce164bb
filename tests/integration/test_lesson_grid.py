"""A lesson's own grid at a new seed (lesson 6) is the class's work, not the student's burst.

A real gRPC server with the rate limit on (3 pictures, then one a minute): a
student who picks a seed the catalog does not hold gets all 18 pictures of the
grid, and still has their own pictures left; a request that claims to be the
grid but asks for another prompt is the student's own, and is rate limited.
"""

from __future__ import annotations

import textwrap

import grpc
import pytest

from services.common.api import LESSON_METADATA, STUDENT_METADATA, pb
from tests.integration.helpers import collect, request
from tests.support.servers import running_server, stub_for

# Lesson 6's grid, small: 6 schedulers x 3 step counts = 18 pictures, as on the lesson's page.
GRID_CATALOG = """
version: 3
collections:
  - id: scheduler-comparison
    lesson: seeds-and-schedulers
    title: One prompt, many schedulers
    request: {guidance_scale: 7.5, width: 64, height: 64}
    prompts: {cup: a cup of tea}
    seeds: [1]
    schedulers: [ddim, pndm, lms, euler, euler_ancestral, dpm_solver_pp]
    steps: [2, 3, 4]
"""
NEW_SEED = 4242  # not in the catalog: computed when the student picks it


@pytest.fixture(scope="module")
def stub(settings, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("grid") / "catalog.yaml"
    catalog.write_text(textwrap.dedent(GRID_CATALOG))
    limited = {"rate_limit_per_minute": 1.0, "rate_limit_burst": 3, "catalog": catalog}
    with running_server(settings.model_copy(update=limited)) as server:
        channel, stub = stub_for(server.address)
        yield stub
        channel.close()


def generate(stub, message: pb.GenerateRequest, student: str, lesson: str = ""):
    metadata = ((STUDENT_METADATA, student),) + (((LESSON_METADATA, lesson),) if lesson else ())
    return collect(stub.Generate(message, metadata=metadata))


def test_a_new_seed_shows_the_whole_grid_and_a_forged_grid_request_is_still_rate_limited(stub):
    entries = stub.ListLessons(pb.ListLessonsRequest(collection="scheduler-comparison")).entries
    assert len(entries) == 18
    # What lesson 6 sends for a new seed: each entry's own request at that seed, named by the entry.
    pictures = []
    for entry in entries:
        message = pb.GenerateRequest()
        message.CopyFrom(entry.request)
        message.seed = NEW_SEED
        pictures.append(generate(stub, message, "ada", lesson=entry.id))
    assert all(p.final.image for p in pictures) and len(pictures) == 18
    assert not any(p.status.cache_hit for p in pictures)  # each one computed, none refused

    # The grid took none of Ada's own pictures: her burst of 3 is whole.
    for n in range(3):
        assert generate(
            stub, request(f"her own picture {n}", seed=1, num_inference_steps=2, width=64, height=64), "ada"
        )

    # Another student forges the grid's tag on prompts of their own: charged as their own pictures.
    forged = pb.GenerateRequest()
    forged.CopyFrom(entries[0].request)
    for n in range(3):
        forged.prompt = f"anything I like {n}"
        assert generate(stub, forged, "ben", lesson=entries[0].id).final.image
    forged.prompt = "anything I like 3"
    with pytest.raises(grpc.RpcError) as caught:
        generate(stub, forged, "ben", lesson=entries[0].id)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "faster than the class allows" in caught.value.details()
    # Other settings than the entry's (more steps) are not the grid either.
    other = pb.GenerateRequest()
    other.CopyFrom(entries[0].request)
    other.seed, other.num_inference_steps = NEW_SEED + 1, 9
    with pytest.raises(grpc.RpcError) as caught:
        generate(stub, other, "ben", lesson=entries[0].id)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
