"""A client-side rate limit shared by every worker: fixed one-minute windows counted in the
database (one atomic UPDATE per request), or in Redis when REDIS_URL is set.

Used for Infobip's Get Messages (about 500 requests a minute, `x-throttling-info` in its OpenAPI
spec) and for contact centers with an account-wide limit (Zendesk): staying under a limit avoids
429s that would slow every handover.
"""

from __future__ import annotations

import logging
import os
import time

from django.db import IntegrityError, transaction
from django.db.models import F

from bridge.exceptions import TransientError

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


class RateLimited(TransientError):
    """The shared budget of this window is spent; try again after `retry_after` seconds."""


def _redis():
    url = os.environ.get("REDIS_URL")
    if not url:
        return None
    import redis

    return redis.Redis.from_url(url, socket_timeout=2)


def try_acquire(key: str, limit: int, *, now: float | None = None) -> float:
    """Take one request from the budget of `key`. Returns 0 when granted, else seconds to wait."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS) * WINDOW_SECONDS
    wait = window + WINDOW_SECONDS - now
    client = _redis()
    if client is not None:
        try:
            name = f"bridge:rate:{key}:{window}"
            pipe = client.pipeline()
            pipe.incr(name)
            pipe.expire(name, WINDOW_SECONDS * 2)
            count = pipe.execute()[0]
            return 0.0 if count <= limit else wait
        except Exception as exc:  # Redis down: fall back to the database, never to "unlimited"
            logger.warning("rate limit via Redis failed (%s); using the database", type(exc).__name__)
    from bridge.models import RateWindow

    with transaction.atomic():
        if RateWindow.objects.filter(key=key, window=window, count__lt=limit).update(count=F("count") + 1):
            return 0.0
        try:
            with transaction.atomic():
                RateWindow.objects.create(key=key, window=window, count=1)
        except IntegrityError:
            # The window exists; either someone just created it (retry once) or it is full.
            if RateWindow.objects.filter(key=key, window=window, count__lt=limit).update(
                count=F("count") + 1
            ):
                return 0.0
            return wait
    RateWindow.objects.filter(key=key, window__lt=window - WINDOW_SECONDS).delete()
    return 0.0


def acquire(key: str, limit: int, *, max_wait: float = 0.0) -> None:
    """Take one request, waiting up to `max_wait` seconds for the next window; else RateLimited."""
    deadline = time.monotonic() + max_wait
    while True:
        wait = try_acquire(key, limit)
        if wait <= 0:
            return
        if time.monotonic() + wait > deadline:
            raise RateLimited(
                f"client-side limit of {limit} {key} requests a minute reached", retry_after=wait
            )
        time.sleep(wait)
