"""The generic CCaaS protocol (docs/protocol.md): for contact centers that implement a small HTTP API.

Requests are signed (X-Bridge-Timestamp, X-Bridge-Signature) and carry a stable Idempotency-Key;
webhooks are verified the same way; poll mode reads GET /events?after=<cursor>.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests
from rest_framework import serializers

from bridge import http, inputs, signing
from bridge.connectors.base import (
    Capabilities,
    Connector,
    Field,
    load_webhook_json,
    vendor_sequence,
    vendor_time,
)
from bridge.exceptions import (
    InteractionOverError,
    PermanentError,
    TransientError,
    UpstreamError,
    WebhookError,
)
from bridge.types import (
    AgentMessage,
    CcaasEvent,
    CloseReason,
    EventType,
    HandoverContext,
    InfobipMessage,
    InteractionRef,
    OpenResult,
    PollResult,
)

MAX_EVENTS = 1000  # per webhook request
MAX_EVENT_PAGES = 50  # pages of GET /events read in one poll cycle
# Reasons the protocol defines for a close that starts on the bridge's side.
PROTOCOL_CLOSE_REASONS = {"CONVERSATION_CLOSED", "IDLE_TIMEOUT", "OPERATOR"}


def message_json(message: InfobipMessage) -> dict[str, Any]:
    """A message as the protocol carries it; authorType, contentType and content are Infobip's.
    `"recovered": true` marks a message found late by reconciliation (createdAt is when it was written)."""
    body = {
        "id": message.id,
        "direction": message.direction.value,
        "authorType": message.author_type.value,
        "contentType": message.content_type,
        "content": message.content,
        "createdAt": message.created_at.isoformat(),
    }
    if message.recovered:
        body["recovered"] = True
    return body


class GenericConnector(Connector):
    kind = "generic"
    label = "Generic protocol"
    capabilities = Capabilities(webhook=True, poll=True, attachments=True, typing=True, recovered_field=True)
    config_fields = (
        Field(
            "base_url", "The contact center's bridge API, e.g. https://ccaas.example.com/bridge", True, "url"
        ),
        Field(
            "mode",
            "webhook: it calls us; poll: we read its /events feed",
            False,
            "choice",
            ("webhook", "poll"),
            "webhook",
        ),
        Field(
            "interaction_url_template",
            "Optional link to an interaction in your agent UI, for Infobip's context card, e.g. "
            "https://desk.example.com/cases/{interaction_id}",
        ),
        Field(
            "max_text_length",
            "Longest customer message the contact center takes, in characters (none if unset); "
            "longer ones are sent in parts",
            kind="int",
        ),
    )
    credential_fields = (
        Field("secret", "Shared HMAC secret, both directions", True),
        Field("api_key", "Optional; sent as Authorization: Bearer"),
    )

    def __init__(self, endpoint) -> None:
        super().__init__(endpoint)
        api_key = self.credentials.get("api_key")
        self.session = self.http_session({"Authorization": f"Bearer {api_key}"} if api_key else None)
        if not api_key:
            self.session.headers.pop("Authorization", None)

    @property
    def base_url(self) -> str:
        return str(self.require(self.config, "base_url")).rstrip("/")

    @property
    def secret(self) -> str:
        return str(self.require(self.credentials, "secret"))

    def _post(self, path: str, body: dict[str, Any], idempotency_key: str) -> Any:
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            **signing.sign(self.secret, raw),
        }
        response = http.request(
            self.session,
            "POST",
            f"{self.base_url}{path}",
            service=self._service,
            check_url=True,
            data=raw,
            headers=headers,
        )
        return http.json_body(response, service=self._service, empty={})

    @property
    def _service(self) -> str:
        return f"endpoint {self.endpoint.slug}"

    # --- Bridge -> CCaaS ---------------------------------------------------------------------------
    def open_interaction(self, ctx: HandoverContext) -> OpenResult:
        body = {
            "handoverId": ctx.handover_id,
            "conversationId": ctx.conversation_id,
            "channel": ctx.channel,
            "customer": {"address": ctx.customer.address, "displayName": ctx.customer.display_name},
            "queue": ctx.queue,
            "priority": ctx.priority,
            "tags": ctx.tags,
            "metadata": ctx.metadata,
            "context": ctx.context,
            "history": [message_json(m) for m in ctx.history],
        }
        data = self._post("/interactions", body, idempotency_key=ctx.handover_id)
        interaction_id = data.get("id") if isinstance(data, dict) else None
        if not interaction_id:
            raise UpstreamError(
                f"{self._service}: POST /interactions answered without an id", service=self._service
            )
        return OpenResult(interaction_id=str(interaction_id))

    def send_customer_message(self, ref: InteractionRef, message: InfobipMessage) -> None:
        """POST the message; the contact center answers 410 Gone when the interaction is over."""
        try:
            self._post(
                f"/interactions/{quote(ref.interaction_id, safe='')}/messages",
                message_json(message),
                idempotency_key=message.id,
            )
        except PermanentError as exc:
            if exc.status == 410:
                raise InteractionOverError(
                    f"{self._service}: interaction {ref.interaction_id} is over (410 Gone)",
                    status=exc.status,
                    body=exc.body,
                    service=self._service,
                ) from exc
            raise

    def close_interaction(self, ref: InteractionRef, reason: CloseReason) -> None:
        wire_reason = reason.value if reason.value in PROTOCOL_CLOSE_REASONS else CloseReason.OPERATOR.value
        try:
            self._post(
                f"/interactions/{quote(ref.interaction_id, safe='')}/close",
                {"reason": wire_reason},
                idempotency_key=f"close:{ref.handover_id}",
            )
        except PermanentError as exc:
            if exc.status == 410:
                raise InteractionOverError(
                    f"{self._service}: interaction {ref.interaction_id} was already over (410 Gone)",
                    status=exc.status,
                    service=self._service,
                ) from exc
            raise

    # --- CCaaS -> Bridge ---------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> None:
        signing.verify(self.secret, body, headers)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[CcaasEvent]:
        data = load_webhook_json(body)
        if not isinstance(data, dict) or not isinstance(data.get("events"), list):
            raise WebhookError('expected {"events": [...]}')
        if len(data["events"]) > MAX_EVENTS:
            raise WebhookError(f"at most {MAX_EVENTS} events per request")
        events = [self._event_or_refusal(item) for item in data["events"]]
        if events and all(event.refusal for event in events):
            # Nothing in the batch can be stored: refuse the request itself (400, nothing stored).
            raise WebhookError(
                events[0].refusal if len(events) == 1 else f"every event refused: {events[0].refusal}"
            )
        return events

    def poll(self, cursor: str, open_interactions: list[InteractionRef]) -> PollResult:
        """GET /events?after=<cursor>, and again after each answer's cursor while it says
        `"hasMore": true` (at most MAX_EVENT_PAGES a cycle; the stored cursor keeps the place)."""
        events: list[CcaasEvent] = []
        for _ in range(MAX_EVENT_PAGES):
            data = self._events_page(cursor)
            events += [self._event_or_refusal(item) for item in data["events"]]
            next_cursor = str(data.get("cursor") or cursor)
            more = data.get("hasMore") is True and next_cursor != cursor
            cursor = next_cursor
            if not more:
                break
        return PollResult(events=events, cursor=cursor)

    def _events_page(self, cursor: str) -> dict[str, Any]:
        params = {"after": cursor} if cursor else {}
        headers = signing.sign(self.secret, b"")
        response = http.request(
            self.session,
            "GET",
            f"{self.base_url}/events",
            service=self._service,
            check_url=True,
            params=params,
            headers=headers,
        )
        data = http.json_or_error(response, service=self._service)
        if not isinstance(data, dict) or not isinstance(data.get("events"), list):
            raise UpstreamError(
                f"{self._service}: GET /events answered without an events list", service=self._service
            )
        return data

    def check_connection(self) -> str:
        if self.mode == "poll":
            result = self.poll("", [])
            return f"GET /events answered with {len(result.events)} event(s)"
        headers = signing.sign(self.secret, b"")
        # Webhook-mode contact centers need not serve /events; reaching the host is the check.
        http.guard_url(self.base_url)
        try:
            response = self.session.get(self.base_url, timeout=http.timeout(), headers=headers)
        except requests.RequestException as exc:
            raise TransientError(
                f"{self._service}: cannot reach {http.redact_url(self.base_url)}: {http.describe_failure(exc)}",
                service=self._service,
            ) from exc
        if response.status_code in (401, 403) or response.status_code >= 500:
            http.raise_for_response(response, service=self._service)
        return f"{http.redact_url(self.base_url)} is reachable (HTTP {response.status_code})"

    def webhook_instructions(self) -> str:
        return (
            f"POST signed event batches to {self.endpoint.webhook_url()} "
            "(X-Bridge-Timestamp, X-Bridge-Signature: v1=<hex HMAC-SHA256(secret, '<ts>.' + body)>)."
        )

    @staticmethod
    def _event_or_refusal(item: Any) -> CcaasEvent:
        """One protocol event of a batch; a malformed one comes back with `refusal` set, so it is
        refused on its own and the rest of the batch is stored."""
        try:
            return GenericConnector._event(item)
        except WebhookError as exc:
            ident = item.get("id") if isinstance(item, dict) else None
            return CcaasEvent(
                id=str(ident) if isinstance(ident, str | int) and not isinstance(ident, bool) else "",
                type=EventType.UNKNOWN,
                interaction_id="",
                raw=item if isinstance(item, dict) else {"value": item},
                refusal=str(exc),
            )

    @staticmethod
    def _event(item: Any) -> CcaasEvent:
        """One protocol event; WebhookError (400) when malformed."""
        data = inputs.validated(EventSerializer, item, "event")
        raw_type = data["type"]
        try:
            event_type = EventType(raw_type)
        except ValueError:
            event_type = EventType.UNKNOWN
        interaction_id = data.get("interactionId") or ""
        if event_type != EventType.UNKNOWN and not interaction_id:
            raise WebhookError(f"event {data['id']} has no interactionId")
        message = None
        if event_type == EventType.AGENT_MESSAGE:
            payload = data.get("message")
            if not payload or not payload.get("id") or not isinstance(payload.get("content"), dict):
                raise WebhookError(f"agent_message event {data['id']} needs message.id and message.content")
            agent = payload.get("agent") or {}
            message = AgentMessage(
                id=payload["id"],
                content_type=payload.get("contentType") or "TEXT",
                content=payload["content"],
                agent_id=agent.get("id") or None,
                agent_name=agent.get("name"),
                # Optional: the contact center's order of its agent messages.
                sent_at=vendor_time(item["message"].get("createdAt")),
                sequence=vendor_sequence(item["message"].get("sequence")),
            )
        # Extension: {"type": "typing", "interactionId", "typing": true|false} (absent means true).
        typing = _flag(item.get("typing")) if event_type == EventType.TYPING else True
        return CcaasEvent(
            id=data["id"],
            type=event_type,
            interaction_id=interaction_id,
            message=message,
            raw=item,
            original_type=raw_type,
            typing=typing,
        )


class _Agent(serializers.Serializer):
    id = serializers.CharField(max_length=inputs.ID_MAX, required=False, allow_null=True, allow_blank=True)
    name = inputs.DisplayText()


class _AgentMessage(serializers.Serializer):
    id = serializers.CharField(max_length=inputs.ID_MAX, trim_whitespace=False)
    contentType = serializers.CharField(
        max_length=inputs.TYPE_MAX, required=False, allow_null=True, allow_blank=True
    )
    content = serializers.DictField()
    agent = _Agent(required=False, allow_null=True)


class EventSerializer(serializers.Serializer):
    """One event of the generic protocol (README: "Contact center → bridge")."""

    id = serializers.CharField(max_length=inputs.ID_MAX, trim_whitespace=False)
    type = serializers.CharField(max_length=inputs.TYPE_MAX)
    interactionId = serializers.CharField(
        max_length=inputs.ID_MAX, required=False, allow_null=True, allow_blank=True, trim_whitespace=False
    )
    message = _AgentMessage(required=False, allow_null=True)
    typing = serializers.JSONField(required=False, allow_null=True)


def _flag(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)
