"""The Streamlit front end as a real server for browser tests: started, waited for, stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tests.support.servers import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

ROOT = Path(__file__).resolve().parents[2]
SCREENS = ROOT / "frontend" / "screens"


def record_hosts(target: Page | BrowserContext, hosts: set[str]) -> None:
    """Add to `hosts` every host a page (or every page of a context) asks for something; made in the page: none."""

    def record(url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("data", "blob", "about"):
            hosts.add(parts.netloc)

    target.on("request", lambda request: record(request.url))


# Every picture of the page's own document has either arrived or failed (a failure is a console error).
PICTURES_SETTLED = "() => [...document.images].every(picture => picture.complete)"


def wait_for_run(page: Page, timeout_ms: float = 120_000) -> None:
    """Until the page's script run has ended: its own state says so, and no "running" widget shows.

    The widget appears only after a moment, so a page that has drawn its heading and is still
    computing (a lesson waiting for its runs) may show none yet; the app's script state is set
    at once. A test that read the page then, or clicked on, would leave the run half drawn, and
    the pictures it was still sending come back "not found".
    """
    from playwright.sync_api import expect

    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout_ms)
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0, timeout=timeout_ms)


def wait_for_pictures(page: Page, timeout_ms: float = 120_000) -> None:
    """Until every picture on the page has arrived (or failed: the console says so).

    A click that leaves a page ends its script run, and the server then drops that run's
    pictures: one the browser was still fetching, on a slow machine, comes back
    "not found", an error no student would see but the tests rightly count. A test
    that moves on only once the pictures are in reads the page as a student does.
    """
    page.wait_for_function(PICTURES_SETTLED, timeout=timeout_ms)


def page_file(name: str) -> Path:
    """A page of the menu by its name (its address): a lesson in screens/lessons/, any other page beside them."""
    lesson = SCREENS / "lessons" / f"{name}.py"
    return lesson if lesson.exists() else SCREENS / f"{name}.py"


def wait_for_frontend(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Poll Streamlit's health endpoint until it answers; fail at once if `process` has exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            assert process.poll() is None, "the front end exited"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL if it lingers."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def running_frontend(env: dict[str, str], log_path: Path, script: Path = ROOT / "frontend" / "app.py") -> Iterator[str]:
    """`streamlit run frontend/app.py` (or `script`) on a free loopback port with `env` added; yields its URL.

    It runs from the repository root, so with the front end's settings (.streamlit/config.toml).
    """
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            env=os.environ | {"HF_HUB_OFFLINE": "1"} | env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_frontend(url, process)
            yield url
        finally:
            stop(process)


# Chromium for the browser tests: headless, and nothing of its own on the network (no updates, sync, QUIC).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@contextlib.contextmanager
def launched_chromium() -> Iterator[Browser]:
    """Debian's Chromium through Playwright, for one module's tests (each opens its own contexts)."""
    from playwright.sync_api import sync_playwright  # only the browser tests need it

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser tests: run `make install`"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
