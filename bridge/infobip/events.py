"""Turn what Infobip sends (webhook bodies, Get Messages items) into bridge.types."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rest_framework import serializers

from bridge import inputs
from bridge.exceptions import WebhookError
from bridge.inputs import InputError
from bridge.types import AuthorType, Direction, InfobipMessage

REQUIRED_MESSAGE_FIELDS = ("id", "conversationId", "channel", "from", "to", "createdAt")


def _id(**kwargs: Any) -> serializers.CharField:
    """An id or address: exact text (numbers accepted), within its column, no NUL or lone surrogate."""
    return serializers.CharField(max_length=inputs.ID_MAX, trim_whitespace=False, **kwargs)


def _optional(max_length: int) -> serializers.CharField:
    return serializers.CharField(
        max_length=max_length, required=False, allow_null=True, allow_blank=True, trim_whitespace=False
    )


# One Infobip message object, as the account-configuration webhook and Get Messages carry it.
# Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/get-messages
MessageSerializer = type(
    "MessageSerializer",
    (serializers.Serializer,),
    {
        "id": _id(),
        "conversationId": _id(),
        "channel": serializers.CharField(max_length=64, trim_whitespace=False),
        "from": _id(),
        "to": _id(),
        "createdAt": serializers.CharField(max_length=64),
        "direction": serializers.ChoiceField(
            choices=["INBOUND", "OUTBOUND"], required=False, allow_null=True, allow_blank=True
        ),
        "authorType": _optional(64),
        "authorId": _optional(inputs.ID_MAX),
        "contentType": _optional(inputs.TYPE_MAX),
        "content": serializers.JSONField(required=False, allow_null=True),
    },
)


def parse_time(value: Any) -> datetime:
    """Infobip writes `2024-01-01T00:00:00.000+00:00` and older `2019-04-24T11:25:41.058+0000`."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a timestamp: {value!r}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def parse_message(item: Any, *, now: datetime | None = None) -> InfobipMessage:
    """One message object (account-configuration webhook body or Get Messages item).

    InputError (400) when a field has the wrong type or size, or an id cannot be stored; content
    that cannot be stored, and a createdAt outside the accepted range, are normalised instead
    (see bridge.inputs) and listed in `normalised`.
    """
    if isinstance(item, dict):
        missing = [name for name in REQUIRED_MESSAGE_FIELDS if item.get(name) in (None, "")]
        if missing:
            raise InputError(f"message lacks required fields: {', '.join(missing)}")
    data = inputs.validated(MessageSerializer, item, f"message {_id_hint(item)}".strip())
    changes = inputs.Changes()
    try:
        created_at = parse_time(data["createdAt"])
    except ValueError as exc:
        raise InputError(f"createdAt is not a timestamp: {data['createdAt']!r}") from exc
    created_at = inputs.sane_time(created_at, "createdAt", changes, now=now)
    direction = Direction(data.get("direction") or "INBOUND")
    author = data.get("authorType")
    if author not in AuthorType.__members__:
        author = AuthorType.CUSTOMER if direction == Direction.INBOUND else AuthorType.AGENT
    content = data.get("content")
    if isinstance(content, str):  # legacy docs show content as a plain string
        content = {"text": content}
    if not isinstance(content, dict):
        content = {}
    content = inputs.clean_json(content, changes, "content")
    raw = inputs.clean_json(item, inputs.Changes(), "")
    return InfobipMessage(
        id=data["id"],
        conversation_id=data["conversationId"],
        channel=data["channel"],
        from_=data["from"],
        to=data["to"],
        direction=direction,
        content_type=data.get("contentType") or "TEXT",
        content=content,
        created_at=created_at,
        author_type=AuthorType(author),
        author_id=data.get("authorId") or None,
        raw=raw,
        normalised=tuple(changes.items),
    )


def _id_hint(item: Any) -> str:
    if isinstance(item, dict) and isinstance(item.get("id"), str | int) and not isinstance(item["id"], bool):
        text = str(item["id"])
        if len(text) <= 80 and not inputs.unstorable_text(text):
            return text
    return ""


@dataclass(frozen=True)
class Refused:
    """One message or event of a body that was refused, and why (answered 400, logged)."""

    index: int
    id: str
    error: str

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id or None, "error": self.error}


@dataclass(frozen=True)
class ParsedWebhook:
    """What one Infobip webhook body holds: messages to record, or nothing we act on."""

    messages: list[InfobipMessage]
    ignored: str = ""  # why the body needs no action (delivery reports, outbound echoes)
    refused: list[Refused] = field(default_factory=list)  # messages that cannot be stored


def parse_webhook(body: Any) -> ParsedWebhook:
    """The account-configuration webhook: one message object, a list of them, or a delivery report.

    Each message is parsed on its own: one that cannot be stored is listed in `refused` and the
    others are still recorded. A body holding a single message that is refused raises InputError.
    """
    if isinstance(body, dict) and "results" in body and "conversationId" not in body:
        # Delivery reports can arrive on the same URL; they need no action.
        return ParsedWebhook(messages=[], ignored="delivery report")
    items = body if isinstance(body, list) else [body]
    if not items or not all(isinstance(item, dict) for item in items):
        raise WebhookError("expected an Infobip message object")
    if len(items) == 1:
        messages = [parse_message(items[0])]
        refused: list[Refused] = []
    else:
        messages, refused = [], []
        for index, item in enumerate(items):
            try:
                messages.append(parse_message(item))
            except WebhookError as exc:
                refused.append(Refused(index, _id_hint(item), str(exc)))
    inbound = [m for m in messages if m.direction == Direction.INBOUND]
    ignored = "" if inbound or refused else "outbound message"
    return ParsedWebhook(messages=inbound, ignored=ignored, refused=refused)


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
        event_id = f"{body['type']}:{message_id}"
        if len(event_id) <= inputs.ID_MAX:
            return event_id
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{body['type']}:{str(payload.get('id', ''))[:150]}:{digest}"[: inputs.ID_MAX]


class _Party(serializers.Serializer):
    id = _optional(inputs.ID_MAX)
    name = inputs.DisplayText()
    role = inputs.DisplayText(max_length=64)
    type = inputs.DisplayText(max_length=64)


class _Named(serializers.Serializer):
    name = inputs.DisplayText(max_length=100)


class EventPayloadSerializer(serializers.Serializer):
    """The fields of a Subscriptions event payload the bridge reads (others are kept raw)."""

    id = _optional(inputs.ID_MAX)
    status = serializers.JSONField(required=False, allow_null=True)  # text, or an object for agents
    channel = _optional(64)
    timestamp = _optional(64)
    assignee = _Party(required=False, allow_null=True)
    invoker = _Party(required=False, allow_null=True)
    tags = serializers.ListField(child=_Named(), required=False, allow_null=True, max_length=1000)
    addedTag = _Named(required=False, allow_null=True)
    removedTag = _Named(required=False, allow_null=True)
    message = serializers.DictField(required=False, allow_null=True)


class EnvelopeSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=inputs.TYPE_MAX)
    timestamp = _optional(64)
    payload = serializers.DictField()


def parse_event(body: Any) -> ConversationEvent:
    """A `{"type", "timestamp", "payload"}` envelope; InputError (400) when a field has the wrong type
    or size, WebhookError (400) when it lacks what it needs."""
    from bridge.media import derive_content_type

    if not is_event_envelope(body):
        raise WebhookError("expected an Infobip event envelope with type, timestamp and payload")
    envelope = inputs.validated(EnvelopeSerializer, body, "event")
    payload = inputs.validated(EventPayloadSerializer, body["payload"], "event payload")
    raw_payload = body["payload"]
    kind = envelope["type"]
    conversation_id = payload.get("id") or ""
    if kind != "CONVERSATION_AGENT_STATUS_CHANGED" and kind in EVENT_TYPES and not conversation_id:
        raise WebhookError(f"{kind} event lacks the conversation id (payload.id)")
    if kind == "CONVERSATION_AGENT_STATUS_CHANGED":
        conversation_id = ""
    assignee = payload.get("assignee") or {}
    invoker = payload.get("invoker") or {}
    tags = tuple(t["name"] for t in payload.get("tags") or [] if t and t.get("name"))
    message = None
    message_id = ""
    known_type = True
    raw_message = raw_payload.get("message")
    if kind in ("INBOUND_MESSAGE", "OUTBOUND_MESSAGE"):
        if not isinstance(raw_message, dict):
            raise WebhookError(f"{kind} event lacks payload.message")
        message_id = inputs.check_id(raw_message.get("id"), "payload.message.id", required=False)
        content = raw_message.get("content")
        derived = derive_content_type(content)
        known_type = derived is not None
        direction = "INBOUND" if kind == "INBOUND_MESSAGE" else "OUTBOUND"
        author = "CUSTOMER" if direction == "INBOUND" else _outbound_author(invoker, assignee)
        item = {
            **raw_message,
            "conversationId": raw_message.get("conversationId") or conversation_id,
            "channel": raw_message.get("channel") or raw_payload.get("channel"),
            "createdAt": raw_message.get("createdAt")
            or raw_payload.get("timestamp")
            or body.get("timestamp"),
            "direction": direction,
            "contentType": derived or "TEXT",
            "authorType": author,
        }
        if not known_type and isinstance(content, dict) and not content.get("text"):
            item["content"] = content
        message = parse_message(item)
    return ConversationEvent(
        event_id=_event_id(body, raw_payload, message_id),
        type=kind,
        timestamp=envelope.get("timestamp") or "",
        conversation_id=conversation_id,
        status=inputs.clean_text(payload["status"])[:64] if isinstance(payload.get("status"), str) else "",
        assignee_id=assignee.get("id") or "",
        assignee_name=assignee.get("name") or "",
        assignee_role=assignee.get("role") or "",
        invoker_type=invoker.get("type") or "",
        invoker_name=invoker.get("name") or "",
        tags=tags,
        added_tag=(payload.get("addedTag") or {}).get("name") or "",
        removed_tag=(payload.get("removedTag") or {}).get("name") or "",
        message=message,
        message_id=message_id,
        content_type_known=known_type,
        raw=inputs.clean_json(body, inputs.Changes()),
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
