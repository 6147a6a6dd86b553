"""The Connector interface: what the bridge needs from every kind of contact center.

A connector is instantiated per endpoint row and holds no global state. It turns our types into the
vendor's requests and the vendor's webhooks and poll answers into our types; it never touches the
database (the services do). Every vendor call ends in success, TransientError or PermanentError.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from bridge.exceptions import ConfigurationError
from bridge.inputs import load_json
from bridge.types import (
    CcaasEvent,
    CloseReason,
    HandoverContext,
    InfobipMessage,
    InteractionRef,
    OpenResult,
    PollResult,
)

if TYPE_CHECKING:
    from bridge.models import CcaasEndpoint


# What an endpoint does when its contact center answers that the interaction is over (see
# bridge.services.interaction_over): close the handover as the agent would, or hand the
# conversation to Infobip's own agents.
ON_INTERACTION_OVER = ("close", "route_to_infobip")


def load_webhook_json(body: bytes) -> Any:
    """A webhook body parsed as strict JSON (bridge.inputs.load_json), or WebhookError (answered 400)."""
    return load_json(body)


# Vendor times outside this range are taken as "no time given" rather than trusted for ordering.
_SANE_YEARS = (2000, 2200)


def vendor_time(value: Any) -> datetime | None:
    """A contact center's time of a message, as an aware datetime, or None when it gives none that
    can be read: ISO 8601 (`2026-01-01T10:05:00.000Z`, nanoseconds and `+0000` included, RT's
    `2026-01-01 10:05:00` read as UTC) or unix seconds (Chatwoot's REST API)."""
    parsed: datetime | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            parsed = datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00")
        if re.search(r"T.*[+-]\d{4}$", text):
            text = f"{text[:-2]}:{text[-2:]}"  # +0000 -> +00:00
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            try:
                parsed = datetime.fromtimestamp(float(text), tz=UTC)
            except (OverflowError, OSError, ValueError):
                return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not _SANE_YEARS[0] <= parsed.year <= _SANE_YEARS[1]:
        return None
    return parsed.astimezone(UTC)


def vendor_sequence(value: Any) -> int | None:
    """A contact center's monotonic id (message, comment, transaction id) as an int, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 2**63 else None
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 19:
        try:
            number = int(value.strip())
        except ValueError:  # digits int() does not read, e.g. superscripts
            return None
        return number if number < 2**63 else None
    return None


def fill_url_template(template: str, ref: InteractionRef) -> str | None:
    """`template` with {interaction_id}, {conversation_id}, {handover_id} URL-encoded; None when the
    template names anything else or the interaction id is not known yet."""
    if not ref.interaction_id:
        return None
    values = {
        "interaction_id": quote(ref.interaction_id, safe=""),
        "conversation_id": quote(ref.conversation_id, safe=""),
        "handover_id": quote(ref.handover_id, safe=""),
    }
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do, so the rest of the bridge degrades explicitly, never silently."""

    webhook: bool = True
    poll: bool = False
    attachments: bool = False  # can carry media itself; else media goes as a text with its link
    typing: bool = False  # reports agent typing
    poll_covers_all_interactions: bool = False  # one poll call serves every open interaction
    always_poll: bool = False  # polled every interval even in webhook mode (e.g. to notice closes)
    tags: bool = False  # follows tags added to or removed from the Infobip conversation (update_tags)
    # carries "recovered" (a customer message found late) as a field of its own; else the bridge puts
    # a visible mark with the message's original time in front of the text the agent reads
    recovered_field: bool = False
    # The longest customer message the contact center takes, and the unit it counts in
    # ("characters", "utf16" code units or UTF-8 "bytes"); 0: no limit. Longer messages are sent in
    # parts within it, in order, each once (never cut).
    text_limit: int = 0
    text_unit: str = "characters"


@dataclass(frozen=True)
class Field:
    """One config or credential key, for validation, the admin form and `bridge_endpoint`."""

    name: str
    help: str = ""
    required: bool = False
    kind: str = "str"  # str, int, bool, url, json, choice
    choices: tuple[str, ...] = ()
    default: Any = None


class Connector(ABC):
    kind: ClassVar[str]
    label: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()
    config_fields: ClassVar[tuple[Field, ...]] = ()
    credential_fields: ClassVar[tuple[Field, ...]] = ()

    def __init__(self, endpoint: CcaasEndpoint) -> None:
        self.endpoint = endpoint
        self.config: dict[str, Any] = dict(endpoint.config or {})
        self.credentials: dict[str, Any] = dict(endpoint.credentials or {})

    # --- configuration -----------------------------------------------------------------------------
    @classmethod
    def validate(cls, config: Mapping[str, Any], credentials: Mapping[str, Any]) -> list[str]:
        """Problems with this config and credentials, as sentences an operator can act on."""
        problems = []
        for spec, values, what in (
            (cls.config_fields, config, "config"),
            (cls.credential_fields, credentials, "credentials"),
        ):
            for item in spec:
                value = values.get(item.name)
                if item.required and value in (None, ""):
                    problems.append(
                        f"{what}: '{item.name}' is required ({item.help})"
                        if item.help
                        else f"{what}: '{item.name}' is required"
                    )
                elif value not in (None, "") and item.choices and value not in item.choices:
                    problems.append(f"{what}: '{item.name}' must be one of {', '.join(item.choices)}")
                elif (
                    value not in (None, "")
                    and item.kind == "url"
                    and not str(value).startswith(("http://", "https://"))
                ):
                    problems.append(f"{what}: '{item.name}' must be an http(s) URL")
                elif value not in (None, "") and item.kind == "int":
                    try:
                        int(value)
                    except (TypeError, ValueError):
                        problems.append(f"{what}: '{item.name}' must be a whole number")
        over = config.get("on_interaction_over")
        if over not in (None, "") and over not in ON_INTERACTION_OVER:
            problems.append(f"config: 'on_interaction_over' must be one of {', '.join(ON_INTERACTION_OVER)}")
        limit = config.get("max_text_length")
        if limit not in (None, ""):
            try:
                if int(limit) < 1:
                    raise ValueError
            except (TypeError, ValueError):
                problems.append("config: 'max_text_length' must be a whole number of at least 1")
        mode = config.get("mode")
        if mode == "poll" and not cls.capabilities.poll:
            problems.append(f"config: {cls.kind} cannot poll; use mode 'webhook'")
        if mode == "webhook" and not cls.capabilities.webhook:
            problems.append(f"config: {cls.kind} has no webhooks; use mode 'poll'")
        return problems

    def http_session(self, extra_headers: Mapping[str, str] | None = None):
        """A requests.Session for this endpoint, reused (with its connections) within a worker thread
        until the endpoint's configuration changes."""
        from bridge import http

        changed = self.endpoint.updated_at.timestamp() if self.endpoint.updated_at else 0
        return http.make_session(extra_headers, reuse_key=f"endpoint:{self.endpoint.pk}:{changed}")

    def require(self, source: Mapping[str, Any], name: str) -> Any:
        value = source.get(name)
        if value in (None, ""):
            raise ConfigurationError(f"endpoint {self.endpoint.slug}: '{name}' is not configured")
        return value

    @classmethod
    def mode_of(cls, config: Mapping[str, Any] | None) -> str:
        """ "webhook" or "poll": the config's `mode`, else the only way this kind can hear back."""
        default = "webhook" if cls.capabilities.webhook else "poll"
        return str((config or {}).get("mode") or default)

    @classmethod
    def polled(cls, config: Mapping[str, Any] | None) -> bool:
        """Whether an endpoint of this kind with this config is polled every interval: the one place
        the ticker, `bridge_sync` and `bridge_endpoint list` ask. Polled: a kind that always polls
        (e.g. to notice closes its webhooks never report), or a kind that can poll in poll mode
        (which is the default mode of a kind without webhooks)."""
        if cls.capabilities.always_poll:
            return True
        return cls.capabilities.poll and cls.mode_of(config) == "poll"

    @property
    def mode(self) -> str:
        return self.mode_of(self.config)

    @property
    def text_limit(self) -> int:
        """The longest customer message this endpoint takes (in `capabilities.text_unit`): the
        vendor's limit, or the config's `max_text_length` when smaller (or when the vendor has
        none); 0 means no limit."""
        vendor = self.capabilities.text_limit
        try:
            configured = int(self.config.get("max_text_length") or 0)
        except (TypeError, ValueError):
            configured = 0
        if configured > 0:
            return min(configured, vendor) if vendor else configured
        return vendor

    @property
    def polls(self) -> bool:
        """Whether this endpoint is polled (see `polled`); one poll cycle is `poll()`."""
        return self.polled(self.config)

    # --- the handover ------------------------------------------------------------------------------
    @abstractmethod
    def open_interaction(self, ctx: HandoverContext) -> OpenResult:
        """Open the interaction with the conversation's history and context; return its id.

        Called again after a transient failure: use the handover id as an idempotency key where the
        vendor accepts one, so a retry never opens a second interaction.
        """

    @abstractmethod
    def send_customer_message(self, ref: InteractionRef, message: InfobipMessage) -> list[str] | None:
        """Deliver one customer message (or another Infobip-side message) to the interaction.

        Returns the ids the contact center gave what it created (a message id, a comment id), when
        its answer tells them: the bridge remembers them, so a webhook that echoes one of them is
        never taken for an agent reply. None when the answer carries no id."""

    @abstractmethod
    def close_interaction(self, ref: InteractionRef, reason: CloseReason) -> None:
        """Close the interaction because the close started on the bridge's side."""

    # --- what comes back ---------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> None:  # noqa: B027
        """Raise SignatureError (403) unless the request really comes from the contact center."""

    @abstractmethod
    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[CcaasEvent]:
        """Turn a webhook request into events (after verify_webhook). WebhookError (400) if unparseable."""

    def poll(self, cursor: str, open_interactions: list[InteractionRef]) -> PollResult:
        """Events after `cursor`, oldest first, and the cursor to store. Only if capabilities.poll."""
        raise NotImplementedError(f"{self.kind} cannot poll")

    def check_connection(self) -> str:
        """Make one harmless authenticated call; return what it showed, or raise an UpstreamError."""
        raise NotImplementedError(f"{self.kind} has no connection test")

    # --- links for people ---------------------------------------------------------------------------
    @classmethod
    def interaction_url(cls, config: Mapping[str, Any], ref: InteractionRef) -> str | None:
        """A link that opens the interaction in the contact center's own agent UI, or None.

        Reads only the endpoint's config, never its credentials, and makes no call (the context card
        asks for it on its request path). Config `interaction_url_template` overrides the kind's own
        link, with `{interaction_id}`, `{conversation_id}` and `{handover_id}` filled in, URL-encoded:
        e.g. "https://desk.example.com/cases/{interaction_id}". Only http(s) links are returned.
        """
        template = config.get("interaction_url_template")
        url = fill_url_template(str(template), ref) if template else cls.default_interaction_url(config, ref)
        return url if url and url.startswith(("https://", "http://")) else None

    @classmethod
    def default_interaction_url(cls, config: Mapping[str, Any], ref: InteractionRef) -> str | None:
        """The kind's own deep link (see interaction_url); None when the kind has none."""
        return None

    def webhook_instructions(self) -> str:
        """What to configure on the vendor's side so it calls our webhook."""
        return f"Point the contact center's webhook at {self.endpoint.webhook_url()}"

    def update_tags(self, ref: InteractionRef, added: list[str], removed: list[str]) -> None:
        """Follow tags added to or removed from the Infobip conversation (only if capabilities.tags).
        Best effort, outside the message lanes: errors are logged, not retried."""
        raise NotImplementedError(f"{self.kind} does not follow tags")

    def acknowledge_failed_delivery(self, ref: InteractionRef, message_id: str, error: str) -> None:  # noqa: B027
        """Told when an agent message (its contact-center id) could not be delivered to the customer
        and will not be retried. Best effort: errors raised here are logged, not retried."""
