"""The front end's side of the shared client: one per server process, and who the student is."""

from __future__ import annotations

import uuid

import streamlit as st

from frontend.settings import FrontendSettings
from services.common.client import RECONNECT_DELAYS_S, ClassroomClient, StudentError

__all__ = ["RECONNECT_DELAYS_S", "ClassroomClient", "StudentError", "get_client", "student_id"]


def student_id() -> str:
    """The id of this browser session: the service allows each student one generation at a time."""
    if "student_id" not in st.session_state:
        st.session_state.student_id = uuid.uuid4().hex
    return st.session_state.student_id


@st.cache_resource
def get_client() -> ClassroomClient:
    """The one client every student session shares (one channel, many streams)."""
    settings = FrontendSettings()
    return ClassroomClient(settings, class_name=settings.class_name)
