"""The class code and display name a student gives before any lesson, and the hold on that name.

Signed in, a student holds their name in the class: the service's roster gives
each name to one live browser session (`JoinClass`), and lets only the same
browser (its signed cookie, `frontend.access.browser_id`) take it over. This page asks
for it at sign-in; `keep_my_name` renews it on every page and every few seconds
while the tab is open, and signs the tab out when the teacher removed the name
or the same student signed in again in another tab.
"""

from __future__ import annotations

import hmac
import math
import time
import uuid

import grpc
import streamlit as st

from frontend.access.browser_id import browser_id, remember_browser
from frontend.access.guard import record_try, wait_before_trying
from frontend.access.transport import browser_address
from frontend.client import StudentError, get_client
from frontend.drawing.views import said
from frontend.language import N_, _
from frontend.settings import FrontendSettings
from services.common.api import SIGNED_OUT
from services.common.text import NAME_LIMIT, name_problem

WRONG_CODE = N_("That class code is not right. Ask your teacher for it.")
TOO_MANY_TRIES = N_("Too many wrong codes. Please wait {seconds} seconds, then try again.")
RENEW_EVERY_S = 15.0  # the service forgets a name not renewed for a minute
# The service is away (restarting, loading): the name is claimed at the next renewal instead.
_AWAY = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def signed_in(settings: FrontendSettings) -> bool:
    return not settings.class_code or bool(st.session_state.get("display_name"))


def _join(name: str, session: str) -> None:
    """Hold `name` for this session (raises StudentError unless the service is merely away)."""
    try:
        get_client().join_class(name, session, browser_address(), browser=browser_id())
    except StudentError as error:
        if error.code not in _AWAY:
            raise
    st.session_state.name_renewed_at = time.monotonic()


def _sign_out(sentence: str) -> None:
    for key in ("display_name", "roster_session", "name_renewed_at"):
        st.session_state.pop(key, None)
    st.session_state.signed_out_because = sentence


def keep_my_name(force: bool = False) -> None:
    """Renew this tab's hold on its name (at most every RENEW_EVERY_S unless `force`); sign out if it is lost."""
    name, session = st.session_state.get("display_name"), st.session_state.get("roster_session")
    if not name or not session:
        return
    if not force and time.monotonic() - st.session_state.get("name_renewed_at", 0.0) < RENEW_EVERY_S:
        return
    try:
        _join(name, session)
    except StudentError as error:
        # Removed by the teacher, signed in again elsewhere, or the name went to someone else
        # after this tab fell silent: this tab no longer speaks for that name.
        if error.reason == SIGNED_OUT or error.code in (grpc.StatusCode.ALREADY_EXISTS,
                                                        grpc.StatusCode.RESOURCE_EXHAUSTED):  # fmt: skip
            _sign_out(str(error))
            st.rerun(scope="app")


@st.fragment(run_every=RENEW_EVERY_S)
def name_heartbeat() -> None:
    """While the tab is open, keep its name (a fragment: no lesson reruns)."""
    keep_my_name()


def sign_in_page() -> None:
    """Ask for the class code and a display name; on success the app reruns with the lessons."""
    settings = FrontendSettings()
    st.title(_("Diffusion Classroom"))
    remember_browser()  # before the form: the cookie is in the browser by the time the student signs in
    if because := st.session_state.pop("signed_out_because", None):
        st.warning(said(because))  # may quote the name, as typed
    st.markdown(_("Welcome! Type the class code your teacher gave you, and a name for yourself."))
    with st.form("sign-in"):
        code = st.text_input(_("Class code"), type="password")
        # No max_chars: the browser would refuse a longer paste whole and leave the box empty, with no word why.
        # Its purpose said to the browser (WCAG 1.3.5): a nickname it may offer again, never a code.
        most = _("At most {count} characters").format(count=NAME_LIMIT)
        name = st.text_input(_("Your name"), placeholder=most, autocomplete="nickname")
        submitted = st.form_submit_button(_("Start"), type="primary")
    if not submitted:
        return
    wait = wait_before_trying("class")
    if wait > 0:
        st.error(_(TOO_MANY_TRIES).format(seconds=math.ceil(wait)))
        return
    right = hmac.compare_digest(code.strip().encode(), (settings.class_code or "").encode())
    record_try("class", right)
    if not right:
        st.error(_(WRONG_CODE))
        return
    if problem := name_problem(name):
        st.error(problem)
        return
    session = uuid.uuid4().hex  # a new sign-in: a tab signed in before with this name is signed out
    try:
        _join(name.strip(), session)
    except StudentError as error:
        st.error(said(str(error)))
        return
    st.session_state.display_name = name.strip()
    st.session_state.roster_session = session
    st.rerun()
