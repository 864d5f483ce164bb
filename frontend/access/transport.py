"""Where a browser's connection comes from, and whether it is private (HTTPS, or the server itself).

Behind a reverse proxy (compose's Caddy, a Kubernetes ingress) every browser seems to
connect from the proxy. The proxy says which address it forwarded (X-Forwarded-For)
and whether the browser came over HTTPS (X-Forwarded-Proto). A browser can write
those headers too, so they count only when the connection itself comes from a
proxy the server was told to trust (CLASSROOM_TRUSTED_PROXIES); from anyone else
the connection's own address is the browser's, and nothing it says makes it HTTPS.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import streamlit as st

from frontend.settings import FrontendSettings

Network = IPv4Network | IPv6Network

LOOPBACK = "127.0.0.1"
TEACHER_NEEDS_HTTPS = (
    "The teacher's page opens only over a secure connection (an address that starts with https://) "
    "or on the server itself, so nobody on the network can read the teacher code."
)


@dataclass(frozen=True)
class Connection:
    """What the front end sees of one browser tab's connection."""

    peer: str  # the address that opened the connection (LOOPBACK for this machine)
    forwarded_for: tuple[str, ...] = ()  # X-Forwarded-For entries, from the browser's end to the nearest proxy
    forwarded_proto: str = ""  # X-Forwarded-Proto of the nearest proxy: "https", "http" or ""


def _address(text: str) -> IPv4Address | IPv6Address | None:
    """An address as proxies write it (with or without a port or brackets); None when it is none."""
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1]:443
        text = text[1 : text.find("]")]
    elif text.count(":") == 1:  # 192.0.2.7:51234
        text = text.split(":")[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped:  # ::ffff:192.0.2.7 from a dual-stack socket
        return address.ipv4_mapped
    return address


def _trusted(address: IPv4Address | IPv6Address | None, proxies: tuple[Network, ...]) -> bool:
    return address is not None and any(address.version == network.version and address in network for network in proxies)


def client_address(connection: Connection, proxies: tuple[Network, ...]) -> str:
    """The browser's address: the peer's own, or, from a trusted proxy, the nearest hop that is no proxy.

    X-Forwarded-For is read from the right (the nearest proxy) past the trusted proxies;
    entries further left were written by whoever sent the request, so they never count.
    """
    nearest = _address(connection.peer)
    if not _trusted(nearest, proxies):
        return connection.peer
    farthest = connection.peer
    for entry in reversed(connection.forwarded_for):
        hop = _address(entry)
        if hop is None:  # unreadable: stop at the last address a trusted proxy vouched for
            return farthest
        if not _trusted(hop, proxies):
            return str(hop)
        farthest = str(hop)
    return farthest  # every hop a proxy: the farthest we know


def is_private(connection: Connection, proxies: tuple[Network, ...]) -> bool:
    """True over HTTPS (as a trusted proxy says) or for a browser on this machine with no proxy between."""
    if _trusted(_address(connection.peer), proxies):
        if connection.forwarded_proto == "https":
            return True
        client = _address(client_address(connection, proxies))
        return client is not None and client.is_loopback
    peer = _address(connection.peer)
    # From this machine, but carrying X-Forwarded-For: a proxy here forwarded someone else.
    return peer is not None and peer.is_loopback and not connection.forwarded_for


def current_connection() -> Connection:
    """The tab's connection, as Streamlit saw its websocket open (no session, as in AppTest: this machine)."""
    peer = st.context.ip_address  # Streamlit says None for a loopback peer
    headers = st.context.headers
    forwarded = tuple(part for value in headers.get_all("X-Forwarded-For") for part in value.split(",") if part.strip())
    protos = [part.strip().lower() for value in headers.get_all("X-Forwarded-Proto") for part in value.split(",")]
    return Connection(peer if isinstance(peer, str) and peer else LOOPBACK, forwarded, protos[-1] if protos else "")


def browser_address() -> str:
    """The student's browser address ("" for this machine, or unknown as in tests).

    Behind a trusted proxy (CLASSROOM_TRUSTED_PROXIES) it is the address the proxy
    forwarded, never one the browser wrote itself.
    """
    address = client_address(current_connection(), FrontendSettings().trusted_proxies)
    return "" if address == LOOPBACK else address


def require_private_connection() -> None:
    """Stop the page with a sentence unless this tab came over HTTPS or from the server itself."""
    if not is_private(current_connection(), FrontendSettings().trusted_proxies):
        st.error(TEACHER_NEEDS_HTTPS, icon=":material/lock:")
        st.stop()
