"""The class's secrets: made on a server's first start, each handed only to the service that reads it.

A fresh install must expose nothing a student could use: so the API token (who
may talk to the inference service), the Redis password, the cache secret (which
signs what the service stores), the class code and the teacher code exist from the
first start, without the teacher choosing them. `python -m services.inference make-secrets DIR`
writes any that are missing; each service reads its own from `CLASSROOM_*_FILE`.

DIR holds one folder per reader, so a reader can be given its folder alone
(compose mounts each as its own volume; Kubernetes mounts the keys each pod needs):

    service/   api_token redis_password cache_secret teacher_code   the inference service, precompute
    frontend/  api_token class_code teacher_code                     the front end
    redis/     redis-auth.conf                          Redis: `requirepass`, included by its config

Folders are 0700 and files 0600. Run as root (compose's one-shot job), each folder
is given to the user its reader runs as, so nobody else in a container reads it.
"""

from __future__ import annotations

import math
import os
import secrets
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

SERVICE_SECRETS = ("api_token", "redis_password", "cache_secret")
CLASS_CODE = "class_code"
TEACHER_CODE = "teacher_code"
REDIS_AUTH_CONF = "redis-auth.conf"

# The users the readers run as: `useradd --uid 10001 classroom` in deploy/*.Dockerfile, and the
# official redis image's `redis` user (uid 999), which its entry point switches to.
CLASSROOM_UID = 10001
REDIS_UID = 999

# A class code: three everyday words and four digits, e.g. "otter-maple-cloud-0427". Typed by
# students, so short words; guessed by nobody, see class_code_bits() and docs/security.md.
CLASS_CODE_WORDS = 3
CLASS_CODE_DIGITS = 4
# A teacher code: four words and four digits (45 bits, 256 times the class code's guesses). Typed by
# the teacher alone, so it can be longer; said only where the person running the server looks.
TEACHER_CODE_WORDS = 4
_WORD_LIST = Path(__file__).with_name("class_code_words.txt")
# A chosen teacher code under either of these is called weak in the front end's log (code_bits()).
WEAK_CODE_CHARS = 12
WEAK_CODE_BITS = 40.0


@dataclass(frozen=True)
class Reader:
    """One service's folder of secrets: what it holds and which user may read it."""

    folder: str
    files: tuple[str, ...]
    uid: int


READERS = (
    Reader("service", (*SERVICE_SECRETS, TEACHER_CODE), CLASSROOM_UID),  # the inference service, precompute
    Reader("frontend", ("api_token", CLASS_CODE, TEACHER_CODE), CLASSROOM_UID),  # never the Redis password...
    Reader("redis", (REDIS_AUTH_CONF,), REDIS_UID),
)


def read_secret(value: str | None, path: Path | None) -> str | None:
    """A secret given directly, or else read from its file (stripped of its newline); None if neither."""
    if value:
        return value
    if path is None:
        return None
    text = path.read_text().strip()
    if not text:
        raise ValueError(f"the secret file {path} is empty")
    return text


@cache
def class_code_words() -> tuple[str, ...]:
    lines = (line.strip() for line in _WORD_LIST.read_text().splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def make_class_code(words: int = CLASS_CODE_WORDS) -> str:
    """A fresh code: `words` random words and four random digits, joined by hyphens."""
    chosen = [secrets.choice(class_code_words()) for _ in range(words)]
    return "-".join([*chosen, f"{secrets.randbelow(10**CLASS_CODE_DIGITS):0{CLASS_CODE_DIGITS}d}"])


def make_teacher_code() -> str:
    """A fresh teacher code: four random words and four random digits, e.g. "otter-maple-cloud-river-0427"."""
    return make_class_code(TEACHER_CODE_WORDS)


def class_code_bits(words: int = CLASS_CODE_WORDS) -> float:
    """How many random bits a generated code carries (a guesser needs half of 2**bits tries on average)."""
    return words * math.log2(len(class_code_words())) + CLASS_CODE_DIGITS * math.log2(10)


def teacher_code_bits() -> float:
    return class_code_bits(TEACHER_CODE_WORDS)


def code_bits(code: str) -> float:
    """A simple estimate of a chosen code's strength, in bits, as a guesser who knows how people pick codes sees it.

    Each run of letters counts as one word from a 7,776-word list (12.9 bits; fewer when the run
    is shorter than three letters), each digit 3.3 bits, any other character but a hyphen or
    space 5 bits. So "heron-7" is 16 bits, "heron-teacher-7" 29, a generated teacher code 65.
    """
    bits, letters = 0.0, 0
    for character in (*code, " "):
        if character.isalpha():
            letters += 1
            continue
        if letters:
            bits += min(math.log2(7776), letters * math.log2(26))
            letters = 0
        if character.isdigit():
            bits += math.log2(10)
        elif character not in "- ":
            bits += 5.0
    return bits


def weak_code(code: str) -> bool:
    """Whether a chosen code is short or weak enough that a script at the front end's cap could find it."""
    return len(code) < WEAK_CODE_CHARS or code_bits(code) < WEAK_CODE_BITS


def redis_auth_conf(password: str) -> str:
    """Redis's password as a config file it includes, so the password never shows on a command line."""
    return f"# Made by make-secrets: Redis's password. Readable by Redis only.\nrequirepass {password}\n"


def _fresh(name: str) -> str:
    if name == CLASS_CODE:
        return make_class_code()
    return make_teacher_code() if name == TEACHER_CODE else secrets.token_urlsafe(32)


def _write_private(path: Path, text: str) -> None:
    """Write `text` into `path` as 0600, whole or not at all (a crash never leaves half a secret)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600 from the start
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def _give(path: Path, uid: int, mode: int) -> None:
    path.chmod(mode)
    if os.geteuid() == 0:  # compose's job: hand the folder to the user its reader runs as
        os.chown(path, uid, uid)


def ensure_secrets(folder: Path) -> list[str]:
    """Make each missing secret in `folder`, lay out every reader's folder, tighten modes; the names made.

    A secret made once is kept (cached lessons stay signed with the same cache secret);
    copies of it (the front end's API token, Redis's config) are rewritten from it.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    home = {}  # where each secret's one true copy lives: the first reader listing it
    for reader in READERS:
        (folder / reader.folder).mkdir(mode=0o700, exist_ok=True)
        for name in reader.files:
            home.setdefault(name, folder / reader.folder / name)
    for name in SERVICE_SECRETS:  # an older layout kept the service's secrets at the top: keep their values
        flat = folder / name
        if flat.is_file() and not home[name].exists():
            flat.replace(home[name])
    made, values = [], {}
    for name in (*SERVICE_SECRETS, CLASS_CODE, TEACHER_CODE):
        if home[name].exists():
            values[name] = read_secret(None, home[name])
        else:
            values[name] = _fresh(name)
            made.append(name)
    values[REDIS_AUTH_CONF] = redis_auth_conf(values["redis_password"])
    for reader in READERS:
        for name in reader.files:
            path = folder / reader.folder / name
            text = values[name] if name == REDIS_AUTH_CONF else values[name] + "\n"
            if not path.exists() or path.read_text() != text:
                _write_private(path, text)
            _give(path, reader.uid, 0o600)
        _give(folder / reader.folder, reader.uid, 0o700)
    return made


def with_password(url: str, password: str | None) -> str:
    """A Redis URL with the password put in (unless it carries one already)."""
    if not url or not password:
        return url
    parts = urlsplit(url)
    if parts.password:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f":{quote(password, safe='')}@{host}"))
