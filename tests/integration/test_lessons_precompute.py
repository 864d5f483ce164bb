"""The lesson catalog, precompute (idempotent, resumable) and lesson packs between Redis servers."""

import subprocess
import sys
import textwrap

import pytest

from services.common.api import pb
from services.common.trajectories import KEY_PREFIX
from services.lessons.catalog import all_entries, load_catalog
from services.precompute.packs import MAGIC, export_lessons, import_lessons
from services.precompute.render import render_catalog
from tests.conftest import CACHE_SECRET
from tests.integration.helpers import collect
from tests.support.servers import client_for, running_server, stub_for

SECRET = CACHE_SECRET.encode()
SMALL_CATALOG = """
version: 3
collections:
  - id: tiny-pairs
    lesson: change-one-word
    title: Two prompts
    request: {scheduler: lms, num_inference_steps: 3, width: 64, height: 64}
    pairs:
      owl: [an owl on a branch, an owl on a fence]
    seeds: [1]
    guidance_scales: [0, 7]
  - id: tiny-schedulers
    lesson: seeds-and-schedulers
    title: Schedulers
    request: {guidance_scale: 7.5, width: 64, height: 64}
    prompts: {cup: a cup of tea}
    seeds: [2]
    schedulers: [ddim, euler_ancestral]
    steps: [2, 3]
"""


@pytest.fixture
def catalog_file(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(textwrap.dedent(SMALL_CATALOG))
    return path


def stats(stub):
    return stub.GetServerStats(pb.GetServerStatsRequest())


def test_the_shipped_catalog_covers_the_lessons():
    catalog = load_catalog().for_model("stable-diffusion")
    entries = all_entries(catalog)
    assert len({e.id for e in entries}) == len(entries)
    pairs = [e for e in entries if e.collection == "prompt-pairs"]
    assert {e.request.scheduler for e in pairs} == {"lms"}
    assert {(e.request.num_inference_steps, e.request.width, e.request.height) for e in pairs} == {(50, 512, 512)}
    assert {e.request.seed for e in pairs} == {1, 2, 3}
    assert {e.request.guidance_scale for e in pairs} == {0, 1, 7, 20}
    assert {e.labels["side"] for e in pairs} == {"a", "b"}
    schedulers = [e for e in entries if e.collection == "scheduler-comparison"]
    assert {e.request.scheduler for e in schedulers} == {"ddim", "pndm", "lms", "euler", "euler_ancestral",
                                                          "dpm_solver_pp"}  # fmt: skip
    assert len({e.request.num_inference_steps for e in schedulers}) > 1
    assert len({(e.request.prompt, e.request.seed) for e in schedulers}) == 1


def test_precompute_renders_once_and_packs_move_lessons(settings, catalog_file, fresh_redis, tmp_path):
    school = fresh_redis("school")
    config = settings.model_copy(update={"redis_url": school.url, "catalog": catalog_file})
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        listing = stub.ListLessons(pb.ListLessonsRequest())
        assert listing.catalog_version == 3 and listing.cache_available
        assert len(listing.entries) == 8
        assert {e.cache_state for e in listing.entries} == {pb.CACHE_STATE_NOT_CACHED}
        assert [c.id for c in listing.collections] == ["tiny-pairs", "tiny-schedulers"]

        # A student already asked for one entry: it sits in the ad-hoc cache and is kept as a lesson now.
        collect(stub.Generate(listing.entries[0].request))
        first = render_catalog(client_for(server.address), progress=False)
        assert (first.rendered, first.skipped, first.failed) == (8, 0, [])
        assert stats(stub).generations_started == 8  # the ad-hoc one was not computed again

        listing = stub.ListLessons(pb.ListLessonsRequest())
        assert {e.cache_state for e in listing.entries} == {pb.CACHE_STATE_LESSON}
        with school.client() as client:
            lesson_keys = list(client.scan_iter(match=f"{KEY_PREFIX}:*:lesson:*"))
            assert len(lesson_keys) == 8
            assert {client.ttl(k) for k in lesson_keys} == {-1}  # never expire

        second = render_catalog(client_for(server.address), progress=False)
        assert (second.rendered, second.skipped) == (0, 8)
        assert stats(stub).generations_started == 8
        only = stub.ListLessons(pb.ListLessonsRequest(collection="tiny-schedulers"))
        assert len(only.entries) == 4 and [c.id for c in only.collections] == ["tiny-schedulers"]
        channel.close()

    pack = tmp_path / "lessons.pack"
    with school.client() as client:
        assert export_lessons(client, pack, SECRET) == 8
    classroom = fresh_redis("classroom")
    with classroom.client() as client:
        summary = import_lessons(client, pack, SECRET)
        assert (summary.imported, summary.signed_anew, summary.rejected) == (8, 0, 0)

    # A machine without the model's work: every lesson opens from the imported pack.
    config = settings.model_copy(update={"redis_url": classroom.url, "catalog": catalog_file})
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        listing = stub.ListLessons(pb.ListLessonsRequest())
        assert {e.cache_state for e in listing.entries} == {pb.CACHE_STATE_LESSON}
        for entry in listing.entries:
            stream = collect(stub.Generate(entry.request))
            assert stream.status.cache_hit and stream.header.request.prompt == entry.request.prompt
        assert stats(stub).generations_started == 0
        channel.close()


def test_a_damaged_pack_entry_is_rejected(settings, catalog_file, fresh_redis, tmp_path):
    school = fresh_redis("school")
    config = settings.model_copy(update={"redis_url": school.url, "catalog": catalog_file})
    with running_server(config) as server:
        client = client_for(server.address)
        render_catalog(client, collection="tiny-pairs", progress=False)
        client.close()
    pack = tmp_path / "lessons.pack"
    with school.client() as client:
        assert export_lessons(client, pack, SECRET) == 4
    data = bytearray(pack.read_bytes())
    data[len(MAGIC) + 4 + 8 + 1000] ^= 0xFF  # bits of the first trajectory rot
    pack.write_bytes(bytes(data))
    with fresh_redis("other").client() as client:
        summary = import_lessons(client, pack, SECRET)
    assert (summary.imported, summary.rejected) == (3, 1)


def test_precompute_command_line(settings, catalog_file, fresh_redis, tmp_path):
    redis_server = fresh_redis("cli")
    config = settings.model_copy(update={"redis_url": redis_server.url, "catalog": catalog_file})
    with running_server(config) as server:
        env = {"CLASSROOM_INFERENCE_ADDR": server.address, "CLASSROOM_REDIS_URL": redis_server.url,
               "CLASSROOM_CACHE_SECRET": CACHE_SECRET}  # fmt: skip
        run = [sys.executable, "-m", "services.precompute"]
        result = subprocess.run([*run, "render", "--collection", "tiny-pairs"], env=env, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "rendered 4, skipped 0 (already cached), failed 0" in result.stdout
        assert "lessons" in result.stderr  # the progress bar
        result = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
        assert "rendered 4, skipped 4" in result.stdout
        pack = tmp_path / "cli.pack"
        result = subprocess.run([*run, "export", str(pack)], env=env, capture_output=True, text=True, timeout=60)
        assert "exported 8 lesson trajectories" in result.stdout
