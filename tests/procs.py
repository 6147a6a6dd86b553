"""Helpers for tests that run real bridge processes (`manage.py qcluster`) against the test database.

The processes and the test share one database: a file for SQLite (an in-memory database cannot be
shared between processes), pytest-django's test database for PostgreSQL. Every process starts in
its own process group and is killed with the whole group when the test ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

# Compressed timers for real processes: retries, leases and ticks in (fractions of) seconds.
FAST_ENV = {
    "BRIDGE_LEASE_SECONDS": "3",
    "BRIDGE_TICK_SECONDS": "0.5",
    "BRIDGE_RETRY_BASE_SECONDS": "0.2",
    "BRIDGE_RETRY_MAX_SECONDS": "1",
    "BRIDGE_POLL_INTERVAL_SECONDS": "1",
    "BRIDGE_HTTP_READ_TIMEOUT": "30",
    "Q_WORKERS": "2",
    "Q_POLL_SECONDS": "0.2",
    "LOG_LEVEL": "INFO",
}


def use_file_sqlite() -> None:
    """Make the SQLite test database a file so other processes can open it.

    Must run before pytest-django creates the test database (at import of a test module is early
    enough). TEST_SQLITE_NAME, when set, already does this; otherwise a per-run temp file is used.
    """
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.sqlite3":
        return
    test = db.setdefault("TEST", {})
    name = test.get("NAME")
    if name and "memory" not in str(name):
        return
    path = Path(tempfile.gettempdir()) / f"bridge-test-{os.getpid()}.sqlite3"
    test["NAME"] = str(path)
    connection.settings_dict.setdefault("TEST", {})["NAME"] = str(path)
    # Django removes the file after a normal run; this covers a run that stopped before that.
    atexit.register(lambda: [Path(f"{path}{end}").unlink(missing_ok=True) for end in ("", "-wal", "-shm")])


def database_url() -> str:
    """DATABASE_URL of the (test) database this process is connected to right now."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        name = str(db["NAME"])
        if "memory" in name or not name.startswith("/"):
            raise RuntimeError(f"the SQLite test database must be a file to share it, not {name!r}")
        return f"sqlite:///{name}"
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{db['NAME']}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], Any], timeout: float, *, interval: float = 0.1, message: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message or predicate}")
        time.sleep(interval)


class BridgeProcess:
    """`manage.py <args>` in its own process group, output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path, name: str) -> None:
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> BridgeProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group (the cluster and its workers) and reap the leader."""
        self.signal_group(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):  # a zombie we cannot reap
                self.proc.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; the group is always killed at the end."""
        if self.running:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        self.kill()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def bridge_env(**overrides: str) -> dict[str, str]:
    """The test process's environment (pytest-env values included), pointed at the test database."""
    env = dict(os.environ)
    env.update(FAST_ENV)
    env["DATABASE_URL"] = database_url()
    env.pop("TEST_SQLITE_NAME", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def qcluster(log_dir: Path, name: str = "qcluster", **overrides: str) -> BridgeProcess:
    return BridgeProcess(["qcluster"], bridge_env(**overrides), log_dir, name).start()


def kick_ticker() -> bool:
    """Stand in for django-q2's once-a-minute schedule: queue the ticker task if no ticker holds
    its lease. Returns whether one was queued."""
    from django.utils import timezone
    from django_q.tasks import async_task

    from bridge.models import Lease
    from bridge.periodic import TICKER_LEASE

    if Lease.objects.filter(name=TICKER_LEASE, expires_at__gt=timezone.now()).exists():
        return False
    async_task("bridge.tasks.run_ticker", task_name="ticker (test)")
    return True
