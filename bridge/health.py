"""What /healthz reports, and the middleware that lets load-balancer probes reach it.

Each check answers "ok" or a short reason (never a host name, URL or credential):
  database  a write the database accepts and then rolls back, within
            BRIDGE_HEALTHZ_WRITE_TIMEOUT_SECONDS (a locked, read-only or full database fails it)
  broker    Redis answers a PING within the same timeout (REDIS_URL), or the ORM broker's database
  worker    the worker cluster's heartbeat (bridge.heartbeat) is younger than BRIDGE_HEARTBEAT_STALE_SECONDS
  infobip   "configured" when INFOBIP_BASE_URL and INFOBIP_API_KEY are set, else "not configured"
status is "error" (HTTP 503) when the database or broker fails, "degraded" (200) when only the
worker is missing or Infobip is not configured, else "ok" (200).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from bridge import heartbeat
from bridge.models import Heartbeat

PROBE_ROW = "healthz-write-probe"


class _RollBack(Exception):
    pass


@contextlib.contextmanager
def _sqlite_busy_timeout(seconds: float) -> Iterator[None]:
    """SQLite waits this long (not the usual SQLITE_TIMEOUT_SECONDS) for another writer's lock."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        previous = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {int(previous)}")


@contextlib.contextmanager
def _bounded(seconds: float) -> Iterator[None]:
    """A transaction whose statements give up after `seconds` instead of waiting for locks."""
    connection.ensure_connection()
    waiting = _sqlite_busy_timeout(seconds) if connection.vendor == "sqlite" else contextlib.nullcontext()
    with waiting, transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                milliseconds = int(seconds * 1000)
                cursor.execute(f"SET LOCAL statement_timeout = {milliseconds}")
                cursor.execute(f"SET LOCAL lock_timeout = {milliseconds}")
        yield


def database() -> str:
    """Write a row and roll it back, within the health timeout."""
    seconds = settings.BRIDGE_HEALTHZ_WRITE_TIMEOUT_SECONDS
    try:
        with _bounded(seconds):
            Heartbeat.objects.filter(name=PROBE_ROW).delete()
            Heartbeat.objects.create(name=PROBE_ROW, beat_at=timezone.now())
            raise _RollBack
    except _RollBack:
        return "ok"
    except Exception as exc:
        return f"error: the database refused a write or did not answer in {seconds:g}s ({type(exc).__name__})"


def broker(database_ok: bool = True) -> str:
    seconds = settings.BRIDGE_HEALTHZ_WRITE_TIMEOUT_SECONDS
    try:
        if settings.REDIS_URL:
            import redis

            client = redis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=seconds, socket_timeout=seconds
            )
            try:
                return "ok" if client.ping() else "error: no answer"
            finally:
                client.close()
        if not database_ok:
            return "error: the queue is in the database, which failed"
        from django_q.brokers import get_broker

        with _bounded(seconds):
            return "ok" if get_broker().ping() else "error: no answer"
    except Exception as exc:
        return f"error: no answer in {seconds:g}s ({type(exc).__name__})"


def worker(database_ok: bool = True) -> str:
    if not database_ok:
        return "unknown: the database failed"
    try:
        with _bounded(settings.BRIDGE_HEALTHZ_WRITE_TIMEOUT_SECONDS):
            seconds = heartbeat.age()
    except Exception as exc:
        return f"unknown ({type(exc).__name__})"
    if seconds is None:
        return "missing: no worker has ever beaten (is qcluster running?)"
    if seconds > settings.BRIDGE_HEARTBEAT_STALE_SECONDS:
        return f"missing: last heartbeat {seconds:.0f}s ago (is qcluster running?)"
    return "ok"


def infobip() -> str:
    return "configured" if settings.INFOBIP_BASE_URL and settings.INFOBIP_API_KEY else "not configured"


def report() -> tuple[int, dict[str, str]]:
    """(HTTP status, body) of /healthz; see the module docstring."""
    written = database()
    ok = written == "ok"
    checks = {"database": written, "broker": broker(ok), "worker": worker(ok), "infobip": infobip()}
    if checks["database"] != "ok" or checks["broker"] != "ok":
        status = "error"
    elif checks["worker"] != "ok" or checks["infobip"] != "configured":
        status = "degraded"
    else:
        status = "ok"
    return (503 if status == "error" else 200), {"status": status, **checks}


def response() -> JsonResponse:
    code, body = report()
    answer = JsonResponse(body, status=code)
    answer["Cache-Control"] = "no-cache, no-store, must-revalidate, private"
    return answer


def is_probe_host(host_header: str) -> bool:
    """An IP address (v4, or v6 in brackets), with or without a port, or one of BRIDGE_PROBE_HOSTS."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if not host:
        return False
    if host in {h.lower() for h in settings.BRIDGE_PROBE_HOSTS}:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ProbeHostMiddleware:
    """Answers GET/HEAD /healthz from load balancers that probe with an IP address or a configured
    probe host as Host, which ALLOWED_HOSTS would refuse with 400 (and an SSL redirect would bounce).
    Every other request goes on through the stack untouched."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        if (
            request.path_info == "/healthz"
            and request.method in ("GET", "HEAD")
            and is_probe_host(request.META.get("HTTP_HOST", ""))
        ):
            return response()
        return self.get_response(request)
