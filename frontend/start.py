"""Start the front end: say the codes in the log, then run Streamlit (`python -m frontend.start [OPTIONS]`).

The class code and the teacher code are made at the first start (make-secrets) unless
CLASSROOM_CLASS_CODE or CLASSROOM_TEACHER_CODE sets one. The teacher finds the class
code here, in `docker compose logs frontend`, and on the teacher's page; the teacher
code only here (and in `make up`'s start message), never on a page. A teacher code
chosen in .env that a guessing script could find gets a warning saying how soon.
Options are Streamlit's own (`--server.port 8501`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from frontend.access.guard import ADDRESS_WINDOW_S, ADDRESS_WRONG_LIMIT
from frontend.settings import FrontendSettings
from services.common.secrets import WEAK_CODE_BITS, WEAK_CODE_CHARS, code_bits, read_secret, weak_code

_UNITS = (("year", 365.25 * 24 * 3600), ("day", 24 * 3600), ("hour", 3600), ("minute", 60), ("second", 1))


def guessing_time(bits: float) -> str:
    """How long a script at the guard's cap (1,000 wrong tries per 10 minutes) needs on average, in words."""
    seconds = 2**bits / 2 / (ADDRESS_WRONG_LIMIT / ADDRESS_WINDOW_S)
    unit, size = next(((unit, size) for unit, size in _UNITS if seconds >= size), _UNITS[-1])
    count = max(1, round(seconds / size))
    return f"about {count:,} {unit}{'' if count == 1 else 's'}"


def announce(settings: FrontendSettings) -> str:
    """The lines the log shows at start."""
    if settings.class_code:
        lines = [f"Class code for students: {settings.class_code}"]
    else:
        lines = ["No class code: anyone who opens the page uses the lessons without signing in."]
    code = settings.teacher_code
    if not code:
        lines.append("No teacher code: the teacher's page is off.")
    elif settings.teacher_code_file and read_secret(None, settings.teacher_code_file) == code:
        # Made at the first start: this log (and `make up`'s message) is the one place it is said.
        lines.append(f"Teacher code (for the teacher's page; keep it from students): {code}")
    elif weak_code(code):
        lines.append(
            f"WARNING: the teacher code set in CLASSROOM_TEACHER_CODE is weak ({len(code)} characters, "
            f"about {code_bits(code):.0f} bits; wanted: {WEAK_CODE_CHARS} characters and {WEAK_CODE_BITS:.0f} "
            f"bits): a student's script at the guard's cap of {ADDRESS_WRONG_LIMIT:,} tries per "
            f"{ADDRESS_WINDOW_S / 60:.0f} minutes would find it in {guessing_time(code_bits(code))} on average. "
            "Leave it empty to have one made (four words and four digits)."
        )
    return "\n".join(lines)


def main(options: list[str]) -> None:
    print(announce(FrontendSettings()), flush=True)
    app = Path(__file__).with_name("app.py")
    # Streamlit takes this process over, so signals from Docker or Ctrl-C reach it directly.
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", str(app), *options])


if __name__ == "__main__":
    main(sys.argv[1:])
