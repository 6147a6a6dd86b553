"""Periodic work: the ticker that re-drives due deliveries, polls poll-mode endpoints, flags stuck
handovers and closes idle ones. Named leases make sure each of these runs once at a time."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone

from bridge import alerts, bots, handlers, http, reconcile, retention, services
from bridge import delivery as engine
from bridge.connectors import get_connector
from bridge.exceptions import BridgeError, TransientError, UpstreamError
from bridge.heartbeat import beat as beat_worker_heartbeat
from bridge.models import CcaasEndpoint, InfobipBot, Lease

# How often the retention pass runs when a retention period is set.
RETENTION_EVERY_SECONDS = 3600

logger = logging.getLogger(__name__)


# --- leases --------------------------------------------------------------------------------------
def acquire_lease(name: str, seconds: float) -> str | None:
    """Take the named lease if it is free or expired; return its token, or None if someone holds it."""
    now = timezone.now()
    token = uuid.uuid4().hex
    expires = now + timedelta(seconds=seconds)
    with transaction.atomic():
        if Lease.objects.filter(name=name, expires_at__lte=now).update(owner=token, expires_at=expires):
            return token
        try:
            with transaction.atomic():
                Lease.objects.create(name=name, owner=token, expires_at=expires)
        except IntegrityError:
            return None
    return token


def renew_lease(name: str, token: str, seconds: float) -> bool:
    return bool(
        Lease.objects.filter(name=name, owner=token).update(
            expires_at=timezone.now() + timedelta(seconds=seconds)
        )
    )


def release_lease(name: str, token: str) -> None:
    Lease.objects.filter(name=name, owner=token).update(expires_at=timezone.now() - timedelta(seconds=1))


# --- polling -------------------------------------------------------------------------------------
def poll_endpoint(endpoint_id: int) -> services.Ingested | None:
    """One poll of one endpoint; never two at once for the same endpoint (fault F17 in docs/reliability.md)."""
    endpoint = CcaasEndpoint.objects.filter(pk=endpoint_id, enabled=True).first()
    if endpoint is None:
        return None
    name = f"poll:{endpoint.slug}"
    token = acquire_lease(name, settings.BRIDGE_LEASE_SECONDS)
    if token is None:
        logger.info("poll of %s skipped: the previous poll is still running", endpoint.slug)
        return None
    interval = settings.BRIDGE_POLL_INTERVAL_SECONDS
    # A poll that reads many pages may outlast the lease: keep it renewed while the poll runs.
    heartbeat = engine.Heartbeat(
        lambda: renew_lease(name, token, settings.BRIDGE_LEASE_SECONDS),
        settings.BRIDGE_LEASE_SECONDS,
        f"poll of {endpoint.slug}",
    ).start()
    with http.count_calls() as calls:
        try:
            connector = get_connector(endpoint)
            refs = [
                handlers.interaction_ref(link)
                for link in endpoint.handovers.filter(state__in=["ACTIVE", "CLOSING"]).exclude(
                    interaction_id=""
                )
            ]
            result = connector.poll(endpoint.poll_cursor, refs)
            ingested = services.ingest_events(endpoint, result.events, cursor=result.cursor)
            # Health only from evidence: a cycle with nothing to ask made no call and proves nothing.
            if calls.sent:
                endpoint.record_success()
            CcaasEndpoint.objects.filter(pk=endpoint.pk).update(
                poll_next_at=timezone.now() + timedelta(seconds=interval)
            )
            return ingested
        except BridgeError as exc:
            delay = (
                max(interval, getattr(exc, "retry_after", None) or 0)
                if isinstance(exc, TransientError)
                else interval
            )
            logger.warning("poll of %s failed: %s", endpoint.slug, exc)
            endpoint.record_failure(exc)
            CcaasEndpoint.objects.filter(pk=endpoint.pk).update(
                poll_next_at=timezone.now() + timedelta(seconds=delay)
            )
            return None
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            # The contact center answered in a shape the connector did not expect: shown on the
            # endpoint and tried again next interval, never a crash that hides the poll's failure.
            logger.exception("poll of %s met an unexpected answer", endpoint.slug)
            endpoint.record_failure(
                UpstreamError(
                    f"poll of {endpoint.slug}: unexpected answer ({type(exc).__name__}: {exc})"[:500],
                    service=f"endpoint {endpoint.slug}",
                )
            )
            CcaasEndpoint.objects.filter(pk=endpoint.pk).update(
                poll_next_at=timezone.now() + timedelta(seconds=interval)
            )
            return None
        finally:
            heartbeat.stop()
            release_lease(name, token)


def polls(endpoint: CcaasEndpoint) -> bool:
    """Whether the ticker and `bridge_sync` poll this endpoint; its connector decides
    (`Connector.polled`)."""
    return endpoint.polled


def due_poll_endpoints(now=None) -> list[int]:
    now = now or timezone.now()
    ids = []
    for endpoint in CcaasEndpoint.objects.filter(enabled=True).filter(
        Q(poll_next_at__isnull=True) | Q(poll_next_at__lte=now)
    ):
        if polls(endpoint):
            ids.append(endpoint.pk)
    if ids:
        # Claimed for this interval; poll_endpoint sets the next time when it finishes.
        CcaasEndpoint.objects.filter(pk__in=ids).update(
            poll_next_at=now + timedelta(seconds=max(settings.BRIDGE_POLL_INTERVAL_SECONDS, 1) + 60)
        )
    return ids


# --- the ticker ----------------------------------------------------------------------------------
@dataclass
class TickResult:
    lanes: int = 0
    polls: int = 0
    stuck: int = 0
    idle_closed: int = 0

    def __str__(self) -> str:
        return (
            f"{self.lanes} lanes driven, {self.polls} endpoints polled, "
            f"{self.stuck} newly stuck, {self.idle_closed} idle handovers closed"
        )


def tick(*, inline: bool = False, poll_all: bool = False) -> TickResult:
    """One pass over everything periodic. Queues the work for workers, or does it here (inline)."""
    from django_q.tasks import async_task

    result = TickResult()
    for link_id, lane in engine.due_lanes():
        result.lanes += 1
        if inline:
            engine.drive_lane(link_id, lane)
        else:
            engine.queue_lane(link_id, lane)
    if poll_all:
        endpoint_ids = [e.pk for e in CcaasEndpoint.objects.filter(enabled=True) if polls(e)]
    else:
        endpoint_ids = due_poll_endpoints()
    for endpoint_id in endpoint_ids:
        result.polls += 1
        if inline:
            poll_endpoint(endpoint_id)
        else:
            async_task("bridge.tasks.poll_endpoint", endpoint_id, task_name=f"poll {endpoint_id}")
    # Reconciliation (bridge.reconcile): once per BRIDGE_RECONCILE_INTERVAL_SECONDS; the lease is left
    # to expire by itself, so it marks when the next round is due, across every ticker.
    if acquire_lease("reconcile", max(settings.BRIDGE_RECONCILE_INTERVAL_SECONDS, 0.5)) is not None:
        if inline:
            reconcile.reconcile_all()
        else:
            async_task("bridge.reconcile.reconcile_all", task_name="reconcile")
    # Retention (bridge.retention): at most once an hour, when a period is set.
    if (settings.BRIDGE_RETENTION_DAYS or settings.BRIDGE_RAW_RETENTION_DAYS) and acquire_lease(
        "retention", RETENTION_EVERY_SECONDS
    ) is not None:
        if inline:
            retention.apply()
        else:
            async_task("bridge.tasks.apply_retention", task_name="retention")
    # External bots (bridge.bots): notice one disabled or deleted on Infobip, when any is registered.
    if (
        settings.BRIDGE_BOT_CHECK_SECONDS > 0
        and InfobipBot.objects.exists()
        and acquire_lease("bot-check", settings.BRIDGE_BOT_CHECK_SECONDS) is not None
    ):
        if inline:
            bots.check_all()
        else:
            async_task("bridge.bots.check_all", task_name="bot-check")
    result.stuck = services.flag_stuck()
    result.idle_closed = services.close_idle()
    try:
        alerts.run()
    except Exception:  # alerts must never stop the ticker; failures are on the alert outbox
        logger.exception("alert round failed")
    if inline:
        # idle closes and polls may have queued work of their own: carry it out too
        for link_id, lane in engine.due_lanes(timezone.now() + timedelta(seconds=5)):
            engine.drive_lane(link_id, lane)
    return result


TICKER_LEASE = "ticker"


def ticker_lease_seconds() -> float:
    """How long the ticker's lease lasts unless renewed: a crashed ticker is replaced after this."""
    return max(0.2, settings.BRIDGE_TICK_SECONDS) * 3 + 2


def run_ticker(duration: float = 50.0, *, chain: bool = True) -> str:
    """Tick every BRIDGE_TICK_SECONDS for `duration`, then (with `chain`) hand over to a fresh
    ticker task.

    Each worker process runs a ticker thread (start_ticker_thread); this task is the fallback the
    per-minute schedule starts. The ticker lease keeps it to one ticker at a time across every
    process and host, renewed by a heartbeat while the ticker lives.
    """
    from django_q.tasks import async_task

    period = max(0.2, settings.BRIDGE_TICK_SECONDS)
    lease_seconds = ticker_lease_seconds()
    token = acquire_lease(TICKER_LEASE, lease_seconds)
    if token is None:
        return "another ticker is running"
    deadline = time.monotonic() + duration
    ticks = 0
    heartbeat = engine.Heartbeat(
        lambda: renew_lease(TICKER_LEASE, token, lease_seconds), lease_seconds, "ticker"
    ).start()
    try:
        while time.monotonic() < deadline and not heartbeat.lost:
            started = time.monotonic()
            close_old_connections()
            try:
                beat_worker_heartbeat()  # /healthz: the cluster is alive
                tick()
            except Exception:
                logger.exception("tick failed")
            ticks += 1
            if not renew_lease(TICKER_LEASE, token, lease_seconds):
                return f"lease lost after {ticks} ticks"
            time.sleep(max(0.0, period - (time.monotonic() - started)))
    finally:
        heartbeat.stop()
        release_lease(TICKER_LEASE, token)
    if heartbeat.lost:
        return f"lease lost after {ticks} ticks"
    if chain:
        async_task("bridge.tasks.run_ticker", task_name="ticker")
    return f"{ticks} ticks"


_ticker_thread: threading.Thread | None = None


def start_ticker_thread() -> None:
    """Run a ticker beside this worker process's tasks (django-q2's post_spawn signal calls it).

    Every worker process runs one; the ticker lease lets exactly one of them tick at a time, and the
    others take over within one ticker lease if its process dies. So polls, retries and stuck
    detection start with the cluster, not at the scheduler's next minute, and never wait behind
    queued tasks.
    """
    global _ticker_thread
    if _ticker_thread is not None and _ticker_thread.is_alive():
        return
    _ticker_thread = threading.Thread(target=_ticker_loop, name="bridge ticker", daemon=True)
    _ticker_thread.start()


def _ticker_loop() -> None:
    from bridge.models import Lease

    while True:
        try:
            close_old_connections()
            if not Lease.objects.filter(name=TICKER_LEASE, expires_at__gt=timezone.now()).exists():
                run_ticker(duration=3600, chain=False)
        except Exception:
            logger.exception("the ticker thread hit an error; it tries again")
        time.sleep(min(1.0, max(0.2, settings.BRIDGE_TICK_SECONDS)))
