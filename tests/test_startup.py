"""A bad configuration is refused at start with one message: every problem at once, one line each,
naming the variable and what a valid value looks like, a non-zero exit and no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEADER = "Handover Bridge cannot start; fix these settings (environment variables or .env), then start again:"

GOOD = {
    "SECRET_KEY": "test-only-secret-key-not-for-production-6f1c0e9b7a3d4852c1e7f09ab3d6c248",
    "BRIDGE_INBOUND_TOKEN": "test-inbound-token-0123456789abcdefghijklmn",
    "BRIDGE_API_TOKEN": "test-api-token-5d0b8e2f9a7c41e3b6d2f8",
    "BRIDGE_ENCRYPTION_KEYS": "8PV1hM0Qm1n5nB0-jIVuG0xDVh0ADZKh3yXbDw1sAJM=",
    "INFOBIP_BASE_URL": "https://xxxxx.api.infobip.com",
    "INFOBIP_API_KEY": "test-infobip-api-key",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(tmp_path: Path, args: list[str], **settings: str) -> subprocess.CompletedProcess:
    """`manage.py <args>` with exactly these settings: no .env, nothing from the test's environment."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "BRIDGE_ENV_FILE": ""}
    env.setdefault("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    env.update(settings)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def problem_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == HEADER, result.stderr
    return [line.strip() for line in lines[1:]]


def test_a_good_configuration_starts(tmp_path):
    result = start(tmp_path, ["check"], **GOOD)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_every_missing_secret_is_reported_at_once(tmp_path):
    settings = {k: v for k, v in GOOD.items() if k.startswith("INFOBIP")}
    lines = problem_lines(start(tmp_path, ["migrate"], DEBUG="0", **settings))
    assert [line.split(":", 1)[0] for line in lines] == [
        "SECRET_KEY",
        "BRIDGE_INBOUND_TOKEN",
        "BRIDGE_API_TOKEN",
        "BRIDGE_ENCRYPTION_KEYS",
    ]
    assert lines[0] == (
        "SECRET_KEY: not set; set 50 or more random characters, e.g. the output of "
        'python -c "import secrets; print(secrets.token_urlsafe(50))"'
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SECRET_KEY", "abc", "SECRET_KEY: too short (3 characters); use 50 or more random characters"),
        (
            "SECRET_KEY",
            "a" * 60,
            "SECRET_KEY: too predictable (about 0 bits; 100 needed); use random characters",
        ),
        (
            "BRIDGE_API_TOKEN",
            "x",
            "BRIDGE_API_TOKEN: too short (1 character); use 32 or more random characters",
        ),
        (
            "BRIDGE_INBOUND_TOKEN",
            "ab" * 20,
            "BRIDGE_INBOUND_TOKEN: too predictable (about 40 bits; 100 needed)",
        ),
        (
            "BRIDGE_ENCRYPTION_KEYS",
            "notakey",
            "BRIDGE_ENCRYPTION_KEYS: key 1 of 1 is not a Fernet key (44 url-safe base64 characters ending in '=')",
        ),
        (
            "DATABASE_URL",
            "notaurl",
            "DATABASE_URL: 'notaurl' is not a database URL; e.g. postgres://USER:PASSWORD@HOST:5432/NAME",
        ),
        (
            "REDIS_URL",
            "localhost:6379",
            "REDIS_URL: 'localhost:6379' is not a Redis URL; e.g. redis://127.0.0.1:6379/0",
        ),
        ("Q_WORKERS", "four", "Q_WORKERS: 'four' is not a whole number; e.g. 4"),
        (
            "BRIDGE_LEASE_SECONDS",
            "-1",
            "BRIDGE_LEASE_SECONDS: '-1' is out of range; a number of at least 0.0",
        ),
        (
            "INFOBIP_BASE_URL",
            "xxxxx.api.infobip.com",
            "INFOBIP_BASE_URL: 'xxxxx.api.infobip.com' is not an http(s) URL",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(tmp_path, name, value, expected):
    lines = problem_lines(start(tmp_path, ["check"], **{**GOOD, name: value}))
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines


def test_infobip_settings_are_required_when_debug_is_off(tmp_path):
    settings = {k: v for k, v in GOOD.items() if not k.startswith("INFOBIP")}
    lines = problem_lines(start(tmp_path, ["check"], DEBUG="0", **settings))
    assert [line.split(":", 1)[0] for line in lines] == ["INFOBIP_BASE_URL", "INFOBIP_API_KEY"]


def test_an_unreachable_postgresql_is_one_line(tmp_path):
    url = f"postgres://bridge:pw-not-shown@127.0.0.1:{free_port()}/bridge"
    lines = problem_lines(start(tmp_path, ["migrate"], **{**GOOD, "DATABASE_URL": url}))
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"DATABASE_URL: cannot connect to postgres://bridge:***@127.0.0.1:{url.split(':')[3]}"
    )
    assert "Connection refused" in lines[0]
    assert "pw-not-shown" not in lines[0]


def test_an_unreachable_redis_stops_the_worker_with_one_line(tmp_path):
    port = free_port()
    lines = problem_lines(
        start(tmp_path, ["qcluster"], **{**GOOD, "REDIS_URL": f"redis://127.0.0.1:{port}/3"})
    )
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"REDIS_URL: cannot reach redis://127.0.0.1:{port}/3: ")
    assert "Connection refused" in lines[0]


def test_development_mode_without_secrets_points_at_scripts_run(tmp_path):
    lines = problem_lines(start(tmp_path, ["createsuperuser"], DEBUG="1"))
    assert [line.split(":", 1)[0] for line in lines] == [
        "SECRET_KEY",
        "BRIDGE_INBOUND_TOKEN",
        "BRIDGE_API_TOKEN",
    ]
    assert all(
        line.endswith("scripts/run writes a development .env with random secrets on first start")
        for line in lines
    )


def test_the_web_app_refuses_a_bad_configuration_and_stops_gunicorn(tmp_path):
    env = {"PATH": os.environ["PATH"], "BRIDGE_ENV_FILE": "", **GOOD, "SECRET_KEY": "abc"}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    result = subprocess.run(
        [sys.executable, "-c", "import config.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 4  # gunicorn's "App failed to load": it stops instead of respawning
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [HEADER, result.stderr.splitlines()[1]]
    assert result.stderr.splitlines()[1].startswith("  SECRET_KEY: too short (3 characters)")
