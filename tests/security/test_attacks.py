"""The attacks a student on the school network could try, each against a real stack, each with its defence.

Real gRPC servers on loopback, real Redis (with a password where the attack is
on Redis). What is checked is what the attacker gets: a refusal with a clear
sentence, never the thing they were after.
"""

from __future__ import annotations

import time

import grpc
import pytest

from services.common.api import NAME_METADATA, STUDENT_METADATA, pb, store_pb, unbatch
from services.common.secrets import ensure_secrets
from services.common.trajectories import Namespace, pack, redis_key
from services.inference.moderation import DEFAULT_BLOCKLIST, Blocklist
from services.inference.refusals import BLOCKED_MESSAGE
from services.inference.server import InferenceServer, UnsafeSettings
from services.inference.settings import InferenceSettings
from services.precompute.packs import export_lessons, import_lessons
from tests.conftest import CACHE_SECRET
from tests.integration.helpers import collect, request
from tests.support.redis_server import RedisServer
from tests.support.servers import running_server, stub_for


def small(prompt: str = "a paper boat", **fields) -> pb.GenerateRequest:
    return request(prompt, num_inference_steps=fields.pop("steps", 3), width=64, height=64, **fields)


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# -- nothing open by default -------------------------------------------------


def test_the_service_will_not_listen_on_the_network_without_a_token(settings):
    with pytest.raises(UnsafeSettings, match="CLASSROOM_API_TOKEN"):
        InferenceServer(settings.model_copy(update={"host": "0.0.0.0", "api_token": None}))


def test_the_defaults_listen_on_loopback_only():
    defaults = InferenceSettings()
    assert defaults.host == "127.0.0.1" and defaults.metrics_host == "127.0.0.1"
    assert not defaults.open_to_the_network


def test_first_start_secrets_are_random_and_kept(tmp_path):
    made = ["api_token", "cache_secret", "class_code", "redis_password", "teacher_code"]
    assert sorted(ensure_secrets(tmp_path)) == made
    values = {p.name: p.read_text() for p in (tmp_path / "service").iterdir()}
    tokens = [values[name] for name in ("api_token", "cache_secret", "redis_password")]
    assert len(set(tokens)) == 3 and all(len(v.strip()) >= 32 for v in tokens)
    assert len(values["teacher_code"].strip().split("-")) == 5  # four words and four digits
    assert ensure_secrets(tmp_path) == []  # a restart keeps them: cached lessons stay valid
    assert {p.name: p.read_text() for p in (tmp_path / "service").iterdir()} == values


def test_redis_with_a_password_serves_only_who_has_it(settings, tmp_path):
    ensure_secrets(tmp_path / "secrets")
    password_file = tmp_path / "secrets" / "service" / "redis_password"
    protected = RedisServer(tmp_path / "redis", password=password_file.read_text().strip()).start()
    try:
        bare = f"redis://127.0.0.1:{protected.port}/0"
        # As compose starts it: a bare URL, and the password read from the secrets volume.
        fields = settings.model_dump(exclude={"redis_url", "redis_password_file"})
        with_file = InferenceSettings(**fields, redis_url=bare, redis_password_file=password_file)
        with running_server(with_file) as server:
            channel, stub = stub_for(server.address)
            assert collect(stub.Generate(small(seed=1))).status.source == pb.TRAJECTORY_SOURCE_COMPUTED
            assert collect(stub.Generate(small(seed=1))).status.source == pb.TRAJECTORY_SOURCE_CACHE
            channel.close()
        # Without the password the cache stays shut: the service says so and keeps generating, uncached.
        with running_server(settings.model_copy(update={"redis_url": bare})) as server:
            channel, stub = stub_for(server.address)
            first = collect(stub.Generate(small(seed=2)))
            assert first.status.source == pb.TRAJECTORY_SOURCE_COMPUTED
            stats = stub.GetServerStats(pb.GetServerStatsRequest())
            assert not stats.cache_available and "cannot be reached" in stats.cache_status
            channel.close()
    finally:
        protected.stop()


# -- identity ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        (((STUDENT_METADATA, "teacher:precompute"),), "belongs to the server"),
        (((STUDENT_METADATA, "x" * 500),), "too long"),
        (((NAME_METADATA, ("Ms Rivera" + "\u202e" + "x" * 7000).encode()),), "at most 40 characters"),
        (((NAME_METADATA, b"Sam\x00\x1b[2J"),), "control characters"),
    ],
)
def test_no_one_can_be_the_server_or_bring_an_unprintable_name(stub, metadata, field):
    error = refused(lambda: collect(stub.Generate(small(seed=5), metadata=metadata)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.details()


# -- trustworthy cache and packs ----------------------------------------------


def forge(redis_server: RedisServer, key: str, record: store_pb.TrajectoryRecord, secret: bytes) -> None:
    with redis_server.client() as client:
        client.set(key, pack(record, secret))


def stored_record(redis_server: RedisServer, key: str) -> store_pb.TrajectoryRecord:
    from services.common.trajectories import unpack

    with redis_server.client() as client:
        return unpack(client.get(key), CACHE_SECRET.encode())


@pytest.mark.parametrize("forgery", ["another secret", "another request in the header", "too many frames"])
def test_a_forged_cache_entry_is_never_served(stub, other_replica_stub, redis_server, forgery):
    spec = small("a lantern in the fog", seed={"another secret": 41, "another request in the header": 42,
                                                 "too many frames": 43}[forgery])  # fmt: skip
    original = collect(stub.Generate(spec))
    key = redis_key(Namespace.AD_HOC, original.status.trajectory_key)
    record = stored_record(redis_server, key)
    secret = CACHE_SECRET.encode()
    if forgery == "another secret":
        final = record.events[-1].final
        final.image.data = b"not the model's picture"
        secret = b"what an attacker guessed"
    elif forgery == "another request in the header":
        record.events[0].header.request.prompt = "something else entirely"
    else:
        frame = record.events[1]
        for _ in range(3000):
            record.events.insert(1, frame)
    forge(redis_server, key, record, secret)
    again = collect(other_replica_stub.Generate(spec))  # a replica with no copy in memory reads the forgery
    assert again.status.source == pb.TRAJECTORY_SOURCE_COMPUTED  # recomputed, not served
    assert len(again.frames) == 3
    assert again.final.image.data == original.final.image.data


def test_a_pack_from_another_server_is_checked_and_signed_anew(stub, redis_server, tmp_path, fresh_redis):
    collect(stub.Generate(small("a kite", seed=61)))
    # Another school's pack: the same trajectories signed with their secret.
    theirs = fresh_redis("theirs")
    with redis_server.client() as ours, theirs.client() as client:
        for key in ours.scan_iter(match="classroom:*:adhoc:*"):
            from services.common.trajectories import unpack

            try:
                record = unpack(ours.get(key), CACHE_SECRET.encode())
            except Exception:
                continue
            client.set(key.decode().replace(":adhoc:", ":lesson:"), pack(record, b"their secret"))
        pack_file = tmp_path / "theirs.pack"
        assert export_lessons(client, pack_file, b"their secret") >= 1
    here = fresh_redis("here")
    with here.client() as client:
        summary = import_lessons(client, pack_file, CACHE_SECRET.encode())
    assert summary.imported == summary.signed_anew >= 1 and summary.rejected == 0
    # A pack whose picture was swapped for bytes that do not decode is refused, whoever signed it.
    with theirs.client() as client:
        key = next(iter(client.scan_iter(match="classroom:*:lesson:*")))
        from services.common.trajectories import unpack

        record = unpack(client.get(key), b"their secret")
        record.events[-1].final.image.data = b"\x89PNG but not really"
        client.set(key, pack(record, b"their secret"))
        assert export_lessons(client, pack_file, b"their secret") >= 1
    with fresh_redis("again").client() as client:
        summary = import_lessons(client, pack_file, CACHE_SECRET.encode())
    assert summary.rejected >= 1


# -- moderation that normalises -------------------------------------------------


@pytest.mark.parametrize(
    "evasion",
    [
        "SEX on the beach",
        "a s.e.x poster",
        "s\u200bex",  # a zero-width space inside
        "\uff53\uff45\uff58",  # fullwidth letters
        "\u0455\u0435\u0445",  # Cyrillic look-alikes
        "5ex",
        "nudes",
        "the sexes",
        "p-o-r-n",
        "\ua731\u1d07x",  # small capitals: s, e, then a plain x
        "\u0274\u1d1c\u1d05\u1d07",  # ɴᴜᴅᴇ
        "n\u00fcde",  # nüde, the accent composed
        "nu\u0308de",  # the same with a combining mark
        "nak\u00e9d",  # nakéd
        "pr0n",
        "pornography",
        "\U0001f1f3\U0001f1fa\U0001f1e9\U0001f1ea",  # regional-indicator letters N U D E
        "s3x",
        "\u24dd\u24e4\u24d3\u24d4",  # circled letters
        "\U0001d427\U0001d42e\U0001d41d\U0001d41e",  # mathematical bold letters
    ],
)
def test_blocklist_evasions_are_caught(evasion):
    assert Blocklist.from_file(DEFAULT_BLOCKLIST).blocks(evasion)


@pytest.mark.parametrize(
    "harmless",
    ["a cottage in Essex", "a glass of water", "buses at night", "a red circle", "a café in Zürich", "a prone lion",
     "\U0001f1eb\U0001f1f7 flag of France", "7 red circles"],
)  # fmt: skip
def test_harmless_prompts_pass(harmless):
    assert not Blocklist.from_file(DEFAULT_BLOCKLIST).blocks(harmless)


def test_the_negative_prompt_is_moderated_too(settings):
    config = settings.model_copy(update={"blocklist": DEFAULT_BLOCKLIST})
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        # At guidance 0 the picture is the negative prompt's: it is checked like the prompt.
        error = refused(lambda: collect(stub.Generate(small(negative_prompt="n.u.d.e", guidance_scale=0))))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details() == BLOCKED_MESSAGE
        channel.close()


# -- errors that stay clear --------------------------------------------------------


def test_control_characters_in_a_prompt_get_a_sentence(stub):
    error = refused(lambda: collect(stub.Generate(small("a cat\x00\u202e on a mat"))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invisible or control characters (U+0000, U+202E)" in error.details()


def test_echoed_values_are_short_and_include_masks_bounded(stub):
    long_name = "x" * 5000
    error = refused(lambda: collect(stub.Generate(small(scheduler=long_name))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and len(error.details()) < 300
    many = small(include=[f"probe{i}" for i in range(1000)])
    error = refused(lambda: collect(stub.Generate(many)))
    assert "at most 16 paths" in error.details()


def test_invalid_calls_do_not_make_a_crowd(stub, server):
    arrivals = server.classroom.crowd._arrivals
    before = list(arrivals)
    for _ in range(40):
        refused(lambda: collect(stub.Generate(small("", seed=1))))  # empty prompt: invalid
    assert list(arrivals) == before  # cached replays are not held back by a flood of bad calls


# -- limits that hold ------------------------------------------------------------


def generate_as(stub, who: str, prompt: str, steps: int = 1, seed: int = 5):
    spec = request(prompt, seed=seed, num_inference_steps=steps, width=64, height=64)
    return stub.Generate(spec, metadata=((STUDENT_METADATA, who),))


def test_a_refused_request_costs_no_token(settings, fresh_redis):
    limited = {"rate_limit_per_minute": 0.5, "rate_limit_burst": 2, "redis_url": fresh_redis("limits").url}
    with running_server(settings.model_copy(update=limited)) as server:
        channel, stub = stub_for(server.address)
        # A long generation keeps the student busy: clicking again (another prompt) is refused, for free.
        running = generate_as(stub, "eager", "a long walk", steps=150)
        next(iter(running))  # the stream has started: the student is busy
        for attempt in range(5):
            error = refused(lambda attempt=attempt: collect(generate_as(stub, "eager", f"impatient {attempt}")))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "already have a picture" in error.details()
        running.cancel()
        deadline = time.monotonic() + 120  # the cancelled job leaves at its next step (a busy CPU's step is slow)
        while server.call(server.classroom.scheduler.stats).active_generations:
            assert time.monotonic() < deadline, "the cancelled picture did not leave"
            time.sleep(0.01)
        # Two tokens were in the bucket: the long one took one, the five refusals none.
        assert collect(generate_as(stub, "eager", "after waiting")).final
        error = refused(lambda: collect(generate_as(stub, "eager", "one too many")))
        assert "faster than the class allows" in error.details()
        channel.close()


# With Redis away, generation fails closed: tests/security/test_class_limits.py.


def test_text_calls_are_limited_per_student(settings):
    limited = {"text_rate_limit_per_minute": 1.0, "text_rate_limit_burst": 3}
    with running_server(settings.model_copy(update=limited)) as server:
        channel, stub = stub_for(server.address)
        mine = ((STUDENT_METADATA, "typist"),)
        for _ in range(3):
            stub.Tokenize(pb.TokenizeRequest(prompt="a fox"), metadata=mine)
        error = refused(lambda: stub.EncodePrompt(pb.EncodePromptRequest(prompt="a fox"), metadata=mine))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(stub.Tokenize(pb.TokenizeRequest(prompt="a fox"), metadata=((STUDENT_METADATA, "other"),)).tokens)
        channel.close()


def test_one_computer_holds_at_most_three_places_whatever_names_it_uses(settings):
    from services.common.api import ADDRESS_METADATA

    config = settings.model_copy(update={"max_batch_size": 1, "redis_url": ""})
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        server.classroom.pause(True)  # the teacher paused: everything asked for waits in the queue
        streams = []
        for name in ("one", "two", "three"):
            metadata = ((STUDENT_METADATA, name), (ADDRESS_METADATA, "10.0.0.7"))
            call = stub.Generate(small(f"a long {name}", steps=150, seed=9), metadata=metadata)
            next(iter(call))  # admitted: running or waiting
            streams.append(call)
        fourth = ((STUDENT_METADATA, "four"), (ADDRESS_METADATA, "10.0.0.7"))
        error = refused(lambda: collect(stub.Generate(small("one more", seed=9), metadata=fourth)))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "network address already has 3 pictures" in error.details()
        elsewhere = ((STUDENT_METADATA, "four"), (ADDRESS_METADATA, "10.0.0.8"))
        waiting = stub.Generate(small("from another machine", seed=9), metadata=elsewhere)
        assert next(unbatch(waiting)).WhichOneof("event") == "status"  # another machine still gets a place
        for call in (*streams, waiting):
            call.cancel()
        server.classroom.pause(False)
        channel.close()


# -- names: one live session each; the teacher can remove one ----------------


def test_a_name_in_use_cannot_be_taken_and_the_teacher_can_remove_one(settings):
    from services.common.api import SIGNED_OUT
    from services.common.client import ClassroomClient, ClientSettings, StudentError

    config = settings.model_copy(update={"max_batch_size": 1, "redis_url": "", "teacher_code": "owl-42"})
    with running_server(config) as server:
        client = ClassroomClient(ClientSettings(inference_addr=server.address), class_name="7B")
        client.join_class("Ms Rivera", "tab-1", "10.0.0.5")
        # Another computer on the network cannot be the same person while that tab is open.
        with pytest.raises(StudentError, match="already signed in as 'ms rivera'") as caught:
            client.join_class("ms rivera", "tab-2", "10.0.0.66")
        assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS
        # One computer cannot sit in the class under many names (three, as for generations).
        for name in ("a", "b"):
            client.join_class(name, f"tab-{name}", "10.0.0.5")
        with pytest.raises(StudentError, match="under 3 names"):
            client.join_class("c", "tab-c", "10.0.0.5")
        listed = client.classroom("owl-42").students
        assert [s.name for s in listed] == ["a", "b", "Ms Rivera"] and {s.class_name for s in listed} == {"7B"}

        # The teacher removes the name: its waiting picture stops, its tab is signed out, the name stays refused.
        server.classroom.pause(True)
        waiting = client.generate(small("a paper boat", steps=20, seed=3), "student-rivera", name="Ms Rivera")
        assert next(waiting).WhichOneof("event") == "status"
        with pytest.raises(StudentError, match="teacher code"):  # a student cannot remove anyone
            client.remove_student("guess", "7B", "a")
        assert client.remove_student("owl-42", "7B", "MS RIVERA")
        with pytest.raises(StudentError, match="Your teacher removed your name"):
            list(waiting)
        with pytest.raises(StudentError) as caught:
            client.join_class("Ms Rivera", "tab-1", "10.0.0.5")
        assert caught.value.reason == SIGNED_OUT and "Your teacher removed the name" in str(caught.value)
        with pytest.raises(StudentError, match="Your teacher removed the name"):
            list(client.generate(small(seed=4), "student-rivera-2", name="Ms Rivera"))
        assert [(s.name, s.removed) for s in client.classroom("owl-42").students if s.removed] == [("Ms Rivera", True)]
        assert server.classroom.scheduler.stats().queued_generations == 0
        server.classroom.pause(False)
        assert client.remove_student("owl-42", "7B", "Ms Rivera", let_back=True)
        client.join_class("Ms Rivera", "tab-3", "10.0.0.5")
        client.close()
