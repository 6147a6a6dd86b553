"""Worker liveness: the worker cluster's ticker calls beat() every tick; /healthz reads age().

A beat is one row per process kind (Heartbeat, name "worker"), written at most every
BEAT_EVERY_SECONDS per process, so a ticker ticking every second costs one small write in five.
Call beat() from whatever loop proves the cluster is taking work.
"""

from __future__ import annotations

import os
import socket
import time

from django.conf import settings
from django.utils import timezone

from bridge.models import Heartbeat

WORKER = "worker"
BEAT_EVERY_SECONDS = 5.0
_last_beat: dict[str, float] = {}


def beat(name: str = WORKER, *, force: bool = False) -> bool:
    """Record that this process is alive now; returns whether a row was written (at most one per
    BEAT_EVERY_SECONDS per process, unless `force`)."""
    now = time.monotonic()
    last = _last_beat.get(name)
    if not force and last is not None and now - last < BEAT_EVERY_SECONDS:
        return False
    Heartbeat.objects.update_or_create(
        name=name,
        defaults={"beat_at": timezone.now(), "host": socket.gethostname()[:255], "pid": os.getpid()},
    )
    _last_beat[name] = now
    return True


def age(name: str = WORKER) -> float | None:
    """Seconds since the last beat of `name`, or None when there has never been one."""
    row = Heartbeat.objects.filter(name=name).first()
    return None if row is None else max(0.0, (timezone.now() - row.beat_at).total_seconds())


def alive(name: str = WORKER) -> bool:
    """Whether `name` beat within BRIDGE_HEARTBEAT_STALE_SECONDS."""
    seconds = age(name)
    return seconds is not None and seconds <= settings.BRIDGE_HEARTBEAT_STALE_SECONDS
