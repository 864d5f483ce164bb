"""Lesson 9 on a real Shapes server: its training pictures, the nearest to a picture it made, a word never learned."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from services.common.client import ClassroomClient, ClientSettings, StudentError
from services.common.codecs import decode_image
from services.common.shapes_judge import judge
from services.common.shapes_world import PALETTE, POSITIONS, SHAPES
from services.inference.learned.nearest import K_MAX, TrainingSample, at_model_size, encode_latents
from services.inference.learned.training_set import RANDOM_UNAVAILABLE, TrainingSet, picture_of
from tests.integration.helpers import collect, request
from tests.support.servers import running_server

RED_LEFT = "a red circle on the left"
TEACHER_CODE = "owl-9"


@pytest.fixture(scope="module")
def shapes_server(settings):
    with running_server(settings.model_copy(update={"model": "shapes", "teacher_code": TEACHER_CODE})) as server:
        yield server


@pytest.fixture(scope="module")
def client(shapes_server):
    front_end = ClassroomClient(ClientSettings(inference_addr=shapes_server.address))
    yield front_end
    front_end.close()


@pytest.fixture(scope="module")
def red_left(client):
    """A picture the service made of "a red circle on the left" (25 steps, seed 3)."""
    return collect(client.generate(request(RED_LEFT, seed=3, num_inference_steps=25), "student-9"))


def test_a_training_page_shows_pictures_that_are_what_their_captions_say(client):
    page = client.training_samples()
    assert page.available and page.training_set_size == 40000 and page.offset == 0
    assert [(r.pictures, r.steps, r.batch_size) for r in page.runs] == [(40000, 3000, 64), (20000, 500, 64)]
    assert [p.index for p in page.pictures] == list(range(12))
    for picture in page.pictures:
        pixels = decode_image(picture.image)
        assert pixels.shape == (64, 64, 3)
        verdict, words = judge(pixels), picture.caption
        assert verdict.colour in words.split() and verdict.shape in words.split(), (words, verdict)
        named = [p for p in POSITIONS if words.endswith(p)]
        assert not named or verdict.position == named[0], (words, verdict)
        assert picture.copies_in_training >= 1
    assert len(client.training_samples(39_990, 48).pictures) == 10


def test_a_red_circle_on_the_left_is_nearest_to_red_circles_on_the_left(client, red_left):
    answer = client.nearest_training(red_left.status.trajectory_key, k=4, student="student-9")
    assert answer.available and answer.sample_size == 5000 and answer.training_set_size == 40000
    assert 400 < answer.distinct_in_sample < 5000  # most of the sample are copies of a few hundred pictures
    assert decode_image(answer.picture).shape == (64, 64, 3)
    assert len(answer.neighbours) == 4
    distances = [n.pixel_distance for n in answer.neighbours]
    assert distances == sorted(distances)
    nearest = answer.neighbours[0].picture
    assert "red circle on the left" in nearest.caption, [n.picture.caption for n in answer.neighbours]
    verdict = judge(decode_image(nearest.image))
    assert (verdict.colour, verdict.shape, verdict.position) == ("red", "circle", "on the left")
    assert nearest.copies_in_training > 20  # a heavily duplicated picture, as Carlini et al. found copied
    assert answer.copy_pixel_distance > 0  # even a perfect copy leaves through the decoder changed
    assert all(n.latent_distance > 0 for n in answer.neighbours)
    again = client.nearest_training(red_left.status.trajectory_key, k=4, student="student-9")
    assert again == answer


def test_the_search_is_the_brute_force_search_on_a_sample(shapes_server, red_left):
    """Every one of 300 training pictures compared one by one (copies too), against the kept sample's answer."""
    model = shapes_server.classroom.model
    training = TrainingSet.of(model)
    sample = TrainingSample(model, training, size=300)
    found = sample.search(red_left.image, k=6)

    picture = at_model_size(red_left.image, 64).astype(np.float64)
    latent = encode_latents(model, at_model_size(red_left.image, 64)[None])[0].astype(np.float64)
    best: dict[object, tuple[float, int]] = {}  # each distinct picture's distance and first index
    for index, spec in enumerate(training.specs[:300]):
        distance = float(np.sqrt(np.mean((picture_of(spec).astype(np.float64) - picture) ** 2)))
        best.setdefault(spec, (distance, index))
    ranked = sorted(best.values())[:6]
    assert [n.picture.index for n in found.neighbours] == [index for _, index in ranked]
    assert [n.pixel_distance for n in found.neighbours] == pytest.approx([d for d, _ in ranked], abs=1e-4)
    for neighbour in found.neighbours:  # each latent encoded alone
        own = encode_latents(model, picture_of(training.specs[neighbour.picture.index])[None])[0]
        expected = np.sqrt(np.mean((own.astype(np.float64) - latent) ** 2))
        assert neighbour.latent_distance == pytest.approx(expected, rel=1e-4)
    assert found.sample_size == 300 and found.distinct_in_sample == len(best)


def test_a_removed_student_is_refused_and_a_huge_k_is_one_search_kept(shapes_server, client, red_left):
    key = red_left.status.trajectory_key
    student = ClassroomClient(ClientSettings(inference_addr=shapes_server.address), class_name="learned-9")
    try:
        student.join_class("Finn", "tab-1")
        answers = [student.nearest_training(key, k, "s-finn", "Finn") for k in (K_MAX, K_MAX + 1, 10**6)]
        assert len(answers[0].neighbours) == K_MAX and answers[1:] == answers[:1] * 2
        kept = [k for (picture, k) in shapes_server.classroom.learned._answers if picture == key]
        assert K_MAX in kept and set(kept) <= {4, K_MAX}  # k = 9 and a million made no new search: served as 8
        client.remove_student(TEACHER_CODE, "learned-9", "Finn")
        for call in (lambda: student.nearest_training(key, 4, "s-finn", "Finn"),
                     lambda: student.training_samples(0, 4, "s-finn", "Finn")):  # fmt: skip
            with pytest.raises(StudentError) as refused:
                call()
            assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED and "removed" in str(refused.value)
    finally:
        student.close()


def test_a_picture_the_service_did_not_keep_is_not_found(client):
    with pytest.raises(StudentError) as refused:
        client.nearest_training("0123456789abcdef" * 4)
    assert refused.value.code == grpc.StatusCode.NOT_FOUND and "Make it again" in str(refused.value)


def test_dog_is_a_word_it_never_learned_and_its_vector_is_shorter(client):
    tokens = [t for t in client.tokenize("a red dog on the left").tokens if t.text.strip()]
    dog = next(t for t in tokens if t.text == "dog")
    learned = [t for t in tokens if t.known and t.text in ("a", "red", "on", "the", "left")]
    assert not dog.known and len(learned) == 5
    assert 0 < dog.input_norm < min(t.input_norm for t in learned)
    trained = client.tokenize(" ".join([*PALETTE, *SHAPES])).tokens
    assert all(t.input_norm > dog.input_norm for t in trained if t.known and t.text.strip() in [*PALETTE, *SHAPES])


def test_a_model_with_random_weights_says_it_has_no_training_pictures(server):
    tiny = ClassroomClient(ClientSettings(inference_addr=server.address))
    try:
        page = tiny.training_samples()
        assert not page.available and page.unavailable_reason == RANDOM_UNAVAILABLE and not page.pictures
        assert tiny.nearest_training("abc").unavailable_reason == RANDOM_UNAVAILABLE
        assert all(t.input_norm > 0 and t.known for t in tiny.tokenize("a dog").tokens[:4])
    finally:
        tiny.close()


def test_how_it_learned_the_same_prompts_go_from_blobs_to_shapes(client):
    """The checkpoints of a run of Shapes' recipe: the finished model paints what the captions say, the first not."""
    page = client.training_samples()
    steps = sorted({c.step for c in page.checkpoints})
    captions = list(dict.fromkeys(c.caption for c in page.checkpoints))
    assert len(captions) == 4 and len(steps) >= 4 and len(page.checkpoints) == len(captions) * len(steps)
    assert {c.step for c in page.checkpoints if c.finished} == {steps[-1]}  # the last column: the model in use
    assert "re-run" in page.checkpoints_run and "same starting noise" in page.checkpoints_run

    def right_at(step: int) -> int:
        right = 0
        for kept in (c for c in page.checkpoints if c.step == step):
            verdict, words = judge(decode_image(kept.image)), kept.caption.split()
            placed = kept.caption.endswith(verdict.position)
            right += verdict.found and verdict.colour in words and verdict.shape in words and placed
        return right

    assert right_at(steps[-1]) >= 3
    assert right_at(steps[0]) < right_at(steps[-1])
