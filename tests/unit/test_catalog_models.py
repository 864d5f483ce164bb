"""Each model family serves its own lesson catalog."""

from services.inference.diffusion.models import SHAPES_DIR, ModelCard
from services.inference.diffusion.schedulers import SCHEDULERS
from services.lessons.catalog import DEFAULT_CATALOG, all_entries, load_catalog


def test_each_family_gets_its_own_collections():
    catalog = load_catalog(DEFAULT_CATALOG)
    sd, shapes = catalog.for_model("stable-diffusion"), catalog.for_model("shapes")
    assert {c.model for c in sd.collections} == {"stable-diffusion"}
    assert {c.model for c in shapes.collections} == {"shapes"}
    # The pages look collections up by id: both families have the ones the lessons open.
    for needed in ("prompt-pairs", "scheduler-comparison", "seed-gallery"):
        assert needed in {c.id for c in sd.collections} and needed in {c.id for c in shapes.collections}
    assert catalog.for_model("no-such-family").collections == []


def test_shapes_entries_are_shapes_sized_and_use_its_words():
    entries = all_entries(load_catalog(DEFAULT_CATALOG).for_model("shapes"))
    assert entries and all(e.request.width == e.request.height == 64 for e in entries)
    pair = {e.labels["side"]: e.request.prompt for e in entries if e.labels.get("pair") == "colour"}
    assert pair == {"a": "a red circle on the left", "b": "a blue circle on the left"}
    # Guidance 0, 1, 7 and 20, seeds 1 to 3, every scheduler the model's card offers.
    guidance = {e.request.guidance_scale for e in entries if e.collection == "prompt-pairs"}
    assert guidance == {0, 1, 7, 20}
    schedulers = {e.request.scheduler for e in entries if e.collection == "scheduler-comparison"}
    left_out = dict(ModelCard.read(SHAPES_DIR).schedulers_left_out)
    assert schedulers == set(SCHEDULERS) - set(left_out) == {"ddim", "euler", "euler_ancestral", "dpm_solver_pp"}
