"""What Infobip tells us about a handed-over conversation (Subscriptions events), and what the
bridge does about it: forward messages, never echo its own, follow status, assignment and tags."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from bridge import media
from bridge.infobip.client import CONTENT_TEXT_MAX
from bridge.models import OPEN_STATES, ConversationLink, InboundEvent, Message, OwnMessage, State, Tag
from bridge.services import begin_close, queue_for_ccaas
from bridge.types import AuthorType, CloseReason, Direction, InfobipMessage

logger = logging.getLogger(__name__)

# --- Infobip Subscriptions events ----------------------------------------------------------------
TAKEOVER_RELEASE = "release"
TAKEOVER_KEEP = "keep"
ECHO_WINDOW = timedelta(minutes=10)


@dataclass
class EventOutcome:
    stored: bool
    note: str = ""


def record_infobip_event(event) -> EventOutcome:
    """Store one Infobip Subscriptions event (deduplicated) and act on it. `event` is a
    bridge.infobip.events.ConversationEvent. Every type is stored and visible in the admin, except
    messages of conversations with no open handover: nothing of their text is kept (fault F7 in docs/reliability.md)."""
    if event.type in ("INBOUND_MESSAGE", "OUTBOUND_MESSAGE") and not (
        event.conversation_id
        and ConversationLink.objects.open().filter(conversation_id=event.conversation_id).exists()
    ):
        return EventOutcome(stored=False, note="no open handover for this conversation: message not kept")
    with transaction.atomic():
        try:
            with transaction.atomic():
                row = InboundEvent.objects.create(
                    source="infobip", event_id=event.event_id, type=event.type[:64], payload=event.raw
                )
        except IntegrityError:
            return EventOutcome(stored=False, note="duplicate")
        link = None
        if event.conversation_id:
            link = (
                ConversationLink.objects.filter(conversation_id=event.conversation_id)
                .order_by("-escalated_at")
                .first()
            )
        row.link = link
        if link is None or link.state not in OPEN_STATES:
            note = "no open handover for this conversation: stored, no action"
        else:
            note = _apply_infobip_event(link, event)
        row.note = (note or "applied")[:255]
        row.save(update_fields=["note", "link"])
    return EventOutcome(stored=True, note=row.note)


def _apply_infobip_event(link: ConversationLink, event) -> str:
    kind = event.type
    if kind == "INBOUND_MESSAGE" and event.message is not None:
        if link.state not in (State.REQUESTED, State.ACTIVE):
            return f"handover is {link.state}; not forwarded"
        if not event.content_type_known:
            from bridge import reconcile

            reconcile.fetch_later(link.pk, [event.message.id])
            return "content type not in the event: the message is fetched from Infobip"
        try:
            with transaction.atomic():
                queue_for_ccaas(link, event.message)
        except IntegrityError:
            return "message already recorded"
        return "customer message recorded"
    if kind == "OUTBOUND_MESSAGE" and event.message is not None:
        return _record_outbound_from_infobip(link, event.message)
    if kind in ("CONVERSATION_STATUS_UPDATED", "CONVERSATION_DELETED"):
        if kind == "CONVERSATION_DELETED" or event.status.upper() == "CLOSED":
            if begin_close(link, CloseReason.CONVERSATION_CLOSED, actor="Infobip", close_infobip=False):
                return "conversation closed on Infobip: closing the interaction"
            return f"handover already {link.state}"
        return f"status {event.status}: no action"
    if kind == "CONVERSATION_ASSIGNMENT_UPDATED":
        return _assignment_changed(link, event)
    if kind in ("CONVERSATION_TAG_ADDED", "CONVERSATION_TAG_REMOVED"):
        if event.added_tag:
            Tag.objects.get_or_create(link=link, name=event.added_tag[:100])
        if event.removed_tag:
            Tag.objects.filter(link=link, name=event.removed_tag[:100]).delete()
        if link.interaction_id and link.endpoint_id:
            from bridge import reconcile

            reconcile.push_tags_later(
                link.pk,
                [event.added_tag] if event.added_tag else [],
                [event.removed_tag] if event.removed_tag else [],
            )
        return (
            f"tags now {', '.join(Tag.objects.filter(link=link).values_list('name', flat=True)) or '(none)'}"
        )
    return f"{kind}: stored, no action"


def _is_echo(link: ConversationLink, message: InfobipMessage) -> bool:
    """An OUTBOUND_MESSAGE the bridge itself sent: by the Infobip message id of any part it created
    (an agent message with text and attachments is several Create Message calls); or, for an event
    that overtakes Create Message's answer, by the content of a part of an agent message received
    in the last few minutes (same text, or the same media URL)."""
    if OwnMessage.objects.filter(link=link, side=OwnMessage.Side.INFOBIP, external_id=message.id).exists():
        return True
    if Message.objects.filter(link=link, source=Message.Source.CCAAS, infobip_message_id=message.id).exists():
        return True
    event_content = message.content if isinstance(message.content, dict) else {}
    text = event_content.get("text")
    url = event_content.get("url") or event_content.get("mediaUrl")
    recent = Message.objects.filter(
        link=link,
        source=Message.Source.CCAAS,
        direction=Message.Direction.OUTBOUND,
        received_at__gte=timezone.now() - ECHO_WINDOW,
    )
    for row in recent.only("content", "content_type"):
        content = row.content if isinstance(row.content, dict) else {}
        sent = content.get("text")
        if (
            text
            and isinstance(sent, str)
            and (sent == text or (len(sent) > CONTENT_TEXT_MAX and text in sent))
        ):
            return True
        if url and any(part.get("url") == url for _, part in media.outbound_parts(row.content_type, content)):
            return True
    return False


def _record_outbound_from_infobip(link: ConversationLink, message: InfobipMessage) -> str:
    if _is_echo(link, message):
        return "the bridge's own message: not echoed"
    if link.state not in (State.REQUESTED, State.ACTIVE):
        return f"handover is {link.state}; not forwarded"
    try:
        with transaction.atomic():
            queue_for_ccaas(link, message)
    except IntegrityError:
        return "message already recorded"
    return f"outbound message by {message.author_type.value} on Infobip forwarded to the contact center"


def _event_time(link: ConversationLink, event):
    """When Infobip says the event happened (its own clock, as customer messages' createdAt), else
    the newest Infobip time the handover has seen: never the clock of the process that received it."""
    from bridge.infobip.events import parse_time

    try:
        return parse_time(event.timestamp)
    except ValueError:
        link.refresh_from_db(fields=["last_infobip_message_at", "escalated_at"])
        return link.last_infobip_message_at or link.escalated_at


def _system_note(link: ConversationLink, text: str, key: str, at) -> None:
    """A note for the agent, carried to the contact center as a SYSTEM message at its place among the
    customer's messages (`at`: Infobip's time of what it reports)."""
    note = InfobipMessage(
        id=f"note:{key}",
        conversation_id=link.conversation_id,
        channel=link.channel,
        from_=link.business_sender,
        to=link.customer_address,
        direction=Direction.OUTBOUND,
        content_type="TEXT",
        content={"text": text},
        created_at=at,
        author_type=AuthorType.SYSTEM,
    )
    try:
        with transaction.atomic():
            queue_for_ccaas(link, note)
    except IntegrityError:
        pass


def _assignment_changed(link: ConversationLink, event) -> str:
    own = settings.INFOBIP_AGENT_ID
    if not event.assignee_id or not own:
        return "assignment changed: no action (no agent of the bridge to compare with)"
    if event.assignee_id == own:
        return "assigned to the bridge's agent"
    who = event.assignee_name or event.assignee_id
    policy = ((link.endpoint.config or {}) if link.endpoint else {}).get("infobip_takeover", TAKEOVER_RELEASE)
    if policy == TAKEOVER_KEEP:
        link.note("takeover", f"{who} took the conversation over inside Infobip; handover kept (policy keep)")
        if link.interaction_id:
            _system_note(
                link,
                f"Note: {who} also joined this conversation inside Infobip.",
                f"takeover:{event.event_id}",
                _event_time(link, event),
            )
        ConversationLink.objects.filter(pk=link.pk).update(
            last_error=f"taken over on Infobip by {who}"[:2000]
        )
        return f"taken over by {who}: kept and flagged"
    if link.interaction_id:
        _system_note(
            link,
            f"{who} took this conversation over inside Infobip; the handover is released.",
            f"takeover:{event.event_id}",
            _event_time(link, event),
        )
    begin_close(link, CloseReason.OPERATOR, actor=f"Infobip ({who})"[:150], close_infobip=False)
    return f"taken over by {who}: handover released"
