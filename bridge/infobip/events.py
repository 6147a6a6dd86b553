"""Turn what Infobip sends (webhook bodies, Get Messages items) into bridge.types."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.exceptions import WebhookError
from bridge.types import AuthorType, Direction, InfobipMessage

REQUIRED_MESSAGE_FIELDS = ("id", "conversationId", "channel", "from", "to", "createdAt")


def parse_time(value: Any) -> datetime:
    """Infobip writes `2024-01-01T00:00:00.000+00:00` and older `2019-04-24T11:25:41.058+0000`."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a timestamp: {value!r}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def parse_message(item: dict[str, Any]) -> InfobipMessage:
    """One message object (account-configuration webhook body or Get Messages item)."""
    missing = [name for name in REQUIRED_MESSAGE_FIELDS if not item.get(name)]
    if missing:
        raise WebhookError(f"message lacks required fields: {', '.join(missing)}")
    try:
        created_at = parse_time(item["createdAt"])
    except ValueError as exc:
        raise WebhookError(f"createdAt is not a timestamp: {item['createdAt']!r}") from exc
    raw_direction = item.get("direction") or "INBOUND"
    if raw_direction not in ("INBOUND", "OUTBOUND"):
        raise WebhookError(f"unknown direction {raw_direction!r}")
    direction = Direction(raw_direction)
    author = item.get("authorType")
    if author not in AuthorType.__members__:
        author = AuthorType.CUSTOMER if direction == Direction.INBOUND else AuthorType.AGENT
    content = item.get("content")
    if isinstance(content, str):  # legacy docs show content as a plain string
        content = {"text": content}
    if not isinstance(content, dict):
        content = {}
    return InfobipMessage(
        id=str(item["id"]),
        conversation_id=str(item["conversationId"]),
        channel=str(item["channel"]),
        from_=str(item["from"]),
        to=str(item["to"]),
        direction=direction,
        content_type=str(item.get("contentType") or "TEXT"),
        content=content,
        created_at=created_at,
        author_type=AuthorType(author),
        author_id=item.get("authorId"),
        raw=item,
    )


@dataclass(frozen=True)
class ParsedWebhook:
    """What one Infobip webhook body holds: messages to record, or nothing we act on."""

    messages: list[InfobipMessage]
    ignored: str = ""  # why the body needs no action (delivery reports, outbound echoes)


def parse_webhook(body: Any) -> ParsedWebhook:
    """The account-configuration webhook: one message object, a list of them, or a delivery report."""
    if isinstance(body, dict) and "results" in body and "conversationId" not in body:
        # Delivery reports can arrive on the same URL; they need no action.
        return ParsedWebhook(messages=[], ignored="delivery report")
    items = body if isinstance(body, list) else [body]
    if not items or not all(isinstance(item, dict) for item in items):
        raise WebhookError("expected an Infobip message object")
    messages = [parse_message(item) for item in items]
    inbound = [m for m in messages if m.direction == Direction.INBOUND]
    return ParsedWebhook(messages=inbound, ignored="" if inbound else "outbound message")


# --- Subscriptions "customer engagement" events ----------------------------------------------------
# Reference: webhooks.conversation-event-webhook in Infobip's common-assets OpenAPI spec
# (https://www.infobip.com/docs/api/customer-engagement/conversations), and
# https://www.infobip.com/docs/cpaas-x/subscriptions-management.
EVENT_TYPES = (
    "INBOUND_MESSAGE",
    "OUTBOUND_MESSAGE",
    "INBOUND_MESSAGE_UPDATED",
    "INBOUND_MESSAGE_DELETED",
    "CONVERSATION_CREATED",
    "CONVERSATION_STATUS_UPDATED",
    "CONVERSATION_ASSIGNMENT_UPDATED",
    "CONVERSATION_PRIORITY_UPDATED",
    "CONVERSATION_QUEUE_UPDATED",
    "CONVERSATION_FORM_UPDATED",
    "CONVERSATION_FORM_FIELD_UPDATED",
    "CONVERSATION_SLA_POLICY_UPDATED",
    "CONVERSATION_CUSTOMER_UPDATED",
    "CONVERSATION_SUMMARY_UPDATED",
    "CONVERSATION_TOPIC_UPDATED",
    "CONVERSATION_TAG_ADDED",
    "CONVERSATION_TAG_REMOVED",
    "CONVERSATION_NOTE_ADDED",
    "CONVERSATION_NOTE_UPDATED",
    "CONVERSATION_NOTE_REMOVED",
    "CONVERSATION_MESSAGE_UPDATED",
    "CONVERSATION_DELETED",
    "CONVERSATION_AGENT_STATUS_CHANGED",
)


@dataclass(frozen=True)
class ConversationEvent:
    """One Subscriptions event, reduced to what the bridge acts on (the raw envelope is kept)."""

    event_id: str  # Infobip sends no event id; this one is derived, stable across redeliveries
    type: str
    timestamp: str
    conversation_id: str  # "" for events not about a conversation (agent status)
    status: str = ""
    assignee_id: str = ""
    assignee_name: str = ""
    assignee_role: str = ""
    invoker_type: str = ""
    invoker_name: str = ""
    tags: tuple[str, ...] = ()
    added_tag: str = ""
    removed_tag: str = ""
    message: InfobipMessage | None = None
    message_id: str = ""
    content_type_known: bool = True  # False: the content cannot tell; fetch the message
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def known(self) -> bool:
        return self.type in EVENT_TYPES


def is_event_envelope(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("type"), str) and "payload" in body


def _event_id(body: dict[str, Any], payload: dict[str, Any], message_id: str) -> str:
    if message_id and body["type"] in ("INBOUND_MESSAGE", "OUTBOUND_MESSAGE"):
        return f"{body['type']}:{message_id}"
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:40]
    return f"{body['type']}:{payload.get('id', '')}:{digest}"[:255]


def parse_event(body: Any) -> ConversationEvent:
    """A `{"type", "timestamp", "payload"}` envelope; WebhookError (400) when it lacks what it needs."""
    from bridge.media import derive_content_type

    if not is_event_envelope(body):
        raise WebhookError("expected an Infobip event envelope with type, timestamp and payload")
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise WebhookError("event payload must be an object")
    kind = body["type"]
    conversation_id = str(payload.get("id") or "")
    if kind != "CONVERSATION_AGENT_STATUS_CHANGED" and kind in EVENT_TYPES and not conversation_id:
        raise WebhookError(f"{kind} event lacks the conversation id (payload.id)")
    if kind == "CONVERSATION_AGENT_STATUS_CHANGED":
        conversation_id = ""
    assignee = payload.get("assignee") if isinstance(payload.get("assignee"), dict) else {}
    invoker = payload.get("invoker") if isinstance(payload.get("invoker"), dict) else {}
    tags = tuple(
        str(t.get("name")) for t in payload.get("tags") or [] if isinstance(t, dict) and t.get("name")
    )
    message = None
    message_id = ""
    known_type = True
    raw_message = payload.get("message")
    if kind in ("INBOUND_MESSAGE", "OUTBOUND_MESSAGE"):
        if not isinstance(raw_message, dict):
            raise WebhookError(f"{kind} event lacks payload.message")
        message_id = str(raw_message.get("id") or "")
        content = raw_message.get("content")
        derived = derive_content_type(content)
        known_type = derived is not None
        direction = "INBOUND" if kind == "INBOUND_MESSAGE" else "OUTBOUND"
        author = "CUSTOMER" if direction == "INBOUND" else _outbound_author(invoker, assignee)
        item = {
            **raw_message,
            "conversationId": raw_message.get("conversationId") or conversation_id,
            "channel": raw_message.get("channel") or payload.get("channel"),
            "createdAt": raw_message.get("createdAt") or payload.get("timestamp") or body.get("timestamp"),
            "direction": direction,
            "contentType": derived or "TEXT",
            "authorType": author,
        }
        if not known_type and isinstance(content, dict) and not content.get("text"):
            item["content"] = content
        message = parse_message(item)
    return ConversationEvent(
        event_id=_event_id(body, payload, message_id),
        type=kind,
        timestamp=str(body.get("timestamp") or ""),
        conversation_id=conversation_id,
        status=str(payload.get("status") or ""),
        assignee_id=str(assignee.get("id") or ""),
        assignee_name=str(assignee.get("name") or ""),
        assignee_role=str(assignee.get("role") or ""),
        invoker_type=str(invoker.get("type") or ""),
        invoker_name=str(invoker.get("name") or ""),
        tags=tags,
        added_tag=str((payload.get("addedTag") or {}).get("name") or ""),
        removed_tag=str((payload.get("removedTag") or {}).get("name") or ""),
        message=message,
        message_id=message_id,
        content_type_known=known_type,
        raw=body,
    )


def _outbound_author(invoker: dict[str, Any], assignee: dict[str, Any]) -> str:
    """Who wrote an outbound message: the envelope has no authorType; the invoker and assignee tell."""
    if invoker.get("type") == "AGENT":
        return "AGENT"
    role = assignee.get("role")
    if role == "BOT":
        return "BOT"
    if invoker.get("type") == "SYSTEM":
        return "SYSTEM" if not role else ("AGENT" if role in ("AGENT", "SUPERVISOR") else "SYSTEM")
    return "AGENT"
