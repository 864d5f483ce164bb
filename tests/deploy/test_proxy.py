"""deploy/caddy: the proxy in front of the front end, in each of its three modes (no Docker engine needed)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.frontend.conftest import ROOT

CADDY = ROOT / "deploy" / "caddy"
MODES = ("own-certificate", "public-name", "plain-http")


def lines(path: Path) -> list[str]:
    """The Caddyfile's lines without comments or blanks, stripped."""
    stripped = (line.strip() for line in path.read_text().splitlines())
    return [line for line in stripped if line and not line.startswith("#")]


def site_blocks(path: Path) -> dict[str, list[str]]:
    """Each top-level block's address (after the global options) and the lines inside it."""
    blocks, current, depth = {}, None, 0
    for line in lines(path):
        if depth == 0 and line.endswith("{"):
            current = line[:-1].strip()
            blocks[current] = []
        elif depth > 0 and current is not None:
            blocks[current].append(line)
        depth += line.count("{") - line.count("}")
    return {address: body[:-1] for address, body in blocks.items() if address}


def test_the_front_end_sits_behind_the_proxy_which_sets_the_forwarded_headers_itself():
    snippet = lines(CADDY / "classroom.caddy")
    assert snippet[0] == "(classroom) {"
    assert "reverse_proxy frontend:8501" in snippet  # Streamlit's page and its websocket
    # Without trusted_proxies Caddy replaces any X-Forwarded-For/-Proto a browser wrote; nothing here may change that.
    assert not any("trusted_proxies" in line or "header_up" in line for line in snippet)
    assert "X-Content-Type-Options nosniff" in snippet and "Referrer-Policy no-referrer" in snippet


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_serves_only_the_front_end(mode):
    path = CADDY / f"{mode}.Caddyfile"
    assert "import classroom.caddy" in lines(path)
    assert "protocols h1 h2" in lines(path)  # no HTTP/3: only TCP ports are published
    blocks = site_blocks(path)
    assert all("import classroom" in body for body in blocks.values()), blocks
    assert not any("on_demand" in line for line in lines(path))  # no certificate for any name a browser asks for


def test_the_three_modes_serve_https_as_promised():
    own = site_blocks(CADDY / "own-certificate.Caddyfile")
    assert list(own) == ["{$CLASSROOM_PUBLIC_NAME}"]
    assert "tls /certs/{$CLASSROOM_HTTPS_CERT} /certs/{$CLASSROOM_HTTPS_KEY}" in own["{$CLASSROOM_PUBLIC_NAME}"]
    # HSTS only with the school's own certificate (never on Caddy's own authority or localhost).
    hsts = 'header Strict-Transport-Security "max-age=31536000"'
    assert hsts in own["{$CLASSROOM_PUBLIC_NAME}"]
    assert not any("Strict-Transport-Security" in line for m in MODES[1:] for line in lines(CADDY / f"{m}.Caddyfile"))
    assert not any("Strict-Transport-Security" in line for line in lines(CADDY / "classroom.caddy"))
    public = site_blocks(CADDY / "public-name.Caddyfile")
    assert list(public) == ["{$CLASSROOM_PUBLIC_NAME}"]  # Caddy gets the certificate and redirects plain HTTP
    assert not any(line.startswith("tls") for line in public["{$CLASSROOM_PUBLIC_NAME}"])
    assert "skip_install_trust" in lines(CADDY / "public-name.Caddyfile")
    # A bare network: plain HTTP for students, HTTPS only for the teacher on the server itself.
    assert list(site_blocks(CADDY / "plain-http.Caddyfile")) == ["http://", "https://localhost"]


def run_start(tmp_path: Path, **environment: str) -> subprocess.CompletedProcess:
    """deploy/caddy/start.sh with a `caddy` that prints what it was asked to run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "caddy"
    fake.write_text('#!/bin/sh\necho "caddy $*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **environment}
    return subprocess.run(["/bin/sh", str(CADDY / "start.sh")], env=env, capture_output=True, text=True, timeout=30)


def test_the_entry_point_chooses_the_mode_from_the_settings(tmp_path):
    chosen = run_start(tmp_path)
    assert chosen.returncode == 0, chosen.stderr
    assert f"caddy run --config {CADDY}/plain-http.Caddyfile --adapter caddyfile" in chosen.stdout
    assert "the teacher's page opens only at https://localhost" in chosen.stdout
    chosen = run_start(tmp_path, CLASSROOM_PUBLIC_NAME="classroom.example.org")
    assert f"--config {CADDY}/public-name.Caddyfile" in chosen.stdout
    # Half a certificate, or one without the name it is for, is refused with a sentence, not served as something else.
    refused = run_start(tmp_path, CLASSROOM_HTTPS_CERT="school.crt", CLASSROOM_PUBLIC_NAME="classroom.example.org")
    assert refused.returncode == 64 and "CLASSROOM_HTTPS_KEY" in refused.stderr and "caddy" not in refused.stdout
    refused = run_start(tmp_path, CLASSROOM_HTTPS_CERT="school.crt", CLASSROOM_HTTPS_KEY="school.key")
    assert refused.returncode == 64 and "CLASSROOM_PUBLIC_NAME" in refused.stderr
    missing = run_start(tmp_path, CLASSROOM_HTTPS_CERT="no-such.crt", CLASSROOM_HTTPS_KEY="no-such.key",
                        CLASSROOM_PUBLIC_NAME="classroom.example.org")  # fmt: skip
    assert missing.returncode == 66 and "/certs/no-such.crt cannot be read" in missing.stderr


@pytest.mark.parametrize("mode", MODES)
def test_caddy_reads_every_mode(mode):
    assert shutil.which("caddy"), "Debian's caddy adapts the files: run `make install`"
    env = os.environ | {"CLASSROOM_PUBLIC_NAME": "classroom.example.org", "CLASSROOM_HTTPS_CERT": "school.crt",
                        "CLASSROOM_HTTPS_KEY": "school.key"}  # fmt: skip
    adapted = subprocess.run(["caddy", "adapt", "--config", f"{mode}.Caddyfile", "--adapter", "caddyfile"],
                             cwd=CADDY, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert adapted.returncode == 0, adapted.stderr
    servers = json.loads(adapted.stdout)["apps"]["http"]["servers"]
    upstreams = {u["dial"] for u in _handlers(servers, "reverse_proxy") for u in u["upstreams"]}
    assert upstreams == {"frontend:8501"}
    listeners = {address for server in servers.values() for address in server["listen"]}
    assert listeners == ({":80", ":443"} if mode == "plain-http" else {":443"})  # Caddy adds the :80 redirect itself


def _handlers(node, name):
    if isinstance(node, dict):
        if node.get("handler") == name:
            yield node
        for value in node.values():
            yield from _handlers(value, name)
    elif isinstance(node, list):
        for value in node:
            yield from _handlers(value, name)
