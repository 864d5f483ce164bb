"""make-secrets: private folders per reader, kept across restarts, and class and teacher codes nobody guesses."""

import os
import re
import stat

import pytest

from frontend.access.guard import ADDRESS_WINDOW_S, ADDRESS_WRONG_LIMIT
from frontend.settings import FrontendSettings
from frontend.start import announce
from services.common.secrets import (
    CLASSROOM_UID,
    REDIS_UID,
    class_code_bits,
    class_code_words,
    code_bits,
    ensure_secrets,
    make_class_code,
    make_teacher_code,
    teacher_code_bits,
    weak_code,
)
from services.inference.settings import InferenceSettings

SECONDS_A_YEAR = 365.25 * 24 * 3600


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_each_reader_gets_a_private_folder_with_only_what_it_needs(tmp_path):
    folder = tmp_path / "secrets"
    made = ["api_token", "cache_secret", "class_code", "redis_password", "teacher_code"]
    assert sorted(ensure_secrets(folder)) == made
    layout = {p.name: sorted(f.name for f in p.iterdir()) for p in folder.iterdir()}
    assert layout == {
        "service": ["api_token", "cache_secret", "redis_password", "teacher_code"],
        "frontend": ["api_token", "class_code", "teacher_code"],  # never the Redis password or the cache secret
        "redis": ["redis-auth.conf"],
    }
    assert mode(folder) == 0o700
    for reader in folder.iterdir():
        assert mode(reader) == 0o700, reader
        for file in reader.iterdir():
            assert mode(file) == 0o600, file
    service, frontend = folder / "service", folder / "frontend"
    assert (frontend / "api_token").read_text() == (service / "api_token").read_text()
    assert (frontend / "teacher_code").read_text() == (service / "teacher_code").read_text()
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
    (tmp_path / "frontend" / "teacher_code").write_text("stale\n")
    (tmp_path / "service" / "cache_secret").chmod(0o644)
    (tmp_path / "service" / "teacher_code").chmod(0o644)
    assert ensure_secrets(tmp_path) == []  # cached lessons stay signed with the same secret
    assert {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert mode(tmp_path / "service" / "cache_secret") == 0o600
    assert mode(tmp_path / "service" / "teacher_code") == 0o600  # the teacher keeps the code they were given


def test_an_older_flat_folder_keeps_its_values_and_is_tightened(tmp_path):
    # As the old make-secrets left it: three files, 0644, in a 0755 folder.
    tmp_path.chmod(0o755)
    for name in ("api_token", "redis_password", "cache_secret"):
        (tmp_path / name).write_text(f"old-{name}\n")
        (tmp_path / name).chmod(0o644)
    assert ensure_secrets(tmp_path) == ["class_code", "teacher_code"]
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


def test_a_teacher_code_is_four_words_and_four_digits_longer_than_the_class_code():
    words = class_code_words()
    codes = {make_teacher_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        *four, digits = code.split("-")
        assert len(four) == 4 and set(four) <= set(words) and re.fullmatch(r"\d{4}", digits), code
        assert not weak_code(code), code
    assert teacher_code_bits() == class_code_bits() + 8  # one more word from 256
    tries_a_year = ADDRESS_WRONG_LIMIT / ADDRESS_WINDOW_S * SECONDS_A_YEAR
    assert 2 ** teacher_code_bits() / 2 / tries_a_year > 400_000  # years, on average, at the guard's cap


def test_both_readers_take_the_made_teacher_code_and_an_explicit_one_wins(tmp_path, monkeypatch):
    ensure_secrets(tmp_path)
    made = (tmp_path / "frontend" / "teacher_code").read_text().strip()
    for name in ("CLASSROOM_TEACHER_CODE", "CLASSROOM_TEACHER_CODE_FILE", "CLASSROOM_CLASS_CODE"):
        monkeypatch.delenv(name, raising=False)
    service = InferenceSettings(teacher_code_file=tmp_path / "service" / "teacher_code")
    frontend = FrontendSettings(teacher_code_file=tmp_path / "frontend" / "teacher_code")
    assert service.teacher_code == frontend.teacher_code == made
    # Compose passes an unset .env value as an empty string: the made code still counts.
    monkeypatch.setenv("CLASSROOM_TEACHER_CODE", "")
    monkeypatch.setenv("CLASSROOM_TEACHER_CODE_FILE", str(tmp_path / "frontend" / "teacher_code"))
    assert FrontendSettings().teacher_code == InferenceSettings().teacher_code == made
    monkeypatch.setenv("CLASSROOM_TEACHER_CODE", "the teacher's own choice 42")
    assert FrontendSettings().teacher_code == InferenceSettings().teacher_code == "the teacher's own choice 42"
    # Without either there is no teacher's page, as before.
    monkeypatch.delenv("CLASSROOM_TEACHER_CODE")
    monkeypatch.delenv("CLASSROOM_TEACHER_CODE_FILE")
    assert FrontendSettings().teacher_code is None and InferenceSettings().teacher_code is None


def test_the_start_log_says_a_made_teacher_code_but_never_repeats_a_chosen_one(tmp_path):
    ensure_secrets(tmp_path)
    file = tmp_path / "frontend" / "teacher_code"
    made = file.read_text().strip()
    log = announce(FrontendSettings(class_code="otter-maple-cloud-0427", teacher_code_file=file))
    assert log.splitlines() == [
        "Class code for students: otter-maple-cloud-0427",
        f"Teacher code (for the teacher's page; keep it from students): {made}",
    ]
    chosen = "quartz-lantern-meadow-harbor-5531"
    assert announce(FrontendSettings(class_code="x", teacher_code=chosen, teacher_code_file=file)) == (
        "Class code for students: x"
    )
    assert "No teacher code: the teacher's page is off." in announce(FrontendSettings(class_code="x"))


@pytest.mark.parametrize(
    ("code", "how_long"),
    [("heron-7", "about 6 hours"), ("benchmark", "about 39 minutes"), ("heron-teacher-7", "about 6 years")],
)
def test_a_weak_chosen_teacher_code_gets_a_warning_saying_how_soon_a_script_finds_it(code, how_long):
    assert weak_code(code)
    log = announce(FrontendSettings(class_code="x", teacher_code=code))
    warning = log.splitlines()[1]
    assert warning.startswith("WARNING: the teacher code set in CLASSROOM_TEACHER_CODE is weak")
    assert f"({len(code)} characters, about {code_bits(code):.0f} bits" in warning
    assert f"1,000 tries per 10 minutes would find it in {how_long} on average" in warning
    assert code not in warning  # the log says how weak, never the code itself


def test_a_long_random_chosen_code_is_not_called_weak():
    for code in ("a3f9c2d1e0b4", "correct horse battery staple", "xK9#mP2$qL7!"):  # openssl rand -hex 6: 48 bits
        assert not weak_code(code), (code, code_bits(code))
    assert weak_code("Zebra-Lamp-9")  # 12 characters, but two words and a digit: 29 bits
