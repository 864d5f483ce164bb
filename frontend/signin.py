"""The class code and display name a student gives before any lesson (when the class has a code)."""

from __future__ import annotations

import hmac
import math

import streamlit as st

from frontend.guard import record_try, wait_before_trying
from frontend.settings import FrontendSettings
from services.common.text import name_problem

WRONG_CODE = "That class code is not right. Ask your teacher for it."
TOO_MANY_TRIES = "Too many wrong codes from this computer. Please wait {seconds} seconds, then try again."


def signed_in(settings: FrontendSettings) -> bool:
    return not settings.class_code or bool(st.session_state.get("display_name"))


def sign_in_page() -> None:
    """Ask for the class code and a display name; on success the app reruns with the lessons."""
    settings = FrontendSettings()
    st.title("Diffusion Classroom")
    st.markdown("Welcome! Type the class code your teacher gave you, and a name for yourself.")
    with st.form("sign-in"):
        code = st.text_input("Class code", type="password")
        name = st.text_input("Your name", max_chars=40)
        submitted = st.form_submit_button("Start", type="primary")
    if not submitted:
        return
    wait = wait_before_trying("class")
    if wait > 0:
        st.error(TOO_MANY_TRIES.format(seconds=math.ceil(wait)))
        return
    right = hmac.compare_digest(code.strip().encode(), (settings.class_code or "").encode())
    record_try("class", right)
    if not right:
        st.error(WRONG_CODE)
    elif problem := name_problem(name):
        st.error(problem)
    else:
        st.session_state.display_name = name.strip()
        st.rerun()
