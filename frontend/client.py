"""The front end's side of the shared client: one per server process, and who the student is.

Where the student's browser connects from is `frontend/access/transport.py` (`browser_address`).
"""

from __future__ import annotations

import hashlib
import uuid

import streamlit as st

from frontend.settings import FrontendSettings
from services.common.client import RECONNECT_DELAYS_S, ClassroomClient, StudentError
from services.common.text import fold_name

__all__ = [
    "RECONNECT_DELAYS_S",
    "ClassroomClient",
    "StudentError",
    "client_for",
    "get_client",
    "shapes_beside",
    "shapes_client",
    "student_id",
]


def student_id() -> str:
    """Who this student is, to the service: one generation at a time, and their own rate limit.

    Signed in with the class code, a student is their class and display name, folded as
    the roster compares names (Alice in fullwidth or Cyrillic letters is Alice): signing
    in again, from a reload or another browser, is the same student (the same bucket,
    the same place in the queue). Without a class code, each browser session is one.
    """
    name = st.session_state.get("display_name")
    if name:
        settings = FrontendSettings()
        who = f"{settings.class_name}\0{fold_name(name)}".encode()
        return "student-" + hashlib.sha256(who).hexdigest()[:32]
    if "student_id" not in st.session_state:
        st.session_state.student_id = uuid.uuid4().hex
    return st.session_state.student_id


@st.cache_resource
def get_client() -> ClassroomClient:
    """The one client every student session shares (one channel, many streams)."""
    settings = FrontendSettings()
    return ClassroomClient(settings, class_name=settings.class_name)


@st.cache_resource
def _client_at(address: str) -> ClassroomClient:
    settings = FrontendSettings()
    return ClassroomClient(settings.model_copy(update={"inference_addr": address}), class_name=settings.class_name)


def client_for(address: str) -> ClassroomClient:
    """The shared client of the service at `address`: the main one's, or one beside it (`shapes_client`)."""
    main = get_client()
    return main if not address or address == main.settings.inference_addr else _client_at(address)


def shapes_beside() -> bool:
    """Whether lessons 9 and 10 ask a Shapes service beside the main one (whose model is then another)."""
    return bool(FrontendSettings().shapes_addr)


def shapes_client() -> ClassroomClient:
    """The service lessons 9 and 10 ask: Shapes beside the main model (CLASSROOM_SHAPES_ADDR), else the main one.

    Both share the class (its roster, codes and limits live in Redis), so a student signed in
    through the main service is the same student there.
    """
    return client_for(FrontendSettings().shapes_addr)
