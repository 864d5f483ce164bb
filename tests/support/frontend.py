"""The Streamlit front end as a real server for browser tests: started, waited for, stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


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
