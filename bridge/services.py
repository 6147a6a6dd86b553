"""Orchestration: escalate, record what arrives, deliver, close. Speaks only our types and models.

Everything that must happen is first written as rows (handover, message, delivery) in one
transaction; the delivery engine (bridge.delivery) then carries it out, in order, with retries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from bridge import delivery as engine
from bridge.causes import Cause
from bridge.exceptions import BridgeError, NotFoundError
from bridge.infobip.client import InfobipClient
from bridge.models import (
    OPEN_STATES,
    PRIORITIES,
    CcaasEndpoint,
    ConversationLink,
    Delivery,
    HandoverEvent,
    InboundEvent,
    Message,
    OwnMessage,
    State,
)
from bridge.types import (
    AgentMessage,
    AuthorType,
    CcaasEvent,
    CloseReason,
    EventType,
    InfobipMessage,
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
def rule_matches(
    rule: dict[str, Any],
    tags: Iterable[str],
    metadata: dict[str, Any],
    *,
    channel: str = "",
    destination: str = "",
) -> bool:
    """A rule matches when every condition it states holds; an empty rule matches nothing.

    Conditions: "tags_any": [..] (one of them), "tags_all": [..] (all of them), "metadata":
    {key: value or [values]} (equal, or one of), "channels": [..] (Infobip channel, e.g. WHATSAPP)
    and "destinations": [..] (the business number or page the customer wrote to). Channel and
    destination are known when the interaction opens (external-bot conversations); an escalation
    routed before that sees them empty.
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
    if "channels" in rule and channel.upper() not in {str(c).upper() for c in rule["channels"]}:
        return False
    if "destinations" in rule and destination not in {str(d) for d in rule["destinations"]}:
        return False
    return any(k in rule for k in ("tags_any", "tags_all", "metadata", "channels", "destinations"))


def choose_endpoint(
    tags: Iterable[str], metadata: dict[str, Any], *, channel: str = "", destination: str = ""
) -> CcaasEndpoint | None:
    """The first enabled endpoint (by routing order) with a matching rule, else the default."""
    tags = list(tags)
    for endpoint in CcaasEndpoint.objects.filter(enabled=True).exclude(routing_rules=[]):
        if any(
            rule_matches(rule, tags, metadata, channel=channel, destination=destination)
            for rule in endpoint.routing_rules or []
        ):
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
    normalised: int = 0  # stored with a value changed so both databases can keep it (bridge.inputs)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (message id, why)


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
            stored = record_once(link, message)
        except DataError as exc:
            # Last line of defence: bridge.inputs should have caught it; refuse this message only.
            logger.warning("customer message %s could not be stored: %s", message.id, exc)
            result.refused.append((message.id, "a value of this message cannot be stored"))
            continue
        if stored:
            result.stored += 1
            result.normalised += bool(message.normalised)
        else:
            result.duplicates += 1
    return result


def record_once(link: ConversationLink, message: InfobipMessage, *, recovered: bool = False) -> bool:
    """Record one customer message for the handover and queue it; False if it was already recorded.
    `recovered`: found by reconciliation, its webhook never arrived (see Message.recovered)."""
    try:
        with transaction.atomic():
            queue_for_ccaas(link, message, recovered=recovered)
    except IntegrityError as exc:
        # A duplicate only if the message is really there: SQLite reports a value its JSON check
        # refuses as an IntegrityError too, and that must not pass as "already recorded".
        if Message.objects.filter(link=link, source=Message.Source.INFOBIP, external_id=message.id).exists():
            return False
        raise DataError(f"message {message.id} could not be stored") from exc
    return True


def queue_for_ccaas(link: ConversationLink, message: InfobipMessage, *, recovered: bool = False) -> Message:
    """Record an Infobip-side message and queue it for the contact center at its place in the lane:
    Infobip `createdAt`, then the row's id (the database's order for equal times)."""
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
        recovered=recovered,
        raw=message.raw,
    )
    if message.normalised:
        _note_normalised(link, f"message {message.id}", message.normalised)
    queued = Delivery.objects.create(
        link=link,
        message=row,
        kind=Delivery.Kind.MESSAGE,
        lane=Delivery.Lane.TO_CCAAS,
        phase=1,
        sort_at=message.created_at,
    )
    now = timezone.now()
    # The newest Infobip message seen only moves forward: a late (recovered) one must not pull it back.
    newest = Greatest(
        Coalesce("last_infobip_message_at", Value(message.created_at)), Value(message.created_at)
    )
    ConversationLink.objects.filter(pk=link.pk).update(last_activity_at=now, last_infobip_message_at=newest)
    engine.enqueue_lane(link.pk, Delivery.Lane.TO_CCAAS, delivery_id=queued.pk)
    return row


def _note_normalised(link: ConversationLink, what: str, changes) -> None:
    """Tell the operator (timeline and log) what was changed so a value could be stored."""
    text = f"{what} stored with values normalised: {'; '.join(changes)}"
    logger.warning("handover %s: %s", link.pk, text)
    HandoverEvent.objects.create(link_id=link.pk, kind="normalised", text=text[:2000], actor="bridge")


# --- what the contact center sends ---------------------------------------------------------------
@dataclass
class Ingested:
    stored: int = 0
    duplicates: int = 0
    messages: int = 0
    unknown: int = 0
    normalised: int = 0  # stored with a value changed so both databases can keep it (bridge.inputs)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (event id, why)


def ingest_events(
    endpoint: CcaasEndpoint, events: Iterable[CcaasEvent], *, cursor: str | None = None
) -> Ingested:
    """Store a batch of contact-center events and queue what they ask for, in one transaction.

    Duplicates (same event id, or same agent message id) are ignored. An event that cannot be stored
    (an id or type that does not fit, a connector's parse failure) is refused alone: recorded as a
    `refused` inbound event with the reason, listed in the result; the rest of the batch is stored.
    With `cursor`, the endpoint's poll cursor moves in the same transaction, so a crash can never
    skip or repeat a page.
    """
    from bridge import inputs

    result = Ingested()
    source = f"ccaas:{endpoint.slug}"
    with transaction.atomic():
        for event in events:
            try:
                event, changes = inputs.normalise_event(event)
                with transaction.atomic():
                    try:
                        with transaction.atomic():
                            row = InboundEvent.objects.create(
                                source=source,
                                event_id=event.id,
                                type=event.original_type or event.type.value,
                                endpoint=endpoint,
                                payload=event.raw,
                                note=f"normalised: {changes.text()}"[:255] if changes else "",
                            )
                    except IntegrityError:
                        if not InboundEvent.objects.filter(source=source, event_id=event.id).exists():
                            raise DataError("the event could not be stored") from None
                        result.duplicates += 1
                        continue
                    result.stored += 1
                    note = _apply_event(endpoint, event, row, result)
                    if changes:
                        result.normalised += 1
                        logger.warning("event %s from %s normalised: %s", event.id, source, changes.text())
                        if row.link_id:
                            _note_normalised(row.link, f"event {event.id}", changes.items)
                    if note or row.link_id:  # its handover, for the console and for retention
                        if note:
                            row.note = (f"{note} (normalised: {changes.text()})" if changes else note)[:255]
                        row.save(update_fields=["note", "link"])
            except (inputs.InputError, DataError) as exc:
                _record_refused(endpoint, source, event, str(exc), result)
        if cursor is not None:
            CcaasEndpoint.objects.filter(pk=endpoint.pk).update(poll_cursor=cursor)
    return result


def _record_refused(
    endpoint: CcaasEndpoint, source: str, event: CcaasEvent, why: str, result: Ingested
) -> None:
    """Keep a refused event visible to operators (an inbound event of type `refused`), once."""
    import hashlib
    import json

    from bridge import inputs

    shown_id = event.id if event.id and not inputs.unstorable_text(event.id) and len(event.id) <= 80 else ""
    result.refused.append((shown_id, why))
    logger.warning("event %r from %s refused: %s", shown_id or "(no usable id)", source, why)
    payload = inputs.clean_json(event.raw, inputs.Changes())
    canonical = json.dumps(payload, sort_keys=True, default=str).encode("utf-8", "surrogatepass")
    try:
        with transaction.atomic():
            InboundEvent.objects.get_or_create(
                source=source,
                event_id=f"refused:{hashlib.sha256(canonical).hexdigest()[:40]}",
                defaults={
                    "type": "refused",
                    "endpoint": endpoint,
                    "payload": payload if isinstance(payload, dict) else {"value": payload},
                    "note": f"refused: {why}"[:255],
                },
            )
    except DatabaseError:
        logger.exception("refused event from %s could not be recorded", source)


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
        if OwnMessage.objects.filter(
            link=link, side=OwnMessage.Side.CCAAS, external_id=event.message.id
        ).exists():
            return "the bridge's own message: not echoed"
        sort_at, sort_seq = agent_lane_position(link, event.message)
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
                    created_at=event.message.sent_at or timezone.now(),
                    raw=event.raw,
                )
                queued = Delivery.objects.create(
                    link=link,
                    message=message,
                    kind=Delivery.Kind.MESSAGE,
                    lane=Delivery.Lane.TO_INFOBIP,
                    phase=1,
                    sort_at=sort_at,
                    sort_seq=sort_seq,
                )
        except IntegrityError:
            return "agent message already received"
        result.messages += 1
        ConversationLink.objects.filter(pk=link.pk).update(last_activity_at=timezone.now())
        engine.enqueue_lane(link.pk, Delivery.Lane.TO_INFOBIP, delivery_id=queued.pk)
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


def agent_lane_position(link: ConversationLink, message: AgentMessage) -> tuple[datetime, int]:
    """Where an agent message goes in the handover's lane to Infobip: (sort_at, sort_seq).

    The contact center's own order when it gives one (its time of the message, then its monotonic
    message id), so replies waiting together reach the customer in the order the agent sent them,
    whichever webhook arrived first. Without a time, the message goes after every agent message
    recorded so far (the newest position in the lane, then the row's id): the database's order,
    read under the handover's row lock, never the clock of the process that received it.
    """
    if message.sent_at is not None:
        return message.sent_at, message.sequence or 0
    newest = (
        Delivery.objects.filter(link=link, lane=Delivery.Lane.TO_INFOBIP, kind=Delivery.Kind.MESSAGE)
        .order_by("-sort_at", "-sort_seq")
        .values_list("sort_at", "sort_seq")
        .first()
    )
    if newest is None:
        return link.opened_at or link.escalated_at, message.sequence or 0
    return newest[0], max(newest[1], message.sequence or 0)


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
    """Queue the close of both sides, behind everything still to deliver. False if already closing
    or closed. A handover whose interaction was never opened (waiting, or failed) has nothing to
    carry or close on the contact center: its work there is skipped, never attempted again."""
    with transaction.atomic():
        link = ConversationLink.objects.select_for_update().get(pk=link.pk)
        if link.state not in (State.REQUESTED, State.ACTIVE, State.FAILED):
            return False
        now = timezone.now()
        gone = Delivery.objects.filter(link=link, cause=Cause.CONVERSATION_GONE).exists()
        to_ccaas = Delivery.objects.filter(link=link, lane=Delivery.Lane.TO_CCAAS)
        opening = to_ccaas.filter(kind=Delivery.Kind.OPEN, state=Delivery.Status.IN_FLIGHT).exists()
        if link.state in (State.REQUESTED, State.FAILED) and not link.interaction_id and not opening:
            skipped = to_ccaas.exclude(state__in=(Delivery.Status.DONE, Delivery.Status.SKIPPED)).update(
                state=Delivery.Status.SKIPPED,
                done_at=now,
                cause="",
                last_error="skipped: closed before the interaction was opened",
            )
            if skipped:
                link.note(
                    "skipped",
                    f"{deliveries_text(skipped)} to the contact center not sent: closed before the "
                    "interaction was opened",
                    actor=actor,
                )
            close_ccaas = False
        if link.state == State.FAILED:
            others = (
                ConversationLink.objects.open()
                .filter(conversation_id=link.conversation_id)
                .exclude(pk=link.pk)
                .exists()
            )
            if gone or others:
                # Infobip has no such conversation, or another handover owns it now: close here only.
                Delivery.objects.filter(link=link, state=Delivery.Status.DEAD).update(
                    state=Delivery.Status.SKIPPED, cause="", last_error="skipped: handover closed"
                )
                ConversationLink.objects.filter(pk=link.pk).update(
                    state=State.CLOSED,
                    closed_at=now,
                    close_reason=reason.value,
                    closed_by=actor[:150],
                    last_error="",
                )
                why = "unknown or closed on Infobip" if gone else "another handover owns the conversation"
                link.note(
                    "closed", f"closed ({reason.value}); nothing to close on Infobip: {why}", actor=actor
                )
                return True
            Delivery.objects.filter(link=link, state=Delivery.Status.DEAD).update(
                state=Delivery.Status.SKIPPED, cause="", last_error="skipped: handover closed"
            )
            link.last_error = ""
        link.state = State.CLOSING
        link.closing_at = now
        link.close_reason = reason.value
        link.closed_by = actor[:150]
        link.save(update_fields=["state", "closing_at", "close_reason", "closed_by", "last_error"])
        for wanted, kind, lane in (
            (close_ccaas, Delivery.Kind.CLOSE_CCAAS, Delivery.Lane.TO_CCAAS),
            (close_infobip, Delivery.Kind.CLOSE_INFOBIP, Delivery.Lane.TO_INFOBIP),
        ):
            if wanted:
                Delivery.objects.create(
                    link=link, kind=kind, lane=lane, phase=2, payload={"reason": reason.value}
                )
                engine.enqueue_lane(link.pk, lane)
        link.note("closing", f"reason {reason.value}", actor=actor)
        after_delivery(link.pk)
    return True


def close_handover(
    link: ConversationLink, *, actor: str, reason: CloseReason = CloseReason.OPERATOR, note: str = ""
) -> bool:
    """Close a handover on both sides (operators, `bridge_close`, idle timeout); `note` is the
    operator's reason, kept on the timeline. False when it is already closing or closed."""
    with transaction.atomic():
        if note and link.state in (State.REQUESTED, State.ACTIVE, State.FAILED):
            link.note("operator_note", note, actor=actor)
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

    It is a delivery on the handover's Infobip lane (kind ROUTE_BACK): durable, retried on the
    engine's schedule, dead-lettered visibly, re-drivable from the admin."""
    endpoint = link.endpoint
    config = (endpoint.config or {}) if endpoint else {}
    if config.get("on_open_failure") != ON_OPEN_FAILURE_ROUTE and not link.bot_id:
        # A conversation that came through an external bot stays the bot's until it is routed: left
        # there, every customer message would reach the bridge and try to open it again.
        return
    pending = Delivery.objects.filter(link=link, kind=Delivery.Kind.ROUTE_BACK)
    if pending.exclude(state__in=Delivery.TERMINAL_STATES).exists():
        return
    tag = str(config.get("route_back_tag") or ROUTE_BACK_TAG)[:100]
    Delivery.objects.create(
        link=link,
        kind=Delivery.Kind.ROUTE_BACK,
        lane=Delivery.Lane.TO_INFOBIP,
        phase=2,
        payload={"action": ROUTE_BACK, "tag": tag},
    )
    link.note("route_back", f"routing the conversation back to Infobip's agents with tag {tag}")
    engine.enqueue_lane(link.pk, Delivery.Lane.TO_INFOBIP)


def interaction_over(link: ConversationLink, error: str) -> str | None:
    """The contact center said the interaction is over (a customer message was refused because the
    ticket or conversation is closed there): end the handover as the endpoint's
    `on_interaction_over` says, never leaving the customer talking to nobody.

    - `close` (default): as if the agent had closed it: the Infobip conversation is closed (after
      the agent messages still on their way), so the customer is back with the bot;
    - `route_to_infobip`: the conversation goes to Infobip's own agents (Route conversation, tagged
      like a failed open's route-back), with every message the customer wrote there.

    The customer messages still waiting for the interaction are skipped with the reason, and the
    timeline says how many. Returns the note for the delivery that met the answer, or None when the
    handover is no longer active (closing already: the refused message is then reported as a dead
    letter with the contact center's answer, as any message refused for good)."""
    endpoint = link.endpoint
    config = (endpoint.config or {}) if endpoint else {}
    policy = str(config.get("on_interaction_over") or "close")
    who = f"contact center ({endpoint.slug})" if endpoint else "contact center"
    if policy == ON_OPEN_FAILURE_ROUTE:
        why = "left with Infobip's agents (on_interaction_over=route_to_infobip)"
    else:
        why = "the handover was closed as by the agent (on_interaction_over=close)"
    with transaction.atomic():
        link = ConversationLink.objects.select_for_update().get(pk=link.pk)
        if link.state != State.ACTIVE:
            return None
        waiting = Delivery.objects.filter(
            link=link, lane=Delivery.Lane.TO_CCAAS, kind=Delivery.Kind.MESSAGE
        ).exclude(state__in=Delivery.TERMINAL_STATES)
        count = waiting.count()
        waiting.exclude(state=Delivery.Status.IN_FLIGHT).update(
            state=Delivery.Status.SKIPPED,
            done_at=timezone.now(),
            last_error=f"skipped: the interaction is over on the contact center; {why}"[:2000],
        )
        link.note(
            "interaction_over",
            f"{who} answered that the interaction is over ({error}); {count} customer message(s) "
            f"not delivered there; {why}",
            actor=who,
        )
        if policy == ON_OPEN_FAILURE_ROUTE:
            tag = str(config.get("route_back_tag") or ROUTE_BACK_TAG)[:100]
            Delivery.objects.create(
                link=link,
                kind=Delivery.Kind.ROUTE_BACK,
                lane=Delivery.Lane.TO_INFOBIP,
                phase=2,
                payload={"action": ROUTE_BACK, "tag": tag, "reason": "interaction_over"},
            )
            begin_close(link, CloseReason.AGENT, actor=who, close_ccaas=False, close_infobip=False)
            engine.enqueue_lane(link.pk, Delivery.Lane.TO_INFOBIP)
        else:
            begin_close(link, CloseReason.AGENT, actor=who, close_ccaas=False)
    return f"skipped: the interaction is over on the contact center; {why}"


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
            link.note("retry", f"{deliveries_text(count)} queued again", actor=actor)
    return count


def deliveries_text(count: int) -> str:
    return f"{count} {'delivery' if count == 1 else 'deliveries'}"


def retry_deliveries(deliveries, *, actor: str = "") -> int:
    """Re-drive chosen dead or waiting deliveries now, in their lanes' original order, noting it on
    each handover's timeline. Returns how many were queued again."""
    rows = list(
        deliveries.filter(state__in=[Delivery.Status.DEAD, Delivery.Status.PENDING]).values_list(
            "pk", "link_id"
        )
    )
    with transaction.atomic():
        count = engine.retry_dead(Delivery.objects.filter(pk__in=[pk for pk, _ in rows]))
        for link in ConversationLink.objects.filter(pk__in={link_id for _, link_id in rows}):
            mine = sum(1 for _, link_id in rows if link_id == link.pk)
            link.note("retry", f"{deliveries_text(mine)} queued again", actor=actor)
    return count


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
