"""Normalized messages and events: what the middle of the bridge speaks. No Django imports.

Provider formats (Infobip's, each contact center's) are turned into these at the edges
(`bridge/infobip/`, `bridge/connectors/`) and never travel further in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Direction(StrEnum):
    INBOUND = "INBOUND"  # customer -> contact center
    OUTBOUND = "OUTBOUND"  # agent (or bot) -> customer


class AuthorType(StrEnum):
    CUSTOMER = "CUSTOMER"
    BOT = "BOT"
    AGENT = "AGENT"
    SYSTEM = "SYSTEM"


class CloseReason(StrEnum):
    CONVERSATION_CLOSED = "CONVERSATION_CLOSED"  # the customer's side (Infobip) closed
    IDLE_TIMEOUT = "IDLE_TIMEOUT"
    OPERATOR = "OPERATOR"
    AGENT = "AGENT"  # the contact center closed the interaction


class EventType(StrEnum):
    AGENT_MESSAGE = "agent_message"
    ACCEPTED = "accepted"
    CLOSED = "closed"
    TYPING = "typing"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class InfobipMessage:
    """One message of an Infobip conversation (Get Messages item or webhook body)."""

    id: str
    conversation_id: str
    channel: str
    from_: str
    to: str
    direction: Direction
    content_type: str
    content: dict[str, Any]
    created_at: datetime
    author_type: AuthorType = AuthorType.CUSTOMER
    author_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # What had to be normalised to store it (bridge.inputs), for the handover's timeline.
    normalised: tuple[str, ...] = field(default=(), compare=False)
    # Found by reconciliation (its webhook never arrived), so it may reach the contact center after
    # messages the customer wrote later; connectors show it as recovered, with `created_at`.
    recovered: bool = False


@dataclass(frozen=True)
class AgentMessage:
    """A message an agent wrote in the contact center, to go to the customer.

    `sent_at` and `sequence` are the contact center's own order (its time of the message, and a
    monotonic id such as a message, comment or transaction id), when it gives them: agent messages
    waiting together go to the customer in that order, whatever order their events arrived in.
    """

    id: str
    content_type: str
    content: dict[str, Any]
    agent_id: str | None = None
    agent_name: str | None = None
    sent_at: datetime | None = None
    sequence: int | None = None


@dataclass(frozen=True)
class CcaasEvent:
    """Something the contact center told us about one interaction."""

    id: str
    type: EventType
    interaction_id: str
    message: AgentMessage | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    original_type: str = ""
    typing: bool = True  # TYPING only: True while the agent types, False when they stopped
    # Set by a connector for an item of a batch it could not parse: this event alone is refused
    # (recorded as refused, answered 400), the rest of the batch is stored.
    refusal: str = ""


@dataclass(frozen=True)
class Customer:
    address: str
    display_name: str | None = None


@dataclass(frozen=True)
class HandoverContext:
    """Everything a connector needs to open an interaction, independent of our models."""

    handover_id: str
    conversation_id: str
    channel: str
    customer: Customer
    queue: str
    priority: str
    tags: list[str]
    metadata: dict[str, Any]
    context: dict[str, Any]
    history: list[InfobipMessage]


@dataclass(frozen=True)
class InteractionRef:
    """An open interaction as connectors see it after `open_interaction`."""

    handover_id: str
    conversation_id: str
    interaction_id: str
    channel: str
    customer: Customer
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenResult:
    interaction_id: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PollResult:
    events: list[CcaasEvent]
    cursor: str
