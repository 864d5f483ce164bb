"""The lesson examples the pages open with, from the service's catalog."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from frontend.client import get_client
from frontend.trajectory import TrajectoryView, load
from frontend.views import guarded
from services.common.api import pb


@dataclass(frozen=True)
class Example:
    id: str
    labels: dict[str, str]
    request_bytes: bytes
    cached: bool

    @property
    def request(self) -> pb.GenerateRequest:
        return pb.GenerateRequest.FromString(self.request_bytes)

    def label(self, name: str, default: str = "") -> str:
        return self.labels.get(name, default)


@st.cache_data(ttl=30, show_spinner=False)
def examples(collection: str) -> list[Example]:
    """The entries of one catalog collection (an empty list if the catalog lacks it)."""
    listing = get_client().lessons(collection)
    return [
        Example(
            id=entry.id,
            labels=dict(entry.labels),
            request_bytes=entry.request.SerializeToString(deterministic=True),
            cached=entry.cache_state == pb.CACHE_STATE_LESSON,
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
        st.info("No lesson examples are set up on this server; try the Playground instead.")
        st.stop()

    def describe(item: Example) -> str:
        return f"{item.request.prompt} (seed {item.label('seed')})"

    example = st.selectbox("Example", items, format_func=describe, key=key)
    run = guarded(lambda: load(example.request, lesson_entry=example.id))
    if run is None:
        st.stop()
    return example, run
