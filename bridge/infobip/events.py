"""Turn what Infobip sends (webhook bodies, Get Messages items) into bridge.types."""

from __future__ import annotations

from dataclasses import dataclass
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
