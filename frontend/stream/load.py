"""A lesson's trajectory, whole: asked with the probes the pages draw, kept for every session, shown while it comes.

From this process's store when a session already opened it, else from the service
(its cache when the example was precomputed, or computed now, shown step by step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from frontend.client import ClassroomClient, StudentError, client_for, get_client
from frontend.language import N_
from frontend.stream.progress import Phase
from frontend.stream.reader import FAILED_SENTENCE, StreamReader
from frontend.stream.store import lesson_store
from frontend.stream.waiting import SHOW_AFTER_S, follow
from frontend.stream.wire import TrajectoryView
from services.common.api import pb
from services.common.include_mask import ON_REQUEST_PROBES, Probe

THIS_EXAMPLE = N_("this example")  # what a lesson's status calls its run (translated where shown)
# What the lesson pages ask for: every cheap probe but the text embeddings (lesson 2 asks for those itself).
LESSON_PROBES = [
    Probe.LATENT,
    Probe.PREDICTED_X0,
    Probe.LATENT_PREVIEW,
    Probe.PREDICTED_X0_PREVIEW,
    Probe.NOISE_PREDICTIONS,
]


@st.cache_data(ttl=60, show_spinner=False)
def _server_on_request_defaults(address: str) -> list[str]:
    return sorted(ON_REQUEST_PROBES.intersection(client_for(address).model_info().default_include_paths))


def server_defaults(client: ClassroomClient | None = None) -> frozenset[str]:
    """The probes computed on request that the server gives by default (on Shapes: each step's guess decoded).

    The service decides (`probes.default_probes`); its lesson examples carry the same, so a
    lesson opened with them finds its precomputed trajectory. `client`: the main service's when None.
    """
    try:
        client = client or get_client()
        return frozenset(_server_on_request_defaults(client.settings.inference_addr))  # per server
    except StudentError:  # the service cannot answer now: the request goes without, and says so in its pictures
        return frozenset()


def request_with(
    request: pb.GenerateRequest, probes: Sequence[str] | None = None, client: ClassroomClient | None = None
) -> pb.GenerateRequest:
    """The request as the lessons send it: the probes they draw, those computed on request it names, the server's.

    A catalog entry's request names the costly probes (cross-attention maps, decoded guesses)
    its lesson was rendered with: they are part of its identity, so they are kept. The server's
    defaults among them are added to every request (the catalog's entries carry them too).
    """
    message = pb.GenerateRequest()
    message.CopyFrom(request)
    del message.include.paths[:]
    wanted = probes or LESSON_PROBES
    on_request = (ON_REQUEST_PROBES.intersection(request.include.paths) | server_defaults(client)) - set(wanted)
    message.include.paths.extend([*wanted, *sorted(on_request)])
    return message


def store_key(message: pb.GenerateRequest, client: ClassroomClient | None = None) -> bytes:
    """The request's name in this process's store: a service beside the main one paints with another model."""
    key = message.SerializeToString(deterministic=True)
    if client is None or client is get_client():
        return key
    return client.settings.inference_addr.encode() + b"\0" + key


def ready(
    request: pb.GenerateRequest, probes: Sequence[str] | None = None, client: ClassroomClient | None = None
) -> bool:
    """Whether this process already holds the trajectory (opening it needs no model work)."""
    return lesson_store().finished(store_key(request_with(request, probes, client), client)) is not None


def expected_seconds(request: pb.GenerateRequest) -> float | None:
    """How long computing it would take on this server now, from the steps it has timed lately."""
    pace = lesson_store().pace.expect(request)
    return None if pace is None else pace * request.num_inference_steps


def load(
    request: pb.GenerateRequest,
    probes: Sequence[str] | None = None,
    lesson_entry: str = "",
    *,
    planned: str = THIS_EXAMPLE,
    cold: bool = False,
    client: ClassroomClient | None = None,
) -> TrajectoryView:
    """A whole trajectory (from the cache when it was precomputed), kept for every session.

    While it takes more than a moment, the page shows what is happening where this is
    called, with the steps as they come (at once when it is known to be `cold`: not
    cached anywhere). `lesson_entry` names the catalog entry being opened: computed, it
    is kept as the lesson's. `client`: the service to ask (the main one when None; lessons 9
    and 10 ask Shapes'). Raises StudentError when it cannot be had.
    """
    message = request_with(request, probes, client)
    key = store_key(message, client)
    store = lesson_store()
    finished = store.finished(key)
    if finished is not None:
        return finished

    def start(on_end: Callable[[StreamReader], None]) -> StreamReader:
        return StreamReader(message, lesson_entry=lesson_entry, expected_step_s=store.pace.expect(message),
                            on_end=on_end, client=client)  # fmt: skip

    reader = store.reader(key, start)
    slot = st.empty()
    state = follow(reader, slot, planned=planned, show_steps=True, show_after_s=0.0 if cold else SHOW_AFTER_S)
    slot.empty()
    if state.phase != Phase.DONE or reader.trajectory.image is None:
        raise StudentError(state.message or FAILED_SENTENCE)
    return reader.trajectory
