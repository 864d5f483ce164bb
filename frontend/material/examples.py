"""The lesson examples the pages open with, from the service's catalog, each marked ready or not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from frontend.client import client_for
from frontend.drawing.views import guarded
from frontend.language import _, ngettext, number
from frontend.stream.load import expected_seconds, load, ready
from frontend.stream.wire import TrajectoryView
from services.common.api import pb


@dataclass(frozen=True)
class Example:
    id: str
    labels: dict[str, str]
    request_bytes: bytes
    cached: bool
    server: str = ""  # the service whose catalog lists it: "" for the main one (`frontend.client.client_for`)

    @property
    def request(self) -> pb.GenerateRequest:
        return pb.GenerateRequest.FromString(self.request_bytes)

    def label(self, name: str, default: str = "") -> str:
        return self.labels.get(name, default)

    @property
    def ready(self) -> bool:
        """Opening it needs no model work: it is in the service's cache, or this front end holds it."""
        return self.cached or ready(self.request, client=client_for(self.server))

    def readiness(self) -> str:
        """A few words for a picker: ready, or how long it would take."""
        if self.ready:
            return _("ready")
        seconds = expected_seconds(self.request)
        steps = self.request.num_inference_steps
        if seconds is None:
            if steps:
                return ngettext(
                    "not ready: {count} step to compute", "not ready: {count} steps to compute", steps
                ).format(count=number(steps))
            return _("not ready: computed when opened")
        return _("not ready: about {seconds} s to compute").format(seconds=number(max(1, round(seconds))))


# Fresh enough: what this front end computed itself is marked ready at once (`frontend/stream/load.py`, ready).
@st.cache_data(ttl=30, show_spinner=False)
def examples(collection: str, server: str = "") -> list[Example]:
    """The entries of one catalog collection (an empty list if the catalog lacks it); `server`: see `Example`."""
    listing = client_for(server).lessons(collection)
    return [
        Example(
            id=entry.id,
            labels=dict(entry.labels),
            request_bytes=entry.request.SerializeToString(deterministic=True),
            cached=entry.cache_state in (pb.CACHE_STATE_LESSON, pb.CACHE_STATE_AD_HOC),
            server=server,
        )
        for entry in listing.entries
    ]


def where(items: list[Example], **labels: str) -> list[Example]:
    return [item for item in items if all(item.labels.get(k) == v for k, v in labels.items())]


def values(items: list[Example], name: str) -> list[str]:
    """The distinct values of a label, in catalog order."""
    return list(dict.fromkeys(item.labels[name] for item in items if name in item.labels))


def open_prompt_example(key: str, guidance: str = "7") -> tuple[Example, TrajectoryView]:
    """A select box over the prompt-pair examples at one guidance scale, and the chosen one's trajectory.

    Stops the page, after saying why, when there is no example or it cannot be loaded.
    """
    items = where(examples("prompt-pairs"), guidance_scale=guidance)
    if not items:
        st.info(_("No lesson examples are set up on this server; try the Playground instead."))
        st.stop()

    def describe(item: Example) -> str:
        return _("{prompt} (seed {seed})").format(prompt=item.request.prompt, seed=item.label("seed"))

    example = pick_example(_("Example"), items, key, describe)
    meanwhile = st.empty()
    if not example.ready:
        with meanwhile.container():
            offer_ready(items, key, describe)
    run = guarded(lambda: load(example.request, lesson_entry=example.id, cold=not example.ready,
                               client=client_for(example.server)))  # fmt: skip
    meanwhile.empty()
    if run is None:
        st.stop()
    return example, run


def pick_example(label: str, items: list[Example], key: str, describe: Callable[[Example], str]) -> Example:
    """A select box over examples, each marked ready or not; the choice outlives the marks changing.

    Streamlit sends a choice back as its text, and an example's text changes once it is
    computed. So the box holds example ids, and its value is set again (by id) before it is
    drawn: the new text then goes with the same choice, in the same box.
    """
    ids = [item.id for item in items]
    chosen = st.session_state.get(key)  # an id: picked in the box (read through last run's texts), or offered
    st.session_state[key] = chosen if chosen in ids else ids[0]
    labels = {item.id: f"{describe(item)} · {item.readiness()}" for item in items}
    choice = st.selectbox(label, ids, format_func=labels.__getitem__, key=key)
    return items[ids.index(choice)]


def choose(key: str, example_id: str) -> None:
    """Pick an example for the box `pick_example` draws under `key` (a button's callback)."""
    st.session_state[key] = example_id


def offer_ready(items: list[Example], key: str, describe: Callable[[Example], str], most: int = 4) -> None:
    """While an example computes: the ready ones, one click away (the computing goes on meanwhile)."""
    ready_now = [item for item in items if item.ready][:most]
    if not ready_now:
        return
    st.caption(_("This example is computed for you now. These are ready at once:"))
    for item in ready_now:
        st.button(
            describe(item), key=f"{key}-ready-{item.id}", on_click=choose, args=(key, item.id), type="tertiary",
        )  # fmt: skip
