"""make-secrets: private folders per reader, kept across restarts, and a class code nobody guesses."""

import os
import re
import stat

import pytest

from frontend.guard import ADDRESS_WINDOW_S, ADDRESS_WRONG_LIMIT
from services.common.secrets import (
    CLASSROOM_UID,
    REDIS_UID,
    class_code_bits,
    class_code_words,
    ensure_secrets,
    make_class_code,
)

SECONDS_A_YEAR = 365.25 * 24 * 3600


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_each_reader_gets_a_private_folder_with_only_what_it_needs(tmp_path):
    folder = tmp_path / "secrets"
    assert sorted(ensure_secrets(folder)) == ["api_token", "cache_secret", "class_code", "redis_password"]
    layout = {p.name: sorted(f.name for f in p.iterdir()) for p in folder.iterdir()}
    assert layout == {
        "service": ["api_token", "cache_secret", "redis_password"],
        "frontend": ["api_token", "class_code"],  # never the Redis password or the cache secret
        "redis": ["redis-auth.conf"],
    }
    assert mode(folder) == 0o700
    for reader in folder.iterdir():
        assert mode(reader) == 0o700, reader
        for file in reader.iterdir():
            assert mode(file) == 0o600, file
    service, frontend = folder / "service", folder / "frontend"
    assert (frontend / "api_token").read_text() == (service / "api_token").read_text()
    password = (service / "redis_password").read_text().strip()
    assert f"\nrequirepass {password}\n" in (folder / "redis" / "redis-auth.conf").read_text()
    values = [(service / name).read_text().strip() for name in ("api_token", "redis_password", "cache_secret")]
    assert len(set(values)) == 3 and all(len(value) >= 32 for value in values)


@pytest.mark.skipif(os.geteuid() != 0, reason="handing folders to other users needs root (compose's job runs as root)")
def test_as_root_each_folder_belongs_to_the_user_its_reader_runs_as(tmp_path):
    ensure_secrets(tmp_path)
    owners = {"service": CLASSROOM_UID, "frontend": CLASSROOM_UID, "redis": REDIS_UID}
    for reader, uid in owners.items():
        for path in (tmp_path / reader, *(tmp_path / reader).iterdir()):
            assert (path.stat().st_uid, path.stat().st_gid) == (uid, uid), path


def test_the_containers_users_are_the_ones_the_folders_are_given_to():
    from tests.frontend.conftest import ROOT

    for dockerfile in ("inference.Dockerfile", "frontend.Dockerfile"):
        text = (ROOT / "deploy" / dockerfile).read_text()
        assert f"useradd --create-home --uid {CLASSROOM_UID} classroom" in text and "USER classroom" in text
    assert REDIS_UID == 999  # the official redis image: `useradd -r -g redis -u 999 redis`


def test_a_restart_keeps_every_secret_and_repairs_copies_and_modes(tmp_path):
    ensure_secrets(tmp_path)
    before = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    (tmp_path / "frontend" / "api_token").write_text("stale\n")
    (tmp_path / "service" / "cache_secret").chmod(0o644)
    assert ensure_secrets(tmp_path) == []  # cached lessons stay signed with the same secret
    assert {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert mode(tmp_path / "service" / "cache_secret") == 0o600


def test_an_older_flat_folder_keeps_its_values_and_is_tightened(tmp_path):
    # As the old make-secrets left it: three files, 0644, in a 0755 folder.
    tmp_path.chmod(0o755)
    for name in ("api_token", "redis_password", "cache_secret"):
        (tmp_path / name).write_text(f"old-{name}\n")
        (tmp_path / name).chmod(0o644)
    assert ensure_secrets(tmp_path) == ["class_code"]
    assert (tmp_path / "service" / "cache_secret").read_text() == "old-cache_secret\n"
    assert (tmp_path / "frontend" / "api_token").read_text() == "old-api_token\n"
    assert "requirepass old-redis_password\n" in (tmp_path / "redis" / "redis-auth.conf").read_text()
    assert mode(tmp_path) == 0o700 and not (tmp_path / "cache_secret").exists()


def test_a_class_code_is_three_words_and_four_digits_a_student_can_type():
    words = class_code_words()
    assert len(words) == len(set(words)) == 256
    assert all(re.fullmatch(r"[a-z]{2,8}", word) for word in words)
    codes = {make_class_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        *three, digits = code.split("-")
        assert len(three) == 3 and set(three) <= set(words) and re.fullmatch(r"\d{4}", digits), code


def test_guessing_a_class_code_at_the_guards_rate_is_hopeless():
    # A script at the front end's cap: ADDRESS_WRONG_LIMIT wrong tries every ADDRESS_WINDOW_S from one address.
    tries_a_year = ADDRESS_WRONG_LIMIT / ADDRESS_WINDOW_S * SECONDS_A_YEAR
    average_years = 2 ** class_code_bits() / 2 / tries_a_year
    assert class_code_bits() > 37
    assert average_years > 1000  # even ten addresses at once would take over a century
