"""Reconciliation: the bridge does not depend on Infobip's webhook being delivered (Infobip documents
no retry policy). For every open handover, Infobip's messages since the last one seen are compared
with what was recorded, and any customer message the webhook missed is recorded and forwarded, in
Infobip `createdAt` order. A dropped webhook costs at most BRIDGE_RECONCILE_INTERVAL_SECONDS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, timedelta

from django.conf import settings
from django.db import DataError, transaction
from django.utils import timezone

from bridge import handlers, services
from bridge.exceptions import BridgeError, ConversationClosedError, NotFoundError
from bridge.logs import for_handover
from bridge.models import ConversationLink, Delivery, HandoverEvent, Message, State
from bridge.ratelimit import RateLimited
from bridge.types import Direction

logger = logging.getLogger(__name__)


@dataclass
class Reconciled:
    handovers: int = 0
    recovered: int = 0
    errors: int = 0
    rate_limited: bool = False


@for_handover
def reconcile_link(link: ConversationLink, client=None) -> int:
    """Record and forward the customer messages of one handover that never arrived by webhook."""
    if link.state != State.ACTIVE:
        return 0
    client = client or services.infobip_client()
    since = link.last_infobip_message_at or link.opened_at or link.escalated_at
    since = since - timedelta(seconds=settings.BRIDGE_RECONCILE_OVERLAP_SECONDS)
    known = set(
        Message.objects.filter(link=link, source=Message.Source.INFOBIP).values_list("external_id", flat=True)
    )
    recovered = 0
    for message in client.iter_messages(
        link.conversation_id, created_after=since, on_refused=_refused_note(link)
    ):
        if message.id in known or message.direction != Direction.INBOUND:
            continue
        if _record(link, message, recovered=True):
            recovered += 1
            _note_gap(link, message)
    if recovered:
        link.note("reconciled", f"{recovered} customer messages recovered that the webhook did not deliver")
    return recovered


def _note_gap(link: ConversationLink, message) -> None:
    """Put the gap on the timeline: when the customer wrote the recovered message, how late it was
    found, and how many later messages had already gone to the contact center before it."""
    overtaken = Delivery.objects.filter(
        link=link,
        lane=Delivery.Lane.TO_CCAAS,
        kind=Delivery.Kind.MESSAGE,
        sort_at__gt=message.created_at,
        state__in=[Delivery.Status.DONE, Delivery.Status.IN_FLIGHT],
    ).count()
    late = (timezone.now() - message.created_at).total_seconds()
    written = message.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    order = (
        f"{overtaken} later message{'s' if overtaken != 1 else ''} had already reached the contact center, "
        "so it arrives out of order, marked as recovered"
        if overtaken
        else "nothing later had been delivered yet, so it arrives in order, marked as recovered"
    )
    link.note(
        "recovered",
        f"customer message {message.id} written {written} never came by webhook; found by "
        f"reconciliation {late:.0f} s later; {order}",
    )


def reconcile_all(now=None) -> Reconciled:
    """One reconciliation round over every active handover (the ticker calls it once per interval)."""
    result = Reconciled()
    client = None
    for link in (
        ConversationLink.objects.filter(state=State.ACTIVE)
        .exclude(interaction_id="")
        .order_by("last_infobip_message_at")
    ):
        result.handovers += 1
        try:
            client = client or services.infobip_client()
            result.recovered += reconcile_link(link, client)
        except RateLimited:
            result.rate_limited = True
            break  # the rest wait for the next round
        except (NotFoundError, ConversationClosedError):
            services.begin_close(
                link, services.CloseReason.CONVERSATION_CLOSED, actor="reconciliation", close_infobip=False
            )
        except BridgeError as exc:
            result.errors += 1
            logger.warning("reconciliation of %s failed: %s", link.conversation_id, exc)
        except Exception:
            # Whatever goes wrong with one conversation must not stop the round for the others.
            result.errors += 1
            logger.exception("reconciliation of %s crashed", link.conversation_id)
    return result


def fetch_messages(link_id, message_ids: list[str]) -> int:
    """Fetch messages by id (Get Messages, messageIds) and record the customer ones: for events whose
    content does not tell its content type."""
    link = ConversationLink.objects.filter(pk=link_id, state__in=[State.REQUESTED, State.ACTIVE]).first()
    if link is None:
        return 0
    return sum(
        _record(link, message)
        for message in services.infobip_client().iter_messages(
            link.conversation_id, message_ids=message_ids, on_refused=_refused_note(link)
        )
        if message.direction == Direction.INBOUND
    )


def _record(link: ConversationLink, message, *, recovered: bool = False) -> int:
    """Record one recovered message; one that cannot be stored is noted, never holds back the rest."""
    try:
        return int(services.record_once(link, message, recovered=recovered))
    except DataError as exc:
        logger.warning("message %s of handover %s cannot be stored: %s", message.id, link.pk, exc)
        _refused_note(link)(message.id, "a value of this message cannot be stored")
        return 0


def _refused_note(link: ConversationLink):
    """A callback noting, once per message, a message of Infobip's list the bridge cannot store."""

    def note(message_id: str, why: str) -> None:
        text = f"message {message_id or '(no id)'} from Get Messages refused: {why}"[:2000]
        if not HandoverEvent.objects.filter(link=link, kind="refused", text=text).exists():
            link.note("refused", text)

    return note


def push_tags(link_id, added: list[str] | None = None, removed: list[str] | None = None) -> None:
    """Tell a connector that follows tags what was added to or removed from the conversation."""
    link = ConversationLink.objects.select_related("endpoint").filter(pk=link_id).first()
    if link is None or link.endpoint is None or not link.interaction_id:
        return
    from bridge.connectors import get_connector

    connector = get_connector(link.endpoint)
    if not connector.capabilities.tags or not (added or removed):
        return
    try:
        connector.update_tags(handlers.interaction_ref(link), list(added or []), list(removed or []))
    except BridgeError as exc:
        logger.warning("tags of handover %s not updated on %s: %s", link.pk, link.endpoint.slug, exc)
        link.note("tags", f"could not update the interaction's tags: {exc}")


def _later(func: str, *args, name: str) -> None:
    from django_q.tasks import async_task

    def _send() -> None:
        try:
            async_task(func, *args, task_name=name[:100])
        except Exception:
            logger.warning("could not queue %s; reconciliation will catch up", name)

    transaction.on_commit(_send)


def fetch_later(link_id, message_ids: list[str]) -> None:
    _later("bridge.reconcile.fetch_messages", str(link_id), list(message_ids), name=f"fetch {link_id}")


def push_tags_later(link_id, added: list[str], removed: list[str]) -> None:
    _later("bridge.reconcile.push_tags", str(link_id), added, removed, name=f"tags {link_id}")


def is_due(last_run, now=None) -> bool:
    now = now or timezone.now()
    return last_run is None or (now - last_run).total_seconds() >= settings.BRIDGE_RECONCILE_INTERVAL_SECONDS
