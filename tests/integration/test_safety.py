"""Safe for a classroom: the service token, the prompt blocklist, a model failure, fuzzed requests."""

import math

import grpc
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from services.common.api import (
    LESSON_METADATA,
    SERVICE_NAME,
    STUDENT_METADATA,
    TEACHER_METADATA,
    bearer,
    pb,
    pb_grpc,
)
from services.inference.diffusion.denoise import Generation
from services.inference.diffusion.probes import PROBES
from services.inference.moderation import DEFAULT_BLOCKLIST, Blocklist
from services.inference.refusals import BLOCKED_MESSAGE
from tests.integration.helpers import collect, request
from tests.support.servers import health_status, running_server, stub_for

CALLS = {
    "GetModelInfo": pb.GetModelInfoRequest(),
    "Tokenize": pb.TokenizeRequest(prompt="a cat"),
    "EncodePrompt": pb.EncodePromptRequest(prompt="a cat"),
    "ListLessons": pb.ListLessonsRequest(),
    "GetServerStats": pb.GetServerStatsRequest(),
}
TEACHER_CALLS = {
    "GetClassroom": pb.GetClassroomRequest(),
    "SetPaused": pb.SetPausedRequest(paused=False),
    "ClearQueue": pb.ClearQueueRequest(),
    "PrecomputeLessons": pb.PrecomputeLessonsRequest(),
}


def test_every_call_needs_the_token_but_health(settings):
    update = {"api_token": "s3cret-token", "redis_url": "", "teacher_code": "owl-42"}
    with running_server(settings.model_copy(update=update)) as server:
        channel, stub = stub_for(server.address)
        teacher = pb_grpc.TeacherServiceStub(channel)
        for metadata in ((), bearer("wrong"), (("authorization", "s3cret-token"),)):
            for target, calls in ((stub, CALLS), (teacher, TEACHER_CALLS)):
                for name, message in calls.items():
                    with pytest.raises(grpc.RpcError) as caught:  # the teacher code alone is not enough
                        getattr(target, name)(message, metadata=(*metadata, (TEACHER_METADATA, "owl-42")))
                    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
                    assert "API token is missing or wrong" in caught.value.details()
            with pytest.raises(grpc.RpcError) as caught:
                collect(stub.Generate(request(seed=1, num_inference_steps=1, width=64, height=64), metadata=metadata))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert health_status(channel, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
        for name, message in CALLS.items():
            getattr(stub, name)(message, metadata=bearer("s3cret-token"))
        for name, message in TEACHER_CALLS.items():
            getattr(teacher, name)(message, metadata=(*bearer("s3cret-token"), (TEACHER_METADATA, "owl-42")))
        assert collect(stub.Generate(request(seed=1, num_inference_steps=1, width=64, height=64),
                                     metadata=bearer("s3cret-token"))).final  # fmt: skip
        channel.close()


def test_blocklist_matches_whole_words_and_phrases():
    blocklist = Blocklist(["sex", "self harm"])
    assert blocklist.blocks("SEX on the beach") and blocklist.blocks("a poster about self-harm")
    assert not blocklist.blocks("a cottage in Essex") and not blocklist.blocks("myself, harmless")
    assert len(Blocklist.from_file(DEFAULT_BLOCKLIST)) > 10


def test_a_blocked_prompt_never_reaches_the_model(settings):
    with running_server(settings.model_copy(update={"blocklist": DEFAULT_BLOCKLIST, "redis_url": ""})) as server:
        channel, stub = stub_for(server.address)
        before = stub.GetServerStats(pb.GetServerStatsRequest())
        with pytest.raises(grpc.RpcError) as caught:
            collect(stub.Generate(request("a NAKED statue", seed=1, width=64, height=64)))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == BLOCKED_MESSAGE
        after = stub.GetServerStats(pb.GetServerStatsRequest())
        assert after.generations_started == before.generations_started and after.unet_calls == before.unet_calls
        assert after.blocked_prompts == before.blocked_prompts + 1
        allowed = request("a cottage in Essex", negative_prompt="blurry", seed=1, num_inference_steps=1, width=64,
                          height=64)  # fmt: skip
        assert collect(stub.Generate(allowed)).final
        # The negative prompt is moderated too: at guidance 0 the picture is the negative prompt's.
        with pytest.raises(grpc.RpcError) as caught:
            collect(stub.Generate(request("a cottage", negative_prompt="nsfw", seed=1, num_inference_steps=1)))
        assert caught.value.details() == BLOCKED_MESSAGE
        channel.close()


def test_a_model_failure_fails_that_request_alone(settings, monkeypatch):
    original = Generation.finish_step

    def failing(self, *args, **kwargs):
        if self.spec.prompt == "break the model":
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Generation, "finish_step", failing)
    with running_server(settings.model_copy(update={"redis_url": "", "max_batch_size": 4})) as server:
        channel, stub = stub_for(server.address)
        healthy = stub.Generate(request("a quiet lake", seed=2, num_inference_steps=12, width=64, height=64),
                                metadata=((STUDENT_METADATA, "a"),))  # fmt: skip
        with pytest.raises(grpc.RpcError) as caught:
            collect(stub.Generate(request("break the model", seed=3, num_inference_steps=12, width=64, height=64),
                                  metadata=((STUDENT_METADATA, "b"),)))  # fmt: skip
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert caught.value.details() == "Something went wrong inside the model while generating. Please try again."
        assert len(collect(healthy).frames) == 12  # the other request went on
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
        stats = stub.GetServerStats(pb.GetServerStatsRequest())
        assert stats.generations_failed == 1 and stats.active_generations == 0
        assert collect(stub.Generate(request("b again", seed=4, num_inference_steps=2, width=64, height=64),
                                     metadata=((STUDENT_METADATA, "b"),))).final  # fmt: skip
        channel.close()


@pytest.fixture(scope="module")
def small_server(settings):
    limits = {"redis_url": "", "max_steps": 3, "max_size": 128, "max_prompt_chars": 200, "default_steps": 2}
    with running_server(settings.model_copy(update=limits)) as server:
        channel, stub = stub_for(server.address)
        yield stub
        channel.close()


EXPECTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
extreme_ints = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, 2, 3, 8, 64, 72, 128, -1]))
extreme_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.0, 1.0, 7.5]))


@hypothesis_settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prompt=st.text(max_size=260),
    negative=st.text(max_size=40),
    seed=st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    steps=extreme_ints,
    guidance=st.one_of(st.none(), extreme_floats),
    width=extreme_ints,
    height=extreme_ints,
    scheduler=st.one_of(st.sampled_from(["", "ddim", "lms", "euler_ancestral", "pndm"]), st.text(max_size=12)),
    include=st.lists(st.one_of(st.sampled_from(sorted(PROBES)), st.text(max_size=10)), max_size=4),
)
def test_fuzzed_generate_requests_get_a_clear_status(small_server, prompt, negative, seed, steps, guidance, width,
                                                     height, scheduler, include):  # fmt: skip
    message = pb.GenerateRequest(prompt=prompt, negative_prompt=negative, num_inference_steps=steps, width=width,
                                 height=height, scheduler=scheduler)  # fmt: skip
    if seed is not None:
        message.seed = seed
    if guidance is not None:
        message.guidance_scale = guidance
    message.include.paths.extend(include)
    try:
        stream = collect(small_server.Generate(message, timeout=60))
        code = grpc.StatusCode.OK
        assert stream.final.image.data
    except grpc.RpcError as error:
        code = error.code()
        assert error.details() and "Traceback" not in error.details()
    assert code in EXPECTED, (code, message)
    if guidance is not None and math.isnan(guidance):
        assert code == grpc.StatusCode.INVALID_ARGUMENT


@hypothesis_settings(max_examples=1000, deadline=None)
@given(prompt=st.text(max_size=400))
def test_fuzzed_prompts_tokenize_or_get_a_clear_status(small_server, prompt):
    try:
        tokens = small_server.Tokenize(pb.TokenizeRequest(prompt=prompt), timeout=30)
        assert len(tokens.tokens) == 77
        small_server.EncodePrompt(pb.EncodePromptRequest(prompt=prompt), timeout=30)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert "characters long" in error.details() or "invisible or control characters" in error.details()


def test_rate_limit_counts_computed_generations_per_student(settings):
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    from tests.frontend.conftest import LESSON_CATALOG

    limited = {"rate_limit_per_minute": 1.0, "rate_limit_burst": 2, "catalog": LESSON_CATALOG}
    with running_server(settings.model_copy(update=limited)) as server:
        channel, stub = stub_for(server.address)

        def generate(prompt, who, seed=5, lesson=""):
            metadata = ((STUDENT_METADATA, who),) + (((LESSON_METADATA, lesson),) if lesson else ())
            spec = request(prompt, seed=seed, num_inference_steps=1, width=64, height=64)
            return collect(stub.Generate(spec, metadata=metadata))

        generate("rate one", "fast")
        generate("rate two", "fast")
        with pytest.raises(grpc.RpcError) as caught:
            generate("rate three", "fast")
        error = caught.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "faster than the class allows. Please try again in" in error.details()
        retry = error_details_pb2.RetryInfo()
        assert rpc_status.from_call(error).details[0].Unpack(retry)
        assert 30 <= retry.retry_delay.seconds <= 61  # one token a minute, half of one left or less

        assert generate("rate one", "fast").status.cache_hit  # served from the cache: no token needed
        assert generate("rate three", "slow").final  # another student has a bucket of their own
        entry = stub.ListLessons(pb.ListLessonsRequest(collection="seed-gallery")).entries[0]
        lesson = collect(stub.Generate(entry.request, metadata=((STUDENT_METADATA, "fast"),
                                                                (LESSON_METADATA, entry.id))))  # fmt: skip
        assert lesson.final  # opening a catalog entry never counts
        with pytest.raises(grpc.RpcError) as caught:
            generate("not a lesson", "fast", lesson=entry.id)  # a lesson tag on another request does not help
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        channel.close()


@hypothesis_settings(max_examples=500, deadline=None)
@given(collection=st.one_of(st.text(max_size=60), st.sampled_from(["", "prompt-pairs", "seed-gallery"])))
def test_fuzzed_lesson_listings_never_fail(small_server, collection):
    listing = small_server.ListLessons(pb.ListLessonsRequest(collection=collection), timeout=30)
    assert all(entry.collection == collection for entry in listing.entries) or not collection
