"""Orchestration: escalate, record what arrives, deliver, close. Speaks only our types and models.

Everything that must happen is first written as rows (handover, message, delivery) in one
transaction; the delivery engine (bridge.delivery) then carries it out, in order, with retries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from bridge import delivery as engine
from bridge import media
from bridge.connectors import get_connector
from bridge.exceptions import BridgeError, ConversationClosedError, NotFoundError, PermanentError
from bridge.infobip.client import CONTENT_TEXT_MAX, InfobipClient
from bridge.models import (
    OPEN_STATES,
    PRIORITIES,
    CcaasEndpoint,
    ConversationLink,
    Delivery,
    InboundEvent,
    Message,
    State,
    Tag,
)
from bridge.types import (
    AuthorType,
    CcaasEvent,
    CloseReason,
    Customer,
    Direction,
    EventType,
    HandoverContext,
    InfobipMessage,
    InteractionRef,
)

logger = logging.getLogger(__name__)


class EscalationError(BridgeError):
    """The escalation request cannot be accepted as it is (answered 400)."""

    permanent = True


def infobip_client() -> InfobipClient:
    client = InfobipClient()
    client.shared_rate_limit = True
    return client


# --- routing -------------------------------------------------------------------------------------
def rule_matches(rule: dict[str, Any], tags: Iterable[str], metadata: dict[str, Any]) -> bool:
    """A rule matches when every condition it states holds; an empty rule matches nothing.

    Conditions: "tags_any": [..] (one of them), "tags_all": [..] (all of them), "metadata":
    {key: value or [values]} (equal, or one of).
    """
    if not isinstance(rule, dict) or not rule:
        return False
    tag_set = {t.lower() for t in tags}
    if "tags_any" in rule and not tag_set & {str(t).lower() for t in rule["tags_any"]}:
        return False
    if "tags_all" in rule and not {str(t).lower() for t in rule["tags_all"]} <= tag_set:
        return False
    for key, expected in (rule.get("metadata") or {}).items():
        actual = metadata.get(key)
        allowed = expected if isinstance(expected, list) else [expected]
        if actual not in allowed:
            return False
    return any(k in rule for k in ("tags_any", "tags_all", "metadata"))


def choose_endpoint(tags: Iterable[str], metadata: dict[str, Any]) -> CcaasEndpoint | None:
    """The first enabled endpoint (by routing order) with a matching rule, else the default."""
    tags = list(tags)
    for endpoint in CcaasEndpoint.objects.filter(enabled=True).exclude(routing_rules=[]):
        if any(rule_matches(rule, tags, metadata) for rule in endpoint.routing_rules or []):
            return endpoint
    return CcaasEndpoint.objects.filter(enabled=True, is_default=True).first()


def has_routing_rules() -> bool:
    return CcaasEndpoint.objects.filter(enabled=True).exclude(routing_rules=[]).exists()


# --- escalation ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EscalationRequest:
    conversation_id: str
    endpoint: str | None = None
    queue: str = ""
    priority: str = "NORMAL"
    context: dict[str, Any] = field(default_factory=dict)


def escalate(request: EscalationRequest, *, actor: str = "chatbot") -> tuple[ConversationLink, bool]:
    """Start a handover, or return the open one for this conversation. Returns (handover, created)."""
    existing = ConversationLink.objects.open().filter(conversation_id=request.conversation_id).first()
    if existing:
        return existing, False
    if request.priority not in PRIORITIES:
        raise EscalationError(f"priority must be one of {', '.join(PRIORITIES)}")

    endpoint: CcaasEndpoint | None = None
    if request.endpoint:
        endpoint = CcaasEndpoint.objects.filter(slug=request.endpoint).first()
        if endpoint is None:
            raise EscalationError(f"unknown endpoint {request.endpoint!r}")
        if not endpoint.enabled:
            raise EscalationError(f"endpoint {request.endpoint!r} is disabled")
    elif has_routing_rules():
        # Rules look at the conversation's tags and metadata; if Infobip cannot tell us now, the
        # open job routes once it has them.
        try:
            client = infobip_client()
            endpoint = choose_endpoint(
                client.get_tags(request.conversation_id), client.get_metadata(request.conversation_id)
            )
        except BridgeError as exc:
            logger.warning("routing of %s deferred: %s", request.conversation_id, exc)
        else:
            if endpoint is None:
                raise EscalationError(
                    "no routing rule matches this conversation and there is no default endpoint"
                )
    else:
        endpoint = CcaasEndpoint.objects.filter(enabled=True, is_default=True).first()
        if endpoint is None:
            raise EscalationError("no endpoint given and no default endpoint is configured")

    try:
        with transaction.atomic():
            link = ConversationLink.objects.create(
                conversation_id=request.conversation_id,
                endpoint=endpoint,
                queue=request.queue or "",
                priority=request.priority,
                context=request.context or {},
            )
            Delivery.objects.create(
                link=link,
                kind=Delivery.Kind.OPEN,
                lane=Delivery.Lane.TO_CCAAS,
                phase=0,
                sort_at=link.escalated_at,
            )
            link.note("escalated", f"to {endpoint.slug if endpoint else '(routing pending)'}", actor=actor)
            engine.enqueue_lane(link.pk, Delivery.Lane.TO_CCAAS)
    except IntegrityError:
        existing = ConversationLink.objects.open().filter(conversation_id=request.conversation_id).first()
        if existing is None:
            raise
        return existing, False
    return link, True


# --- what Infobip sends --------------------------------------------------------------------------
@dataclass
class Recorded:
    stored: int = 0
    duplicates: int = 0
    ignored: int = 0


def record_inbound(messages: Iterable[InfobipMessage]) -> Recorded:
    """Record customer messages of handed-over conversations and queue their delivery.

    Messages of conversations with no open handover are not kept. Call inside no transaction: each
    message commits on its own, so a duplicate never rolls back another.
    """
    result = Recorded()
    for message in messages:
        link = (
            ConversationLink.objects.filter(
                conversation_id=message.conversation_id, state__in=[State.REQUESTED, State.ACTIVE]
            )
            .only("pk")
            .first()
        )
        if link is None:
            result.ignored += 1
            continue
        try:
            with transaction.atomic():
                _record_for_ccaas(link, message)
        except IntegrityError:
            result.duplicates += 1
        else:
            result.stored += 1
    return result


def _record_for_ccaas(link: ConversationLink, message: InfobipMessage) -> Message:
    row = Message.objects.create(
        link=link,
        source=Message.Source.INFOBIP,
        direction=message.direction.value,
        external_id=message.id,
        infobip_message_id=message.id,
        author_type=message.author_type.value,
        content_type=message.content_type,
        content=message.content,
        created_at=message.created_at,
        raw=message.raw,
    )
    Delivery.objects.create(
        link=link,
        message=row,
        kind=Delivery.Kind.MESSAGE,
        lane=Delivery.Lane.TO_CCAAS,
        phase=1,
        sort_at=message.created_at,
    )
    now = timezone.now()
    ConversationLink.objects.filter(pk=link.pk).update(
        last_activity_at=now, last_infobip_message_at=message.created_at
    )
    engine.enqueue_lane(link.pk, Delivery.Lane.TO_CCAAS)
    return row


# --- what the contact center sends ---------------------------------------------------------------
@dataclass
class Ingested:
    stored: int = 0
    duplicates: int = 0
    messages: int = 0
    unknown: int = 0


def ingest_events(
    endpoint: CcaasEndpoint, events: Iterable[CcaasEvent], *, cursor: str | None = None
) -> Ingested:
    """Store a batch of contact-center events and queue what they ask for, in one transaction.

    Duplicates (same event id, or same agent message id) are ignored. With `cursor`, the endpoint's
    poll cursor moves in the same transaction, so a crash can never skip or repeat a page.
    """
    result = Ingested()
    source = f"ccaas:{endpoint.slug}"
    with transaction.atomic():
        for event in events:
            try:
                with transaction.atomic():
                    row = InboundEvent.objects.create(
                        source=source,
                        event_id=event.id,
                        type=event.original_type or event.type.value,
                        endpoint=endpoint,
                        payload=event.raw,
                    )
            except IntegrityError:
                result.duplicates += 1
                continue
            result.stored += 1
            note = _apply_event(endpoint, event, row, result)
            if note:
                row.note = note[:255]
                row.save(update_fields=["note", "link"])
        if cursor is not None:
            CcaasEndpoint.objects.filter(pk=endpoint.pk).update(poll_cursor=cursor)
    return result


def _apply_event(endpoint: CcaasEndpoint, event: CcaasEvent, row: InboundEvent, result: Ingested) -> str:
    if event.type == EventType.UNKNOWN:
        result.unknown += 1
        return f"unknown event type {event.original_type!r}: stored, no action"
    link = (
        ConversationLink.objects.select_for_update()
        .filter(endpoint=endpoint, interaction_id=event.interaction_id)
        .order_by("-escalated_at")
        .first()
    )
    if link is None:
        return f"no handover for interaction {event.interaction_id!r}"
    row.link = link
    if event.type == EventType.AGENT_MESSAGE and event.message is not None:
        if link.state != State.ACTIVE:
            return f"handover is {link.state}; agent message not forwarded"
        try:
            with transaction.atomic():
                message = Message.objects.create(
                    link=link,
                    source=Message.Source.CCAAS,
                    direction=Message.Direction.OUTBOUND,
                    external_id=event.message.id,
                    author_type=AuthorType.AGENT.value,
                    author_name=event.message.agent_name or "",
                    content_type=event.message.content_type,
                    content=event.message.content,
                    created_at=timezone.now(),
                    raw=event.raw,
                )
                Delivery.objects.create(
                    link=link,
                    message=message,
                    kind=Delivery.Kind.MESSAGE,
                    lane=Delivery.Lane.TO_INFOBIP,
                    phase=1,
                )
        except IntegrityError:
            return "agent message already received"
        result.messages += 1
        ConversationLink.objects.filter(pk=link.pk).update(last_activity_at=timezone.now())
        engine.enqueue_lane(link.pk, Delivery.Lane.TO_INFOBIP)
        return ""
    if event.type == EventType.ACCEPTED:
        if link.accepted_at is None:
            ConversationLink.objects.filter(pk=link.pk).update(accepted_at=timezone.now())
            link.note("accepted", "an agent accepted the interaction", actor=endpoint.slug)
        return ""
    if event.type == EventType.CLOSED:
        if begin_close(link, CloseReason.AGENT, actor=f"contact center ({endpoint.slug})", close_ccaas=False):
            return ""
        return f"handover already {link.state}"
    if event.type == EventType.TYPING:
        return _agent_typing(link, event)
    return f"{event.type.value}: no action"


# Infobip's Send conversation event (typing) accepts only these channels.
# Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/send-conversation-event
TYPING_CHANNELS = ("LIVE_CHAT", "APPLE_BUSINESS_CHAT", "WHATSAPP")


def _agent_typing(link: ConversationLink, event: CcaasEvent) -> str:
    """Show the agent typing to the customer: best effort, outside the message lanes (no Delivery,
    nothing waits for it, a failure is only logged)."""
    what = "started" if event.typing else "stopped"
    if link.state != State.ACTIVE:
        return f"handover is {link.state}; typing not forwarded"
    if link.channel not in TYPING_CHANNELS:
        return f"typing not supported on {link.channel or 'this channel'}"

    def _queue() -> None:
        from django_q.tasks import async_task

        try:
            async_task(
                "bridge.tasks.send_typing",
                str(link.pk),
                bool(event.typing),
                task_name=f"typing {link.pk}"[:100],
            )
        except Exception:  # the broker being down must not fail the webhook; typing is not kept
            logger.warning("could not queue the typing indicator of handover %s", link.pk)

    transaction.on_commit(_queue)
    return f"agent typing {what}: queued for Infobip (best effort)"


def send_typing(link_id, started: bool) -> str:
    """Send Infobip's TYPING_STARTED/TYPING_STOPPED for an active handover. Never raises."""
    link = ConversationLink.objects.filter(pk=link_id).first()
    if link is None or link.state != State.ACTIVE or link.channel not in TYPING_CHANNELS:
        return "skipped"
    try:
        infobip_client().send_typing(
            link.conversation_id,
            channel=link.channel,
            from_=link.business_sender,
            to=link.customer_address,
            started=started,
        )
    except Exception as exc:  # typing is a hint: never retried, never shown as a failure
        logger.info("typing indicator for handover %s not sent: %s", link.pk, exc)
        return f"not sent: {exc}"
    return "sent"


# --- closing -------------------------------------------------------------------------------------
def begin_close(
    link: ConversationLink,
    reason: CloseReason,
    *,
    actor: str,
    close_ccaas: bool = True,
    close_infobip: bool = True,
) -> bool:
    """Queue the close of both sides, behind everything still to deliver. False if already closing."""
    with transaction.atomic():
        link = ConversationLink.objects.select_for_update().get(pk=link.pk)
        if link.state not in (State.REQUESTED, State.ACTIVE):
            return False
        now = timezone.now()
        if link.state == State.REQUESTED:
            never_tried = Delivery.objects.filter(
                link=link, kind=Delivery.Kind.OPEN, attempts=0, state=Delivery.Status.PENDING
            )
            if never_tried.exists():
                # Nothing was opened on the contact center yet: there is nothing to carry or close there.
                Delivery.objects.filter(link=link, lane=Delivery.Lane.TO_CCAAS).exclude(
                    state__in=Delivery.TERMINAL_STATES
                ).exclude(state=Delivery.Status.IN_FLIGHT).update(
                    state=Delivery.Status.SKIPPED,
                    done_at=now,
                    last_error="skipped: closed before the interaction was opened",
                )
                close_ccaas = False
        link.state = State.CLOSING
        link.closing_at = now
        link.close_reason = reason.value
        link.closed_by = actor[:150]
        link.save(update_fields=["state", "closing_at", "close_reason", "closed_by"])
        if close_ccaas:
            Delivery.objects.create(
                link=link,
                kind=Delivery.Kind.CLOSE_CCAAS,
                lane=Delivery.Lane.TO_CCAAS,
                phase=2,
                payload={"reason": reason.value},
            )
            engine.enqueue_lane(link.pk, Delivery.Lane.TO_CCAAS)
        if close_infobip:
            Delivery.objects.create(
                link=link,
                kind=Delivery.Kind.CLOSE_INFOBIP,
                lane=Delivery.Lane.TO_INFOBIP,
                phase=2,
                payload={"reason": reason.value},
            )
            engine.enqueue_lane(link.pk, Delivery.Lane.TO_INFOBIP)
        link.note("closing", f"reason {reason.value}", actor=actor)
        after_delivery(link.pk)
    return True


def close_handover(link: ConversationLink, *, actor: str, reason: CloseReason = CloseReason.OPERATOR) -> bool:
    """Close a handover on both sides (operators, `bridge_close`, idle timeout)."""
    return begin_close(link, reason, actor=actor)


def find_handover(identifier: str) -> ConversationLink:
    """By handover id, else the newest handover of that Infobip conversation id."""
    import uuid

    try:
        link = ConversationLink.objects.filter(pk=uuid.UUID(identifier)).first()
    except ValueError:
        link = None
    link = (
        link or ConversationLink.objects.filter(conversation_id=identifier).order_by("-escalated_at").first()
    )
    if link is None:
        raise NotFoundError(f"no handover with id or conversation id {identifier!r}")
    return link


def fail_handover(link: ConversationLink, reason: str) -> None:
    """The interaction could not be opened and will not be retried: FAILED, nothing left pending."""
    now = timezone.now()
    ConversationLink.objects.filter(pk=link.pk, state__in=OPEN_STATES).update(
        state=State.FAILED, last_error=reason[:2000], closed_at=now
    )
    Delivery.objects.filter(link=link).exclude(state__in=Delivery.TERMINAL_STATES).exclude(
        state=Delivery.Status.IN_FLIGHT
    ).update(state=Delivery.Status.DEAD, done_at=now, last_error=f"handover failed: {reason}"[:2000])
    link.note("failed", reason)
    _queue_route_back(link)


# Endpoint config: what to do with the conversation when its interaction cannot be opened.
ON_OPEN_FAILURE_ROUTE = "route_to_infobip"
ROUTE_BACK_TAG = "bridge_fallback"  # Infobip tag names allow letters, digits, '.' and '_' only
ROUTE_BACK = "route_back"


def _queue_route_back(link: ConversationLink) -> None:
    """When the endpoint says so (config `on_open_failure: route_to_infobip`), hand the conversation
    back to Infobip's own agents, tagged, so the customer is never left talking to nobody.

    It rides the handover's Infobip lane as a delivery (kind CLOSE_INFOBIP, payload action
    route_back): durable, retried on the engine's schedule, dead-lettered visibly, re-drivable
    from the admin; no model change."""
    endpoint = link.endpoint
    config = (endpoint.config or {}) if endpoint else {}
    if config.get("on_open_failure") != ON_OPEN_FAILURE_ROUTE:
        return
    pending = Delivery.objects.filter(link=link, kind=Delivery.Kind.CLOSE_INFOBIP, payload__action=ROUTE_BACK)
    if pending.exclude(state__in=Delivery.TERMINAL_STATES).exists():
        return
    tag = str(config.get("route_back_tag") or ROUTE_BACK_TAG)[:100]
    Delivery.objects.create(
        link=link,
        kind=Delivery.Kind.CLOSE_INFOBIP,
        lane=Delivery.Lane.TO_INFOBIP,
        phase=2,
        payload={"action": ROUTE_BACK, "tag": tag},
    )
    link.note("route_back", f"routing the conversation back to Infobip's agents with tag {tag}")
    engine.enqueue_lane(link.pk, Delivery.Lane.TO_INFOBIP)


def handle_route_back(delivery: Delivery) -> str | None:
    """Tag the conversation, then Route conversation (Infobip's routing to its own agents). The tag
    step is remembered, so a retry after a failed route does not tag twice."""
    link = ConversationLink.objects.get(pk=delivery.link_id)
    if link.state != State.FAILED:
        return f"skipped: handover is {link.state}, not failed"
    payload = dict(delivery.payload or {})
    tag = str(payload.get("tag") or ROUTE_BACK_TAG)
    client = infobip_client()
    try:
        closed = str(client.get_conversation(link.conversation_id).get("status", "")).upper() == "CLOSED"
        if not closed:
            if not payload.get("tagged"):
                client.add_tag(link.conversation_id, tag)
                payload["tagged"] = True
                Delivery.objects.filter(pk=delivery.pk).update(payload=payload)
            client.route_conversation(link.conversation_id)
    except ConversationClosedError:
        closed = True
    except NotFoundError:
        link.note("route_back", "not routed: Infobip does not know the conversation")
        return "skipped: Infobip does not know the conversation"
    if closed:
        link.note("route_back", "not routed: the conversation is already closed on Infobip")
        return "skipped: the conversation is closed on Infobip"
    link.note("routed_back", f"conversation routed to Infobip's agents, tagged {tag}")
    return None


def after_delivery(link_id) -> None:
    """A delivery ended: a closing handover whose work is all done becomes CLOSED."""
    link = ConversationLink.objects.filter(pk=link_id, state=State.CLOSING).first()
    if link is None or not engine.lane_is_idle(link):
        return
    closes = Delivery.objects.filter(link=link, phase=2)
    if closes.filter(state=Delivery.Status.DEAD).exists():
        return  # stays CLOSING (and turns stuck) until an operator retries the failed close
    if ConversationLink.objects.filter(pk=link.pk, state=State.CLOSING).update(
        state=State.CLOSED, closed_at=timezone.now()
    ):
        link.note("closed", f"closed on both sides ({link.close_reason})", actor=link.closed_by)


def retry_failed(link: ConversationLink, *, actor: str = "") -> int:
    """Re-drive a handover's dead and retrying deliveries now, in their original order."""
    with transaction.atomic():
        if link.state == State.FAILED:
            if ConversationLink.objects.open().filter(conversation_id=link.conversation_id).exists():
                raise EscalationError("another handover of this conversation is open; retry that one instead")
            ConversationLink.objects.filter(pk=link.pk).update(
                state=State.REQUESTED, closed_at=None, last_error=""
            )
        count = engine.retry_dead(Delivery.objects.filter(link=link))
        if count:
            link.note("retry", f"{count} deliveries queued again", actor=actor)
    return count


# --- the delivery handlers -----------------------------------------------------------------------
def interaction_ref(link: ConversationLink) -> InteractionRef:
    return InteractionRef(
        handover_id=str(link.pk),
        conversation_id=link.conversation_id,
        interaction_id=link.interaction_id,
        channel=link.channel,
        customer=Customer(address=link.customer_address, display_name=link.customer_name or None),
        data=link.interaction_data or {},
    )


def to_infobip_message(row: Message, link: ConversationLink) -> InfobipMessage:
    inbound = row.direction == Message.Direction.INBOUND
    return InfobipMessage(
        id=row.infobip_message_id or row.external_id,
        conversation_id=link.conversation_id,
        channel=link.channel,
        from_=link.customer_address if inbound else link.business_sender,
        to=link.business_sender if inbound else link.customer_address,
        direction=Direction(row.direction),
        content_type=row.content_type,
        content=row.content,
        created_at=row.created_at,
        author_type=AuthorType(row.author_type)
        if row.author_type in AuthorType.__members__
        else AuthorType.CUSTOMER,
        raw=row.raw,
    )


def _customer_side(history: list[InfobipMessage], link: ConversationLink) -> tuple[str, str, str]:
    """(channel, customer address, business sender) from the newest message that tells."""
    for message in reversed(history):
        if message.direction == Direction.INBOUND:
            return message.channel, message.from_, message.to
    queued = (
        Message.objects.filter(link=link, direction=Message.Direction.INBOUND).order_by("-created_at").first()
    )
    if queued and queued.raw:
        return queued.raw.get("channel", ""), queued.raw.get("from", ""), queued.raw.get("to", "")
    for message in reversed(history):
        return message.channel, message.to, message.from_
    raise PermanentError("the conversation has no messages, so the customer's address is unknown")


def handle_open(delivery: Delivery) -> str | None:
    link = ConversationLink.objects.get(pk=delivery.link_id)
    if link.state != State.REQUESTED:
        return f"skipped: handover is {link.state}"
    client = infobip_client()
    try:
        conversation = client.get_conversation(link.conversation_id)
    except NotFoundError as exc:
        raise PermanentError(f"conversation {link.conversation_id} does not exist on Infobip") from exc
    if str(conversation.get("status", "")).upper() == "CLOSED":
        raise PermanentError(
            f"conversation {link.conversation_id} is already closed on Infobip; nothing was sent"
        )
    history = client.get_messages(link.conversation_id)
    tags = client.get_tags(link.conversation_id)
    metadata = client.get_metadata(link.conversation_id)
    endpoint = link.endpoint or choose_endpoint(tags, metadata)
    if endpoint is None:
        raise PermanentError("no routing rule matches this conversation and there is no default endpoint")
    channel, customer, sender = _customer_side(history, link)
    display_name = (link.context or {}).get("displayName") or (link.context or {}).get("customerName")
    with transaction.atomic():
        link.endpoint = endpoint
        link.channel, link.customer_address, link.business_sender = channel, customer, sender
        link.customer_name = str(display_name or "")[:255]
        link.metadata = metadata
        link.save(
            update_fields=[
                "endpoint",
                "channel",
                "customer_address",
                "business_sender",
                "customer_name",
                "metadata",
            ]
        )
        for name in tags:
            Tag.objects.get_or_create(link=link, name=name[:100])
    connector = get_connector(endpoint)
    ctx = HandoverContext(
        handover_id=str(link.pk),
        conversation_id=link.conversation_id,
        channel=channel,
        customer=Customer(address=customer, display_name=link.customer_name or None),
        queue=link.queue,
        priority=link.priority,
        tags=tags,
        metadata=metadata,
        context=link.context or {},
        history=[media.for_connector(m, attachments=connector.capabilities.attachments) for m in history],
    )
    result = connector.open_interaction(ctx)
    if settings.INFOBIP_AGENT_ID:
        client.change_assignment(link.conversation_id, settings.INFOBIP_AGENT_ID)
    now = timezone.now()
    with transaction.atomic():
        ConversationLink.objects.filter(pk=link.pk).update(
            interaction_id=result.interaction_id,
            interaction_data=result.data,
            state=State.ACTIVE,
            opened_at=now,
            last_activity_at=now,
            last_infobip_message_at=history[-1].created_at if history else None,
            last_error="",
        )
        skipped = _record_history(link, history)
        link.note(
            "opened",
            f"interaction {result.interaction_id} on {endpoint.slug} with {len(history)} messages of history"
            + (f"; {skipped} queued messages were part of it" if skipped else ""),
        )
    return None


def _record_history(link: ConversationLink, history: list[InfobipMessage]) -> int:
    """Keep the history as the transcript; a queued message that the history already carried is
    marked delivered, so each customer message reaches the contact center exactly once."""
    skipped = 0
    for message in history:
        row, created = Message.objects.get_or_create(
            link=link,
            source=Message.Source.INFOBIP,
            external_id=message.id,
            defaults={
                "direction": message.direction.value,
                "infobip_message_id": message.id,
                "author_type": message.author_type.value,
                "content_type": message.content_type,
                "content": message.content,
                "created_at": message.created_at,
                "in_history": True,
                "raw": message.raw,
            },
        )
        if not created:
            Message.objects.filter(pk=row.pk).update(in_history=True)
            skipped += Delivery.objects.filter(message=row, state=Delivery.Status.PENDING, attempts=0).update(
                state=Delivery.Status.SKIPPED,
                done_at=timezone.now(),
                last_error="skipped: carried in the opening history",
            )
    return skipped


def handle_message(delivery: Delivery) -> str | None:
    link = ConversationLink.objects.select_related("endpoint").get(pk=delivery.link_id)
    row = delivery.message
    if delivery.lane == Delivery.Lane.TO_CCAAS:
        if not link.interaction_id:
            return "skipped: the interaction was never opened"
        connector = get_connector(link.endpoint)
        connector.send_customer_message(
            interaction_ref(link),
            media.for_connector(
                to_infobip_message(row, link), attachments=connector.capabilities.attachments
            ),
        )
        return None
    return _send_to_customer(delivery, link, row)


def _send_to_customer(delivery: Delivery, link: ConversationLink, row: Message) -> str | None:
    """Create Message on Infobip, one per part: the text (in parts when longer than Infobip's limit),
    then each attachment as Infobip's IMAGE/DOCUMENT/VIDEO/AUDIO. The parts already sent are
    remembered, so a retry never repeats one."""
    parts = media.outbound_parts(row.content_type, row.content)
    sent = int((delivery.payload or {}).get("parts_sent", 0))
    client = infobip_client()
    for index in range(sent, len(parts)):
        content_type, content = parts[index]
        answer = client.create_message(
            link.conversation_id,
            channel=link.channel,
            from_=link.business_sender,
            to=link.customer_address,
            content_type=content_type,
            content=content,
        )
        if index == 0 and isinstance(answer, dict) and answer.get("id"):
            Message.objects.filter(pk=row.pk).update(infobip_message_id=str(answer["id"]))
        Delivery.objects.filter(pk=delivery.pk).update(
            payload={**(delivery.payload or {}), "parts_sent": index + 1, "parts": len(parts)}
        )
    return None


def handle_close_ccaas(delivery: Delivery) -> str | None:
    link = ConversationLink.objects.select_related("endpoint").get(pk=delivery.link_id)
    if not link.interaction_id or link.endpoint is None:
        return "skipped: no interaction was opened"
    reason = CloseReason((delivery.payload or {}).get("reason", CloseReason.OPERATOR.value))
    get_connector(link.endpoint).close_interaction(interaction_ref(link), reason)
    return None


def handle_close_infobip(delivery: Delivery) -> str | None:
    if (delivery.payload or {}).get("action") == ROUTE_BACK:
        return handle_route_back(delivery)
    link = ConversationLink.objects.get(pk=delivery.link_id)
    try:
        changed = infobip_client().close_conversation(link.conversation_id)
    except NotFoundError:
        return "skipped: Infobip no longer knows the conversation"
    return None if changed else "already closed on Infobip"


HANDLERS = {
    Delivery.Kind.OPEN: handle_open,
    Delivery.Kind.MESSAGE: handle_message,
    Delivery.Kind.CLOSE_CCAAS: handle_close_ccaas,
    Delivery.Kind.CLOSE_INFOBIP: handle_close_infobip,
}


# --- periodic work -------------------------------------------------------------------------------
def flag_stuck(now=None) -> int:
    """Mark newly stuck handovers (logged once, on the timeline) and clear recovered ones."""
    now = now or timezone.now()
    stuck = ConversationLink.objects.stuck(now)
    newly = list(stuck.filter(stuck_flagged_at__isnull=True)[:500])
    for link in newly:
        logger.warning(
            "handover %s (%s) is stuck: %s", link.pk, link.conversation_id, link.last_error or link.state
        )
        link.note("stuck", link.last_error or f"still {link.state}")
    ConversationLink.objects.filter(pk__in=[link.pk for link in newly]).update(stuck_flagged_at=now)
    ConversationLink.objects.filter(stuck_flagged_at__isnull=False).exclude(pk__in=stuck.values("pk")).update(
        stuck_flagged_at=None
    )
    return len(newly)


def close_idle(now=None) -> int:
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.BRIDGE_IDLE_CLOSE_SECONDS)
    count = 0
    for link in ConversationLink.objects.filter(state=State.ACTIVE, last_activity_at__lt=cutoff)[:500]:
        if begin_close(link, CloseReason.IDLE_TIMEOUT, actor="idle timeout"):
            count += 1
    return count


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
    messages of conversations with no open handover: nothing of their text is kept (F7)."""
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
                _record_for_ccaas(link, event.message)
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

            reconcile.push_tags_later(link.pk)
        return (
            f"tags now {', '.join(Tag.objects.filter(link=link).values_list('name', flat=True)) or '(none)'}"
        )
    return f"{kind}: stored, no action"


def _is_echo(link: ConversationLink, message: InfobipMessage) -> bool:
    """An OUTBOUND_MESSAGE the bridge itself sent (by Infobip message id; or, before Create Message
    answered, by same text to the same customer within a few minutes)."""
    if Message.objects.filter(link=link, infobip_message_id=message.id).exists():
        return True
    text = message.content.get("text")
    recent = Message.objects.filter(
        link=link,
        source=Message.Source.CCAAS,
        direction=Message.Direction.OUTBOUND,
        created_at__gte=timezone.now() - ECHO_WINDOW,
    )
    for row in recent.only("content", "infobip_message_id"):
        sent = row.content.get("text") if isinstance(row.content, dict) else None
        if (
            text
            and isinstance(sent, str)
            and (sent == text or (len(sent) > CONTENT_TEXT_MAX and text in sent))
        ):
            return True
    return False


def _record_outbound_from_infobip(link: ConversationLink, message: InfobipMessage) -> str:
    if _is_echo(link, message):
        return "the bridge's own message: not echoed"
    if link.state not in (State.REQUESTED, State.ACTIVE):
        return f"handover is {link.state}; not forwarded"
    try:
        with transaction.atomic():
            _record_for_ccaas(link, message)
    except IntegrityError:
        return "message already recorded"
    return f"outbound message by {message.author_type.value} on Infobip forwarded to the contact center"


def _system_note(link: ConversationLink, text: str, key: str) -> None:
    """A note for the agent, carried to the contact center as a SYSTEM message, in order."""
    now = timezone.now()
    note = InfobipMessage(
        id=f"note:{key}",
        conversation_id=link.conversation_id,
        channel=link.channel,
        from_=link.business_sender,
        to=link.customer_address,
        direction=Direction.OUTBOUND,
        content_type="TEXT",
        content={"text": text},
        created_at=now,
        author_type=AuthorType.SYSTEM,
    )
    try:
        with transaction.atomic():
            _record_for_ccaas(link, note)
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
        )
    begin_close(link, CloseReason.OPERATOR, actor=f"Infobip ({who})"[:150], close_infobip=False)
    return f"taken over by {who}: handover released"
