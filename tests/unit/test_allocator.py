"""The allocator's start-again: jemalloc first in LD_PRELOAD, its settings kept when given, glibc when asked."""

from pathlib import Path

from services.inference import allocator


def test_jemalloc_goes_first_and_keeps_what_was_preloaded():
    env = allocator.environment({"LD_PRELOAD": "/opt/other.so", "PATH": "/bin"}, "/usr/lib/libjemalloc.so.2")
    assert env["LD_PRELOAD"] == "/usr/lib/libjemalloc.so.2 /opt/other.so"
    assert env["MALLOC_CONF"] == allocator.MALLOC_CONF and "dirty_decay_ms:-1" in env["MALLOC_CONF"]
    assert env["PATH"] == "/bin"
    assert allocator.preloaded(env) and not allocator.preloaded({"PATH": "/bin"})


def test_an_operators_own_jemalloc_settings_win():
    env = allocator.environment({"MALLOC_CONF": "narenas:2"}, "/usr/lib/libjemalloc.so.2")
    assert env["MALLOC_CONF"] == "narenas:2" and env["LD_PRELOAD"] == "/usr/lib/libjemalloc.so.2"


def test_the_first_library_found_is_taken(tmp_path: Path):
    present = tmp_path / "libjemalloc.so.2"
    present.write_bytes(b"")
    assert allocator.jemalloc_library((str(tmp_path / "missing.so"), str(present))) == str(present)
    assert allocator.jemalloc_library((str(tmp_path / "missing.so"),)) is None


def test_system_or_already_preloaded_never_starts_again(monkeypatch):
    started = []
    monkeypatch.setattr(allocator.os, "execve", lambda *args: started.append(args))
    allocator.reexec("system")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    allocator.reexec("jemalloc")
    assert started == []
    monkeypatch.delenv("LD_PRELOAD")
    monkeypatch.setattr(allocator, "jemalloc_library", lambda: "/usr/lib/libjemalloc.so.2")
    allocator.reexec("jemalloc")
    assert len(started) == 1 and started[0][2]["LD_PRELOAD"] == "/usr/lib/libjemalloc.so.2"
    assert "glibc's (CLASSROOM_ALLOCATOR=system)" in allocator.describe("system")


def test_a_library_named_in_the_settings_is_preloaded(monkeypatch, tmp_path: Path):
    started = []
    monkeypatch.setattr(allocator.os, "execve", lambda *args: started.append(args))
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    named = tmp_path / "libjemalloc.so.2"
    named.write_bytes(b"")
    allocator.reexec("jemalloc", named)
    assert started[0][2]["LD_PRELOAD"] == str(named)
