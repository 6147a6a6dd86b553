"""Run the demo in a throw-away bridge: its own temporary SQLite database, whose ORM queue no worker
reads, and its own random secrets, in a child process whose settings never see the operator's
`.env`, database or Redis. The child (`python -m bridge.demo`) migrates the empty database, plays
bridge.demo.scenario and exits 0 when the handover completed; the directory is removed afterwards.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
# Only what a Python process needs from the caller's environment; every setting is given explicitly.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT")


def environment(directory: Path) -> dict[str, str]:
    """The child's whole environment: a development bridge on a temporary database, no .env read."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "BRIDGE_ENV_FILE": "",  # read no .env: nothing of the operator's set-up applies
            "DEBUG": "1",
            "DATABASE_URL": f"sqlite:///{directory / 'demo.sqlite3'}",
            "REDIS_URL": "",  # the ORM broker of the temporary database: no worker reads it
            "SECRET_KEY": secrets.token_urlsafe(50),
            "BRIDGE_INBOUND_TOKEN": secrets.token_urlsafe(32),
            "BRIDGE_API_TOKEN": secrets.token_urlsafe(32),
            "BRIDGE_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "BRIDGE_ALLOW_PRIVATE_URLS": "1",  # the fakes listen on loopback
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run(write: Callable[[str], None]) -> int:
    """Run the demo in a sandbox, passing each line it prints to `write`; return its exit code."""
    with tempfile.TemporaryDirectory(prefix="bridge-demo-") as directory:
        child = subprocess.Popen(
            [sys.executable, "-m", "bridge.demo"],
            cwd=ROOT,
            env=environment(Path(directory)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert child.stdout is not None
        for line in child.stdout:
            write(line.rstrip("\n"))
        return child.wait()
