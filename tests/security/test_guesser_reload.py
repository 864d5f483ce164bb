"""A code guesser who reloads: the wrong tries are counted per browser (its signed cookie), not per tab."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.security.test_frontend_attacks import APP, class_code, sign_in

__all__ = ["class_code"]  # the fixture, shared with the other front-end attacks


def test_a_reload_does_not_buy_more_guesses(class_code, monkeypatch):
    import frontend.access.browser_id
    from frontend.access.guard import FREE_TRIES

    guesser = AppTest.from_file(APP, default_timeout=60).run()
    for guess in range(FREE_TRIES):
        sign_in(guesser, f"owl-{guess}", "Rowan")
    assert "That class code is not right" in guesser.error[0].value
    # A reload, or a new tab: a new session of the same browser, which sends its cookie.
    cookie = guesser.session_state[frontend.access.browser_id.STATE_KEY]
    monkeypatch.setattr(frontend.access.browser_id, "cookie_sent", lambda: cookie)
    reloaded = AppTest.from_file(APP, default_timeout=60).run()
    sign_in(reloaded, class_code, "Rowan")
    assert "Too many wrong codes" in reloaded.error[0].value and "display_name" not in reloaded.session_state
    # A classmate's browser, at the same address, is not slowed.
    monkeypatch.setattr(frontend.access.browser_id, "cookie_sent", lambda: None)
    classmate = sign_in(AppTest.from_file(APP, default_timeout=60).run(), class_code, "Rowan")
    assert not classmate.error and classmate.session_state["display_name"] == "Rowan"
