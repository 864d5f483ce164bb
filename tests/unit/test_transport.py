"""Who a browser is behind a proxy, and whether its connection is private enough for the teacher code."""

from ipaddress import ip_network

import pytest

from frontend.access.transport import LOOPBACK, Connection, client_address, is_private
from frontend.settings import FrontendSettings

PROXY = (ip_network("172.30.86.0/29"),)  # compose's proxy network
CADDY = "172.30.86.2"
INGRESS = (ip_network("10.244.0.0/16"), ip_network("fd00:10:244::/64"))


def test_without_trusted_proxies_the_forwarded_headers_count_for_nothing():
    forged = Connection("192.168.1.23", forwarded_for=("10.9.9.9",), forwarded_proto="https")
    assert client_address(forged, ()) == "192.168.1.23"
    assert not is_private(forged, ())
    assert FrontendSettings().trusted_proxies == ()  # the default: trust nobody


def test_behind_the_proxy_each_student_has_their_own_address():
    assert client_address(Connection(CADDY, ("192.168.1.23",), "https"), PROXY) == "192.168.1.23"
    assert client_address(Connection(CADDY, ("192.168.1.24",), "https"), PROXY) == "192.168.1.24"
    assert client_address(Connection("10.244.3.7", ("[2001:db8::5]:51000",)), INGRESS) == "2001:db8::5"


def test_an_address_a_student_writes_into_x_forwarded_for_is_ignored():
    # The student sends "X-Forwarded-For: 6.6.6.6"; a proxy that appends makes it the left-most entry.
    appended = Connection(CADDY, ("6.6.6.6", "192.168.1.23"), "https")
    assert client_address(appended, PROXY) == "192.168.1.23"
    # Even a forged entry inside the proxy's own network stops at the student's real address.
    assert client_address(Connection(CADDY, (CADDY, "192.168.1.23")), PROXY) == "192.168.1.23"
    # A direct connection (not from the proxy) that names the proxy gets nothing from it.
    assert client_address(Connection("192.168.1.23", (CADDY,)), PROXY) == "192.168.1.23"


def test_chained_proxies_are_walked_from_the_nearest():
    chain = Connection("10.244.0.5", ("192.168.7.8", "10.244.1.1"), "https")
    assert client_address(chain, INGRESS) == "192.168.7.8"
    only_proxies = Connection("10.244.0.5", ("10.244.1.1",))
    assert client_address(only_proxies, INGRESS) == "10.244.1.1"
    assert client_address(Connection("10.244.0.5", ("unknown",)), INGRESS) == "10.244.0.5"
    assert client_address(Connection("::ffff:172.30.86.2", ("192.168.1.23",)), PROXY) == "192.168.1.23"


@pytest.mark.parametrize(
    ("connection", "private"),
    [
        (Connection(CADDY, ("192.168.1.23",), "https"), True),  # HTTPS at the proxy
        (Connection(CADDY, ("192.168.1.23",), "http"), False),  # the bare-LAN plain-HTTP port
        (Connection(CADDY, ("192.168.1.23",), ""), False),
        (Connection(CADDY, ("127.0.0.1",), "http"), True),  # a proxy on this machine, a browser here too
        (Connection(LOOPBACK), True),  # `make up`, the browser on the server itself
        (Connection(LOOPBACK, ("192.168.1.23",)), False),  # an untrusted proxy on this machine forwarded it
        (Connection("192.168.1.23"), False),  # `make up` opened from another computer
        (Connection("192.168.1.23", (), "https"), False),  # a student writing the header themselves
        (Connection("::1"), True),
    ],
)
def test_the_teacher_code_travels_only_over_https_or_on_the_server_itself(connection, private):
    assert is_private(connection, PROXY) is private


def test_the_setting_reads_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("CLASSROOM_TRUSTED_PROXIES", "172.30.86.0/29, 10.244.0.0/16,fd00::/8")
    assert [str(n) for n in FrontendSettings().trusted_proxies] == ["172.30.86.0/29", "10.244.0.0/16", "fd00::/8"]
    monkeypatch.setenv("CLASSROOM_TRUSTED_PROXIES", "a proxy")
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        FrontendSettings()


def test_the_class_code_file_is_read_unless_the_code_is_given(monkeypatch, tmp_path):
    (tmp_path / "class_code").write_text("otter-maple-cloud-0427\n")
    monkeypatch.setenv("CLASSROOM_CLASS_CODE_FILE", str(tmp_path / "class_code"))
    monkeypatch.delenv("CLASSROOM_CLASS_CODE", raising=False)
    assert FrontendSettings().class_code == "otter-maple-cloud-0427"
    monkeypatch.setenv("CLASSROOM_CLASS_CODE", "owl-42")
    assert FrontendSettings().class_code == "owl-42"  # an explicit code still wins
