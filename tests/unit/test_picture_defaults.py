"""The decoded guess by default where the server can draw it, the lessons the teacher leads, the served metric."""

from __future__ import annotations

from services.common.api import pb
from services.inference.diffusion.probes import DEFAULT_PROBES, default_probes
from services.lessons.catalog import DEFAULT_CATALOG, all_entries, load_catalog


def test_the_decoded_guess_is_a_default_only_with_a_real_decoder():
    assert default_probes(decodes_pictures=True) == DEFAULT_PROBES | {"decoded_x0_preview"}
    assert default_probes(decodes_pictures=False) == DEFAULT_PROBES
    assert "cross_attention" not in default_probes(decodes_pictures=True)


def test_every_catalog_entry_carries_the_servers_defaults_once():
    catalog = load_catalog(DEFAULT_CATALOG).for_model("shapes")
    plain = all_entries(catalog)
    decoded = all_entries(catalog, {"decoded_x0_preview"})
    assert [e.id for e in plain] == [e.id for e in decoded]  # the same entries, the same ids
    for before, after in zip(plain, decoded, strict=True):
        paths = list(after.request.include.paths)
        assert paths.count("decoded_x0_preview") == 1  # added where missing, never twice
        assert set(paths) == set(before.request.include.paths) | {"decoded_x0_preview"}


def test_the_teacher_leads_the_menus_lessons():
    from frontend.together.menu import BY_PAGE, led_title

    entries = [
        pb.LessonEntry(id="pp/a/g7", collection="prompt-pairs", labels={"guidance_scale": "7"}),
        pb.LessonEntry(id="pp/a/g0", collection="prompt-pairs", labels={"guidance_scale": "0"}),
        pb.LessonEntry(id="att/a", collection="attention-maps"),
    ]
    assert [e.id for e in BY_PAGE["noise_to_image"].examples(entries)] == ["pp/a/g7"]  # what lesson 3 opens
    assert [e.id for e in BY_PAGE["guidance"].examples(entries)] == ["pp/a/g7", "pp/a/g0"]
    assert [e.id for e in BY_PAGE["attention"].examples(entries)] == ["att/a"]
    assert BY_PAGE["words"].examples(entries) == []
    led = pb.PresentState(lesson="noise_to_image", collection_title="Change one word")
    assert led_title(led) == "3. From noise to image"
    older = pb.PresentState(lesson="change-one-word", collection_title="Change one word")  # no page sent
    assert led_title(older) == "Change one word"


def test_served_without_the_gpu_is_said_only_with_a_gpu():
    from frontend.together.teacher_side import served_without_computing

    fresh_cpu = pb.GetClassroomResponse(device="cpu")
    assert served_without_computing(fresh_cpu) == ("Served without computing", "nothing served yet")
    cpu = pb.GetClassroomResponse(device="cpu", cache_hit_rate=1.0, stats=pb.GetServerStatsResponse(cache_hits=3))
    assert served_without_computing(cpu) == ("Served without computing", "100%")
    gpu = pb.GetClassroomResponse(
        device="cuda:0", gpu_memory_total_bytes=80 * 2**30, cache_hit_rate=0.25,
        stats=pb.GetServerStatsResponse(cache_hits=1, cache_misses=3),
    )  # fmt: skip
    assert served_without_computing(gpu) == ("Served without the GPU", "25%")


def test_pictures_per_unet_call_says_none_before_the_first_call():
    from frontend.together.teacher_side import pictures_per_call

    assert pictures_per_call(pb.GetClassroomResponse(max_batch_size=8)) == "none yet"  # not "0.0"
    assert pictures_per_call(pb.GetClassroomResponse(average_batch_size=3.25)) == "3.2"
