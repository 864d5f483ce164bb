"""The teacher's page asks for its code only over HTTPS or on the server itself, and then shows the class code."""

import pytest
from streamlit.testing.v1 import AppTest

from frontend.access import transport
from frontend.access.transport import TEACHER_NEEDS_HTTPS, Connection
from tests.support.frontend import page_file

PAGE = str(page_file("teacher"))


@pytest.fixture
def teacher_page(monkeypatch):
    monkeypatch.setenv("CLASSROOM_TEACHER_CODE", "heron-7")
    monkeypatch.setenv("CLASSROOM_TRUSTED_PROXIES", "172.30.86.0/29")

    def opened_over(connection: Connection) -> AppTest:
        monkeypatch.setattr(transport, "current_connection", lambda: connection)
        return AppTest.from_file(PAGE, default_timeout=30).run()

    return opened_over


def test_over_plain_http_from_another_computer_the_code_is_never_asked_for(teacher_page):
    for connection in (
        Connection("192.168.1.23"),  # `make up`, opened from a classroom computer
        Connection("172.30.86.2", ("192.168.1.23",), "http"),  # compose's plain-HTTP port on a bare LAN
        Connection("192.168.1.23", (), "https"),  # a header the browser wrote itself
    ):
        at = teacher_page(connection)
        assert [e.value for e in at.error] == [TEACHER_NEEDS_HTTPS], connection
        assert not at.text_input, connection


def test_over_https_or_on_the_server_the_code_is_asked_for(teacher_page):
    for connection in (Connection("172.30.86.2", ("192.168.1.23",), "https"), Connection(transport.LOOPBACK)):
        at = teacher_page(connection)
        assert not at.error and at.text_input[0].label == "Teacher code", connection


def test_the_teacher_sees_the_class_code_made_at_the_first_start(settings, monkeypatch, tmp_path):
    from frontend.client import get_client
    from tests.support.servers import running_server

    (tmp_path / "class_code").write_text("otter-maple-cloud-0427\n")  # as make-secrets leaves it
    config = settings.model_copy(update={"redis_url": "", "teacher_code": "heron-7", "max_batch_size": 1})
    with running_server(config) as server:
        monkeypatch.setenv("CLASSROOM_INFERENCE_ADDR", server.address)
        monkeypatch.setenv("CLASSROOM_TEACHER_CODE", "heron-7")
        monkeypatch.setenv("CLASSROOM_CLASS_CODE_FILE", str(tmp_path / "class_code"))
        monkeypatch.delenv("CLASSROOM_CLASS_CODE", raising=False)
        get_client.clear()
        try:
            at = AppTest.from_file(PAGE, default_timeout=30).run()
            at.text_input[0].input("heron-7")
            at.button[0].click().run()
            assert "Class code for students: otter-maple-cloud-0427" in [t.value for t in at.text]
        finally:
            get_client.clear()


def test_the_teachers_page_gives_the_browser_its_cookie(teacher_page):
    # The code guard counts per browser: a reload of the teacher's page must not start a new count.
    at = teacher_page(Connection(transport.LOOPBACK))
    scripts = [node.proto.body for node in at.get("html") if "classroom_browser=" in node.proto.body]
    assert len(scripts) == 1 and "SameSite=Strict" in scripts[0]
    # Over plain HTTP from another computer the page stops first: no cookie, no code.
    at = teacher_page(Connection("192.168.1.23"))
    assert not [node for node in at.get("html") if "classroom_browser=" in node.proto.body]
