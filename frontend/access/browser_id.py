"""Which browser a tab is in: a random id the front end signs and keeps in a cookie.

Behind a school's network address translation every student has the same address,
so the address cannot tell a student's own second tab from a classmate. The
browser can: on its first visit the front end makes a random id, signs it (an
HMAC with a key only the front end holds) and sets it as a cookie. Every tab and
reload of that browser sends it back (Streamlit reads it as `st.context.cookies`);
a classmate's browser has its own, and cannot make one up that verifies. The
service holds a student's name by this id (`JoinClass`), and the teacher's Remove
removes it with the name.

A new private window, another browser or cleared cookies are a new browser: a
student removed by the teacher can come back that way, as a new name, where the
teacher can remove them again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets

import streamlit as st

from frontend.settings import FrontendSettings

COOKIE = "classroom_browser"
STATE_KEY = "browser_cookie"  # this session's cookie (signed), once read or made
MAX_AGE_S = 180 * 24 * 3600  # half a year: a school term, and under browsers' 400-day cap
_COOKIE_FORM = re.compile(r"[0-9a-f]{32}\.[0-9a-f]{64}")


@st.cache_resource
def _signing_key() -> bytes:
    """The key the cookies are signed with: derived from the API token, so it survives a restart.

    Every front-end replica holds the same token, so each accepts the others' cookies. Without a
    token (a developer's machine), a key for this process only: after a restart, browsers get new ids.
    """
    token = FrontendSettings().api_token
    if not token:
        return secrets.token_bytes(32)
    return hmac.new(token.encode(), b"diffusion-classroom browser cookie v1", hashlib.sha256).digest()


def _signature(browser: str) -> str:
    return hmac.new(_signing_key(), browser.encode(), hashlib.sha256).hexdigest()


def _new_cookie() -> str:
    browser = secrets.token_hex(16)
    return f"{browser}.{_signature(browser)}"


def verified(cookie: str | None) -> str | None:
    """The browser id a cookie carries, if this front end signed it; None otherwise."""
    if not cookie or not _COOKIE_FORM.fullmatch(cookie):
        return None
    browser, signature = cookie.split(".")
    return browser if hmac.compare_digest(signature, _signature(browser)) else None


def cookie_sent() -> str | None:
    """The cookie the browser sent when this session opened (None: none, or no browser, as in tests)."""
    cookie = st.context.cookies.get(COOKIE)
    return cookie if isinstance(cookie, str) else None


def browser_id() -> str:
    """The browser id of this tab: the one its cookie carries, or a new one (kept for the session)."""
    cookie = st.session_state.get(STATE_KEY)
    if verified(cookie) is None:
        sent = cookie_sent()
        cookie = sent if verified(sent) else _new_cookie()
        st.session_state[STATE_KEY] = cookie
    browser = verified(cookie)
    assert browser is not None
    return browser


def remember_browser() -> None:
    """Make sure the browser keeps this tab's id: set the cookie unless it sent this very one.

    Streamlit can read cookies but not set them, so a line of JavaScript on the page sets it
    (path /, SameSite=Strict, Secure when the page came over HTTPS). Not HttpOnly: only a
    script can set it here, so a script on the page could read it too.
    """
    browser_id()
    cookie = st.session_state[STATE_KEY]
    if cookie_sent() == cookie:
        return
    attributes = f"; Path=/; Max-Age={MAX_AGE_S}; SameSite=Strict"
    st.html(
        "<script>"
        f"document.cookie = {json.dumps(f'{COOKIE}={cookie}{attributes}')}"
        ' + (location.protocol === "https:" ? "; Secure" : "");'
        "</script>",
        unsafe_allow_javascript=True,
    )
