"""The front end is a thin client: no page imports torch (checked in a process of its own)."""

import os
import subprocess
import sys
import textwrap

from tests.frontend.conftest import ROOT
from tests.support.frontend import page_file

# Each page on its own (the Welcome page links to the others, so it runs inside app.py below).
PAGES = ["pipeline", "words", "noise_to_image", "guidance", "change_one_word", "seeds_schedulers", "attention",
         "branch", "playground", "gallery", "model"]  # fmt: skip


def test_no_page_imports_torch(lesson_server):
    script = textwrap.dedent(
        f"""
        import sys
        from streamlit.testing.v1 import AppTest
        for name, path in {[(name, str(page_file(name))) for name in PAGES]!r}:
            at = AppTest.from_file(path, default_timeout=120).run()
            assert not at.exception, (name, [e.value for e in at.exception])
        AppTest.from_file({str(ROOT)!r} + "/frontend/app.py", default_timeout=60).run()
        heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
        print("loaded:", heavy)
        sys.exit(1 if heavy else 0)
        """
    )
    env = os.environ | {"CLASSROOM_INFERENCE_ADDR": lesson_server.address}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "loaded: []" in result.stdout
