"""Configuration read once at start and checked all at once.

config/settings.py reads every variable through a `Problems` collector instead of raising at the first
bad value: each problem is one line naming the variable, what is wrong and what a valid value looks
like, and a safe placeholder stands in so Django can still load. bridge/checks.py turns the lines into
system-check errors (with the database and broker reachability), and config/startup.py refuses to
start any process while one is left, printing them all in one message without a traceback.

Nothing here imports Django: settings use it before Django is set up.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import warnings
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

# Secrets must be long and look random: estimated entropy (characters x Shannon bits per character
# of the value itself) of at least this many bits. 32 random url-safe characters give about 150;
# 32 hex digits (128 random bits) about 120; "abc" 5; a 50-character repeated word well under 100.
MIN_SECRET_BITS = 100

MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
MAKE_SECRET_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(50))"'
MAKE_FERNET_KEY = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
DEV_ENV_HINT = "scripts/run writes a development .env with random secrets on first start"


def estimated_bits(value: str) -> float:
    """Length times the Shannon entropy of the value's own character distribution, in bits."""
    if not value:
        return 0.0
    counts = Counter(value)
    per_char = max(0.0, -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values()))
    return per_char * len(value)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def host_of(url: str) -> str:
    """The host name of a URL, or "" when it has none or cannot be parsed."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


class Problems(list[str]):
    """One line per configuration problem: `NAME: what is wrong; what a valid value looks like`."""

    def __init__(self) -> None:
        super().__init__()
        # Secrets merely missing in development mode: the start is still refused (config/startup.py),
        # but `manage.py makemigrations` and other checks-only runs report them as warnings.
        self.missing_in_development: set[str] = set()

    def add(self, name: str, text: str) -> None:
        self.append(f"{name}: {text}")

    def secret(self, name: str, value: str, *, min_length: int, debug: bool, how: str) -> str:
        """A required secret: present, at least `min_length` characters, random-looking.

        Returns the value, or a random placeholder when it is missing or weak (the start is refused).
        """
        if not value:
            where = f"; {DEV_ENV_HINT}" if debug else ""
            self.add(
                name, f"not set; set {min_length} or more random characters, e.g. the output of {how}{where}"
            )
            if debug:
                self.missing_in_development.add(self[-1])
        elif len(value) < min_length:
            self.add(
                name,
                f"too short ({len(value)} character{'' if len(value) == 1 else 's'}); use {min_length} or more random characters, "
                f"e.g. the output of {how}",
            )
        elif estimated_bits(value) < MIN_SECRET_BITS:
            self.add(
                name,
                f"too predictable (about {estimated_bits(value):.0f} bits; {MIN_SECRET_BITS} needed); use random "
                f"characters, e.g. the output of {how}",
            )
        else:
            return value
        return secrets.token_urlsafe(max(min_length, 50))

    def fernet_keys(self, name: str, keys: list[str]) -> list[str]:
        """Comma-separated Fernet keys (url-safe base64 of 32 bytes); names the bad ones by position."""
        good = []
        for position, key in enumerate(keys, start=1):
            try:
                valid = len(base64.urlsafe_b64decode(key.encode())) == 32 and len(key) == 44
            except (binascii.Error, ValueError):
                valid = False
            if valid:
                good.append(key)
            else:
                self.add(
                    name,
                    f"key {position} of {len(keys)} is not a Fernet key (44 url-safe base64 characters "
                    f"ending in '='); generate one with {MAKE_FERNET_KEY}",
                )
        return good

    def number(
        self, name: str, raw: str | None, default: float, kind: Callable = float, minimum: float = 0
    ) -> float:
        """A number of `kind` (int or float) of at least `minimum`; the default when unset."""
        if raw is None or raw == "":
            return default
        what = "a whole number" if kind is int else "a number"
        try:
            value = kind(raw)
        except ValueError:
            self.add(name, f"{raw!r} is not {what}; e.g. {kind(default)}")
            return kind(default)
        if not math.isfinite(value) or value < minimum:
            self.add(
                name, f"{raw!r} is out of range; {what} of at least {kind(minimum)}, e.g. {kind(default)}"
            )
            return kind(default)
        return value

    def http_url(self, name: str, value: str, example: str) -> str:
        """An absolute http(s) URL with a host."""
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            self.add(name, f"{value!r} is not an http(s) URL with a host; e.g. {example}")
        return value

    def database(self, url: str, parse: Callable[[str], dict]) -> dict | None:
        """DATABASE_URL parsed by `parse` (django-environ), or None when it cannot be used."""
        example = "postgres://USER:PASSWORD@HOST:5432/NAME or sqlite:////absolute/path/db.sqlite3"
        try:
            with warnings.catch_warnings():  # django-environ warns before returning a config without ENGINE
                warnings.simplefilter("ignore")
                config = parse(url)
        except Exception:  # django-environ raises several kinds for a malformed URL
            config = {}
        if not config.get("ENGINE"):
            self.add("DATABASE_URL", f"{redact_url(url)!r} is not a database URL; e.g. {example}")
            return None
        return config

    def redis_url(self, url: str) -> str:
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("redis", "rediss", "unix") and (
                bool(parts.hostname) or parts.scheme == "unix"
            )
            parts.port  # noqa: B018  (raises ValueError for a bad port)
        except ValueError:
            ok = False
        if not ok:
            self.add("REDIS_URL", f"{redact_url(url)!r} is not a Redis URL; e.g. redis://127.0.0.1:6379/0")
        return url

    def choice(self, name: str, value: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            self.add(name, f"{value!r} is not one of {', '.join(choices)}")
            return choices[-1]
        return value
