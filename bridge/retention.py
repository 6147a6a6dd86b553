"""Data retention and erasure: what the bridge keeps of customers' messages, and for how long.

Two periods, both off by default (docs/deploy.md, "Data retention"):

- `BRIDGE_RETENTION_DAYS`: after a handover has been closed (or has failed) this many days, the
  content of its messages, its context and metadata, the customer's display name, the payloads of its
  deliveries and the raw events received for it are removed.
- `BRIDGE_RAW_RETENTION_DAYS`: raw payloads (the vendor's body of each inbound event and each message)
  are removed this many days after they were received, whatever the handover's state; the parsed
  message that was recorded from them stays until the first period.

What stays: every row, its ids, times, directions, states, types and counts, so the console, the
timeline and `/metrics` keep working; a timeline line says when content was removed and why.
`forget_customer()` (`manage.py bridge_forget --customer ADDRESS`) removes one customer's content and
address at once, on request (right to erasure).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from bridge.models import ConversationLink, Delivery, HandoverEvent, InboundEvent, Message, State

logger = logging.getLogger(__name__)

REMOVED_KIND = "content_removed"
# What a removed message's content becomes: content types are kept, the words and files are not.
REMOVED_CONTENT = {"removed": True, "text": "[content removed]"}
# Handovers whose content is removed per transaction, so one run never holds locks for long.
BATCH = 200
ENDED_STATES = (State.CLOSED, State.FAILED)


@dataclass
class RetentionResult:
    handovers: int = 0
    messages: int = 0
    raw_payloads: int = 0

    def __str__(self) -> str:
        return (
            f"content removed from {self.handovers} handover(s) and {self.messages} message(s); "
            f"{self.raw_payloads} raw payload(s) removed"
        )


def _remove_handover_content(link_ids: list, why: str, actor: str = "") -> int:
    """Remove the content of these handovers' messages, deliveries and events; note it on each timeline."""
    messages = Message.objects.filter(link_id__in=link_ids).update(content=REMOVED_CONTENT, raw={})
    Delivery.objects.filter(link_id__in=link_ids, state__in=Delivery.TERMINAL_STATES).update(payload={})
    InboundEvent.objects.filter(link_id__in=link_ids).update(payload={})
    ConversationLink.objects.filter(pk__in=link_ids).update(context={}, metadata={}, customer_name="")
    HandoverEvent.objects.bulk_create(
        HandoverEvent(link_id=link_id, kind=REMOVED_KIND, text=why, actor=actor) for link_id in link_ids
    )
    return messages


def apply(now=None) -> RetentionResult:
    """One retention pass over both periods; safe to run at any time and any number of times."""
    now = now or timezone.now()
    result = RetentionResult()
    days = settings.BRIDGE_RETENTION_DAYS
    if days:
        already = HandoverEvent.objects.filter(link=OuterRef("pk"), kind=REMOVED_KIND)
        due = ConversationLink.objects.filter(
            state__in=ENDED_STATES, closed_at__lt=now - timedelta(days=days)
        ).filter(~Exists(already))
        while ids := list(due.values_list("pk", flat=True)[:BATCH]):
            with transaction.atomic():
                result.messages += _remove_handover_content(
                    ids,
                    f"Message content removed: closed more than {days:g} days ago (BRIDGE_RETENTION_DAYS).",
                )
            result.handovers += len(ids)
    raw_days = settings.BRIDGE_RAW_RETENTION_DAYS
    if raw_days:
        cutoff = now - timedelta(days=raw_days)
        result.raw_payloads += (
            InboundEvent.objects.filter(received_at__lt=cutoff).exclude(payload={}).update(payload={})
        )
        result.raw_payloads += Message.objects.filter(received_at__lt=cutoff).exclude(raw={}).update(raw={})
    if result.handovers or result.raw_payloads:
        logger.info("retention: %s", result)
    return result


class OpenHandovers(Exception):
    """The customer still has handovers in progress; close them first."""

    def __init__(self, links: list[ConversationLink]):
        self.links = links
        super().__init__(
            "the customer has handovers still in progress; close them first (manage.py bridge_close ID): "
            + ", ".join(f"{link.pk} ({link.state})" for link in links)
        )


def forget_customer(address: str, *, actor: str = "") -> RetentionResult:
    """Erase one customer's content and address from every ended handover of theirs.

    `address` is the customer's channel address as Infobip gives it (phone number, e-mail, page-scoped
    id), matched exactly, and also as the sender or recipient of raw Infobip events. Raises
    OpenHandovers (and changes nothing) while one of the customer's handovers is still in progress,
    since its messages must still be delivered.
    """
    address = address.strip()
    if not address:
        raise ValueError("the customer address must not be empty")
    links = ConversationLink.objects.filter(customer_address=address)
    in_progress = list(links.exclude(state__in=ENDED_STATES))
    if in_progress:
        raise OpenHandovers(in_progress)
    result = RetentionResult()
    ids = list(links.values_list("pk", flat=True))
    with transaction.atomic():
        if ids:
            result.messages = _remove_handover_content(
                ids, "Customer content and address erased on request (bridge_forget).", actor
            )
            ConversationLink.objects.filter(pk__in=ids).update(customer_address="")
        result.handovers = len(ids)
        # Events that never became a handover (conversations that were not handed over keep no text,
        # but their raw bodies may name the customer).
        result.raw_payloads = (
            InboundEvent.objects.filter(
                Q(payload__from=address) | Q(payload__to=address) | Q(payload__message__from=address)
            )
            .exclude(payload={})
            .update(payload={})
        )
    logger.info("forget: customer erased: %s", result)
    return result
