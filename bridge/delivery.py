"""The delivery engine: claim the head of a lane, run it, record success, retry or dead letter.

Retry state lives on Delivery rows, never in django-q2: a task only says "look at this lane now".
A lane (one handover, one target) is worked strictly in order with one delivery in flight; a claim
is a short transaction holding the handover row, so two workers can never both own a lane.

Leases: a claim is leased for BRIDGE_LEASE_SECONDS and renewed by a heartbeat thread every third of
that while its worker is still working on it, however slow the call (up to the read timeout, and
beyond for handlers that make several calls). So a slow contact center is never called twice for
one delivery, and a killed worker's claim expires within one lease, after which the ticker drives
the lane again. Every write a worker makes about its claim carries the claim's token (fencing): a
worker that lost its lease (it stalled longer than the lease, or its database was unreachable)
can neither record an outcome nor carry on with the next part of a multi-part delivery.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Exists, F, Q
from django.utils import timezone

from bridge.causes import cause_of
from bridge.exceptions import (
    BridgeError,
    ConfigurationError,
    CredentialsUnreadable,
    PermanentError,
    TransientError,
    UpstreamAuthError,
)
from bridge.logs import for_delivery
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, State

logger = logging.getLogger(__name__)

TERMINAL = Delivery.TERMINAL_STATES
OPEN = Delivery.OPEN_DELIVERY_STATES
# An endpoint's last success is written at most this often (see _endpoint_health).
HEALTH_WRITE_SECONDS = 5
# A lane the sweeper queued is not queued again for this long, unless its head changes.
RENUDGE_SECONDS = 10
# One drive of a lane works it for at most this long (or this many deliveries), then queues the
# next drive of it.
DRIVE_SECONDS = 60
DRIVE_LIMIT = 200
# How many deliveries of a lane one claim reads ahead (claim_batch).
BATCH_SIZE = 20


class LeaseLost(Exception):
    """The worker's claim on a delivery ended: its lease ran out and another worker may own it now."""


class Heartbeat:
    """Renews a lease from a background thread while the work it protects goes on.

    `renew()` returns False when the lease is no longer ours (then the heartbeat stops and `lost` is
    set). It runs every `seconds / 3`, so two missed renewals in a row still keep the lease. Inside
    the caller's transaction (tests, `bridge_sync` under a transaction) nobody else can see the claim,
    so no thread is started.
    """

    def __init__(self, renew: Callable[[], bool], seconds: float, what: str) -> None:
        self.renew = renew
        self.interval = max(0.05, seconds / 3)
        self.what = what
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        if not connection.in_atomic_block:
            self._thread = threading.Thread(target=self._loop, name=f"lease {self.what}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval * 3)
            self._thread = None

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    renewed = self.renew()
                except Exception as exc:  # the database blinked: try again next beat
                    logger.warning("could not renew the lease of %s: %s", self.what, exc)
                    continue
                if not renewed:
                    if not self._stop.is_set():
                        self.lost = True
                        logger.warning("%s: lease lost while still working on it", self.what)
                    return
        finally:
            connections.close_all()  # this thread's own connections only


def claim_heartbeat(delivery: Delivery) -> Heartbeat:
    """A heartbeat that keeps `delivery`'s claim leased while its handler runs."""
    seconds = settings.BRIDGE_LEASE_SECONDS

    def renew() -> bool:
        return bool(
            Delivery.objects.filter(
                pk=delivery.pk, lease_token=delivery.lease_token, state=Delivery.Status.IN_FLIGHT
            ).update(lease_until=timezone.now() + timedelta(seconds=seconds))
        )

    return Heartbeat(renew, seconds, f"delivery {delivery.pk}")


def save_progress(delivery: Delivery, payload: dict) -> None:
    """Remember how far a multi-step delivery got (parts sent, tag added), while its claim holds.

    Raises LeaseLost when the claim is no longer this worker's: it must not make the next call."""
    if not Delivery.objects.filter(pk=delivery.pk, lease_token=delivery.lease_token).update(payload=payload):
        raise LeaseLost(f"delivery {delivery.pk}: lease lost")
    delivery.payload = payload


def enqueue_lane(link_id, lane: str, *, delivery_id: int | None = None) -> None:
    """Ask a worker to drive this lane once the current transaction commits.

    With `delivery_id` (the delivery just queued), nothing is queued when an older delivery of the
    lane is still open: whoever carries that one (its queued task, the worker looping over the lane,
    or the sweeper for a retry that is not due yet) carries this one too, since it was committed
    before this check. So a backlog costs one broker task per lane, not one per message.
    """

    def _send() -> None:
        if delivery_id is not None:
            older = Delivery.objects.filter(link_id=link_id, lane=lane, state__in=OPEN, pk__lt=delivery_id)
            if older.exists():
                return
        queue_lane(link_id, lane)

    transaction.on_commit(_send)


def queue_lane(link_id, lane: str) -> None:
    """Queue one drive of the lane now. Its result is not stored: the outcome is on the deliveries."""
    from django_q.tasks import async_task

    try:
        async_task(
            "bridge.tasks.drive_lane",
            str(link_id),
            lane,
            task_name=f"drive {lane} {link_id}"[:100],
            save=False,
        )
    except Exception:  # the broker being down must not fail the request; the ticker re-drives
        logger.warning("could not queue lane %s of handover %s; the ticker will pick it up", lane, link_id)


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with equal jitter, capped; never sooner than Retry-After."""
    base = settings.BRIDGE_RETRY_BASE_SECONDS
    cap = settings.BRIDGE_RETRY_MAX_SECONDS
    # The exponent is bounded: 2 ** 1024 no longer converts to float (raised max attempts).
    ceiling = min(cap, base * (2 ** min(max(0, attempts - 1), 64)))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def open_lane(link_id, lane: str):
    """The lane's open deliveries in the order they are worked (served by delivery_open_lane_idx)."""
    return Delivery.objects.filter(link_id=link_id, lane=lane, state__in=OPEN).order_by(*Delivery.LANE_ORDER)


def claim_next(link_id, lane: str) -> Delivery | None:
    """Lease the head of the lane if it is due and nothing else of the lane is in flight."""
    batch = claim_batch(link_id, lane, 1)
    return batch[0] if batch else None


def claim_batch(link_id, lane: str, size: int = BATCH_SIZE) -> list[Delivery]:
    """Lease the head of the lane (as claim_next does) and load, in the same reads, up to `size - 1`
    messages due behind it, with their Message rows and the handover (and its endpoint) loaded once.

    Only the first is claimed. The worker then hands its claim to the next one in the same
    transaction that records the previous outcome (`_hand_over`), so a steady lane costs about two
    statements and one commit per message instead of a claim each.
    """
    now = timezone.now()
    with transaction.atomic():
        link = (
            ConversationLink.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .filter(pk=link_id)
            .first()
        )
        if link is None:
            return []
        lane_items = open_lane(link_id, lane)
        if lane_items.filter(state=Delivery.Status.IN_FLIGHT, lease_until__gt=now).exists():
            return []
        items = list(lane_items.select_related("message")[:size])
        if not items:
            return []
        head = items[0]
        if head.phase >= 2 and Delivery.objects.filter(link=link, state__in=OPEN, phase__lt=2).exists():
            return []  # a close waits until both lanes have nothing else to carry
        if head.state == Delivery.Status.PENDING and head.next_attempt_at > now:
            return []
        if not _lease(head, now, state=head.state):
            return []
    batch = [head]
    if head.phase == 1:
        for item in items[1:]:
            if item.phase != 1 or item.state != Delivery.Status.PENDING or item.next_attempt_at > now:
                break
            batch.append(item)
    for item in batch:
        item.link = link
    return batch


def _lease(delivery: Delivery, now, *, state: str, extra: Q | None = None) -> bool:
    """Claim `delivery` if it is still as it was read (state, attempts): a new lease and token."""
    token = uuid.uuid4().hex
    lease_until = now + timedelta(seconds=settings.BRIDGE_LEASE_SECONDS)
    rows = Delivery.objects.filter(pk=delivery.pk, state=state, attempts=delivery.attempts)
    if extra is not None:
        rows = rows.filter(extra)
    claimed = rows.update(
        state=Delivery.Status.IN_FLIGHT,
        lease_until=lease_until,
        lease_token=token,
        attempts=F("attempts") + 1,
    )
    if claimed:
        delivery.state, delivery.lease_until, delivery.lease_token = (
            Delivery.Status.IN_FLIGHT,
            lease_until,
            token,
        )
        delivery.attempts += 1
    return bool(claimed)


def _sorts_before(item: Delivery) -> Q:
    """Deliveries that come before `item` in LANE_ORDER (lexicographic on its fields)."""
    before: Q | None = None
    equal = Q()
    for field in Delivery.LANE_ORDER:
        step = equal & Q(**{f"{field}__lt": getattr(item, field)})
        before = step if before is None else before | step
        equal &= Q(**{field: getattr(item, field)})
    return before


def _hand_over(successor: Delivery, now) -> bool:
    """Claim the next delivery of a batch, unless something that sorts before it arrived meanwhile
    (then the next claim reads the lane again and takes that one first)."""
    earlier = open_lane(successor.link_id, successor.lane).filter(_sorts_before(successor))
    return _lease(
        successor,
        now,
        state=Delivery.Status.PENDING,
        extra=Q(next_attempt_at__lte=now) & ~Exists(earlier),
    )


def drive_lane(link_id, lane: str, *, limit: int | None = None) -> int:
    """Deliver the lane's due items in order until it is empty, blocked or waiting; return how many ran."""
    from bridge import services
    from bridge.handlers import HANDLERS  # handlers import services, which imports this module

    limit = limit or DRIVE_LIMIT
    done = 0
    deadline = time.monotonic() + DRIVE_SECONDS
    batch: list[Delivery] = []
    keeper = ClaimKeeper()
    with keeper:
        while True:
            if done >= limit or time.monotonic() > deadline:
                # Long lanes hand over to a fresh task (so one lane never holds a worker past the
                # task timeout, and other lanes' tasks get their turn); nothing else would re-drive it.
                queue_lane(link_id, lane)
                break
            if not batch:
                batch = claim_batch(link_id, lane)
                if not batch:
                    break
            delivery = batch.pop(0)
            last_one = done + 1 >= limit or time.monotonic() > deadline
            successor = batch[0] if batch and not last_one else None
            keeper.current = delivery
            if not run(delivery, HANDLERS[delivery.kind], successor=successor, heartbeat=keeper):
                batch = []
            keeper.current = batch[0] if batch else None  # claimed by the hand-over, or nothing
            done += 1
    if done:
        services.after_delivery(link_id)
    return done


class ClaimKeeper(Heartbeat):
    """One heartbeat for a whole drive: renews the lease of whichever delivery is current."""

    def __init__(self) -> None:
        super().__init__(self._renew, settings.BRIDGE_LEASE_SECONDS, "lane drive")
        self.current: Delivery | None = None

    def _renew(self) -> bool:
        current = self.current
        if current is None or current.state != Delivery.Status.IN_FLIGHT:
            return True
        renewed = Delivery.objects.filter(
            pk=current.pk, lease_token=current.lease_token, state=Delivery.Status.IN_FLIGHT
        ).update(lease_until=timezone.now() + timedelta(seconds=settings.BRIDGE_LEASE_SECONDS))
        return bool(renewed) or self.current is not current  # moved on meanwhile: not lost

    def _loop(self) -> None:
        # A lost claim ends only that delivery (its outcome is fenced), not the drive.
        try:
            while not self._stop.wait(self.interval):
                try:
                    if not self._renew():
                        logger.warning("delivery %s: lease lost while still working on it", self.current.pk)
                except Exception as exc:
                    logger.warning("could not renew the lease of %s: %s", self.what, exc)
        finally:
            connections.close_all()


@for_delivery
def run(
    delivery: Delivery,
    handler: Callable[[Delivery], str | None],
    *,
    successor: Delivery | None = None,
    heartbeat: Heartbeat | None = None,
) -> bool:
    """Run one claimed delivery, its lease renewed while it runs, and record how it ended.

    With `successor` (the next delivery of a claimed batch), a success also claims it in the same
    transaction; returns whether it did."""
    own = heartbeat is None
    beat = claim_heartbeat(delivery) if own else heartbeat
    try:
        if own:
            beat.start()
        try:
            note = handler(delivery)
        finally:
            if own:
                beat.stop()
    except LeaseLost:
        logger.warning("delivery %s: lease lost mid-way; its new owner carries on", delivery.pk)
    except TransientError as exc:
        _failed(delivery, exc, permanent=False, retry_after=exc.retry_after)
    except (UpstreamAuthError, CredentialsUnreadable) as exc:
        # Wrong or unreadable credentials heal when an operator fixes them (or restores a removed
        # encryption key), so keep retrying on the schedule (and show it on the endpoint) instead
        # of dead-lettering a whole backlog after one try each.
        _failed(delivery, exc, permanent=False)
    except (PermanentError, ConfigurationError) as exc:
        _failed(delivery, exc, permanent=True)
    except BridgeError as exc:
        _failed(delivery, exc, permanent=getattr(exc, "permanent", False))
    except Exception as exc:
        logger.exception("delivery %s crashed", delivery.pk)
        _failed(delivery, exc, permanent=False)
    else:
        return _succeeded(delivery, note, successor)
    return False


def _label(delivery: Delivery) -> str:
    """How the timeline names a delivery (its state is about to change, so not str())."""
    return f"{delivery.get_kind_display()} #{delivery.pk} ({delivery.get_lane_display().lower()})"


def _finish(delivery: Delivery, **fields) -> bool:
    """Write the outcome only if we still hold the lease (a slow worker may have lost it)."""
    updated = Delivery.objects.filter(pk=delivery.pk, lease_token=delivery.lease_token).update(
        lease_until=None, lease_token="", **fields
    )
    if not updated:
        logger.warning("delivery %s: lease lost before the outcome was recorded", delivery.pk)
    return bool(updated)


def _succeeded(delivery: Delivery, note: str | None, successor: Delivery | None = None) -> bool:
    from bridge import services

    now = timezone.now()
    skipped = bool(note and note.startswith("skipped"))
    state = Delivery.Status.SKIPPED if skipped else Delivery.Status.DONE
    with transaction.atomic():
        fields = {
            "state": state,
            "done_at": now,
            "failing_since": None,
            "last_error": note or "",
            "cause": "",
        }
        if not _finish(delivery, **fields):
            return False
        link = delivery.link
        if skipped:
            # Nothing was sent: never counted or worded as delivered, and no evidence of health.
            link.note("skipped", f"{_label(delivery)} not sent: {note.removeprefix('skipped:').strip()}")
        else:
            _endpoint_health(delivery, None)
            if delivery.attempts > 1 or delivery.last_error:
                tries = f"{delivery.attempts} attempt{'' if delivery.attempts == 1 else 's'}"
                link.note(
                    "delivered",
                    f"{_label(delivery)} delivered after {tries}; the earlier error is cleared: "
                    f"{delivery.last_error or 'see above'}",
                )
        if delivery.last_error:
            clear_recovered_error(link.pk)
        if successor is not None and _hand_over(successor, now):
            return True  # the handover is not closed while its lane still carries messages
        services.after_delivery(delivery.link_id)
    return False


def clear_recovered_error(link_id) -> None:
    """A handover's last error goes once nothing of it is failing or dead any more."""
    rest = Delivery.objects.filter(link_id=link_id)
    if not (rest.failing().exists() or rest.dead().exists()):
        ConversationLink.objects.filter(pk=link_id).exclude(state=State.FAILED).update(last_error="")


def _failed(
    delivery: Delivery, exc: BaseException, *, permanent: bool, retry_after: float | None = None
) -> None:
    from bridge import services

    now = timezone.now()
    error = str(exc) or type(exc).__name__
    exhausted = delivery.attempts >= settings.BRIDGE_RETRY_MAX_ATTEMPTS
    link = delivery.link
    with transaction.atomic():
        if permanent or exhausted:
            why = "permanent error" if permanent else f"gave up after {delivery.attempts} attempts"
            if not _finish(
                delivery,
                state=Delivery.Status.DEAD,
                done_at=now,
                last_error=f"{why}: {error}",
                cause=cause_of(exc),
            ):
                return
            logger.error("delivery %s of handover %s is dead (%s): %s", delivery.pk, link.pk, why, error)
            link.note("dead_letter", f"{_label(delivery)}: {why}: {error}")
            if delivery.kind == Delivery.Kind.OPEN:
                services.fail_handover(link, f"could not open the interaction ({why}): {error}")
            elif not permanent and delivery.kind == Delivery.Kind.MESSAGE:
                _hold_lane_behind(delivery, error)
            if delivery.kind == Delivery.Kind.MESSAGE and delivery.lane == Delivery.Lane.TO_INFOBIP:
                transaction.on_commit(lambda: _tell_ccaas_undelivered(delivery.pk, error))
        else:
            delay = backoff_seconds(delivery.attempts, retry_after)
            if not _finish(
                delivery,
                state=Delivery.Status.PENDING,
                next_attempt_at=now + timedelta(seconds=delay),
                failing_since=delivery.failing_since or now,
                last_error=error,
                cause=cause_of(exc),
            ):
                return
            logger.warning(
                "delivery %s of handover %s failed (attempt %s), retry in %.1fs: %s",
                delivery.pk,
                link.pk,
                delivery.attempts,
                delay,
                error,
            )
            link.note(
                "retry",
                f"{_label(delivery)} attempt {delivery.attempts} failed, next in {delay:.0f}s: {error}",
            )
        ConversationLink.objects.filter(pk=link.pk).update(last_error=error[:2000])
        _endpoint_health(delivery, exc)
        services.after_delivery(link.pk)


def _tell_ccaas_undelivered(delivery_id: int, error: str) -> None:
    """Let the contact center know an agent message will not reach the customer (best effort)."""
    from bridge.connectors import get_connector
    from bridge.handlers import interaction_ref

    row = Delivery.objects.select_related("link__endpoint", "message").filter(pk=delivery_id).first()
    if row is None or row.message is None or row.link.endpoint is None:
        return
    try:
        get_connector(row.link.endpoint).acknowledge_failed_delivery(
            interaction_ref(row.link), row.message.external_id, error
        )
    except Exception:
        logger.exception(
            "could not report undelivered message %s to the contact center", row.message.external_id
        )


def _hold_lane_behind(dead: Delivery, error: str) -> None:
    """The contact center (or Infobip) stayed down past the schedule: dead-letter the rest of the
    lane with it, so a retry from the admin re-sends all of them in their original order."""
    held = Delivery.objects.filter(
        link_id=dead.link_id, lane=dead.lane, kind=Delivery.Kind.MESSAGE, state=Delivery.Status.PENDING
    )
    held.update(
        state=Delivery.Status.DEAD,
        done_at=timezone.now(),
        last_error=f"held behind dead delivery #{dead.pk}: {error}"[:2000],
    )


_success_written: dict[int, float] = {}  # endpoint id -> when this process last recorded a success


def _endpoint_health(delivery: Delivery, exc: BaseException | None) -> None:
    """Record the outcome of a contact-center call on its endpoint (CcaasEndpoint.record_*)."""
    if delivery.lane != Delivery.Lane.TO_CCAAS or delivery.link.endpoint_id is None:
        return
    endpoint = CcaasEndpoint(pk=delivery.link.endpoint_id)
    if exc is None:
        # Every message would otherwise cost a statement: skip while this process wrote a success
        # moments ago and the endpoint was healthy when the batch was read.
        loaded = delivery.link.endpoint if "endpoint" in delivery.link._state.fields_cache else None
        recent = _success_written.get(endpoint.pk, float("-inf")) > time.monotonic() - HEALTH_WRITE_SECONDS
        if recent and loaded is not None and not (loaded.last_error or loaded.auth_failed):
            return
        endpoint.record_success(throttle_seconds=HEALTH_WRITE_SECONDS)
        _success_written[endpoint.pk] = time.monotonic()
    else:
        endpoint.record_failure(exc)


def due_deliveries(now):
    """What the sweeper looks at (served by delivery_pending_due_idx and delivery_lease_expiry_idx)."""
    renudge = now - timedelta(seconds=min(RENUDGE_SECONDS, settings.BRIDGE_LEASE_SECONDS))
    fresh_grace = now - timedelta(seconds=5)
    return Delivery.objects.filter(
        Q(state=Delivery.Status.PENDING, next_attempt_at__lte=now)
        & (Q(attempts__gt=0) | Q(created_at__lt=fresh_grace))
        | Q(state=Delivery.Status.IN_FLIGHT, lease_until__lte=now)
    ).filter(Q(nudged_at__isnull=True) | Q(nudged_at__lt=renudge))


def due_lanes(now=None) -> list[tuple[str, str]]:
    """Lanes with work a worker should pick up now: retries that came due, claims whose worker died,
    and fresh work whose queue message was lost. Marks them so the next tick does not repeat them."""
    now = now or timezone.now()
    candidates = due_deliveries(now).values_list("pk", "link_id", "lane")[:5000]
    lanes: dict[tuple[str, str], int] = {}
    for pk, link_id, lane in candidates:
        lanes.setdefault((str(link_id), lane), pk)
    if lanes:
        Delivery.objects.filter(pk__in=list(lanes.values())).update(nudged_at=now)
    return list(lanes)


def retry_dead(deliveries) -> int:
    """Put dead (or waiting) deliveries back to work now, keeping each lane's original order."""
    now = timezone.now()
    rows = list(deliveries.filter(state__in=[Delivery.Status.DEAD, Delivery.Status.PENDING]))
    count = 0
    with transaction.atomic():
        for delivery in rows:
            Delivery.objects.filter(pk=delivery.pk).update(
                state=Delivery.Status.PENDING,
                attempts=0,
                next_attempt_at=now,
                failing_since=None,
                done_at=None,
                nudged_at=None,
            )
            count += 1
        for link_id, lane in {(d.link_id, d.lane) for d in rows}:
            enqueue_lane(link_id, lane)
    return count


def lane_is_idle(link: ConversationLink) -> bool:
    return not Delivery.objects.filter(link=link, state__in=OPEN).exists()


def drain(*, rounds: int = 20) -> int:
    """Drive, here and now, every lane with due work until none is left (bridge_sync, the demo)."""
    total = 0
    for _ in range(rounds):
        now = timezone.now()
        lanes = set(
            Delivery.objects.filter(
                Q(state=Delivery.Status.PENDING, next_attempt_at__lte=now)
                | Q(state=Delivery.Status.IN_FLIGHT, lease_until__lte=now)
            ).values_list("link_id", "lane")
        )
        done = sum(drive_lane(link_id, lane) for link_id, lane in lanes)
        total += done
        if not done:
            break
    return total
