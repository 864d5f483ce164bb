"""Start the front end: say the class code in the log, then run Streamlit (`python -m frontend.start [OPTIONS]`).

The class code is made at the first start (make-secrets) unless CLASSROOM_CLASS_CODE
sets one; the teacher finds it here, in `docker compose logs frontend`, and on the
teacher's page. Options are Streamlit's own (`--server.port 8501`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from frontend.settings import FrontendSettings


def announce(settings: FrontendSettings) -> str:
    """The line the log shows at start."""
    if settings.class_code:
        return f"Class code for students: {settings.class_code}"
    return "No class code: anyone who opens the page uses the lessons without signing in."


def main(options: list[str]) -> None:
    print(announce(FrontendSettings()), flush=True)
    app = Path(__file__).with_name("app.py")
    # Streamlit takes this process over, so signals from Docker or Ctrl-C reach it directly.
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", str(app), *options])


if __name__ == "__main__":
    main(sys.argv[1:])
