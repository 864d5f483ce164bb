"""The class map on the Shapes model: similar prompts end near each other on one projection."""

from __future__ import annotations

import math

import pytest

from services.common.client import ClassroomClient, ClientSettings
from services.lessons.catalog import DEFAULT_CATALOG
from tests.integration.helpers import collect, request
from tests.support.servers import running_server

CODE = "owl-42"
PROMPTS = ["a red circle on the left", "a blue square on the right", "a yellow star at the top"]


@pytest.fixture(scope="module")
def shapes_server(settings, tmp_path_factory):
    from tests.support.redis_server import RedisServer

    redis = RedisServer(tmp_path_factory.mktemp("class-map-redis")).start()
    config = settings.model_copy(update={"model": "shapes", "catalog": DEFAULT_CATALOG, "teacher_code": CODE,
                                         "redis_url": redis.url})  # fmt: skip
    with running_server(config) as server:
        yield server
    redis.stop()


def test_six_shared_pictures_from_three_prompts_make_six_paths_ending_by_prompt(shapes_server):
    front_end = ClassroomClient(ClientSettings(inference_addr=shapes_server.address), class_name="7B")
    for number, prompt in enumerate(PROMPTS):
        for seed in (1, 2):
            student = f"s-{number}-{seed}"
            stream = collect(front_end.generate(request(prompt, seed=seed, num_inference_steps=20), student))
            front_end.share_to_gallery(stream.status.trajectory_key, student, f"Student {number}{seed}")

    shared = front_end.submission_map(CODE)  # the teacher's map: every shared picture, pending ones too
    assert len(shared.paths) == 6 and shared.left_out == 0
    assert all(len(path.x) == len(path.y) == 21 for path in shared.paths)  # the noise, then 20 steps
    assert 0 < shared.explained_variance <= 1
    ends = {(path.prompt, path.seed): (path.x[-1], path.y[-1]) for path in shared.paths}
    for prompt in PROMPTS:
        together = math.dist(ends[prompt, 1], ends[prompt, 2])
        apart = min(math.dist(ends[prompt, seed], ends[other, s]) for seed in (1, 2)
                    for other in PROMPTS if other != prompt for s in (1, 2))  # fmt: skip
        assert together < apart, (prompt, together, apart)

    assert front_end.class_map().paths == []  # students see approved pictures only
    for item in front_end.submissions(CODE).items[:2]:
        front_end.review_submission(CODE, item.id, approve=True)
    assert len(front_end.class_map().paths) == 2
