"""Genesys Cloud Open Messaging (kind `genesys`): one Open Messaging conversation per handover.

- Open: Genesys has no "create interaction" call; a conversation starts with the first inbound open
  message. Each handover uses its own customer id in `channel.from.id` (the handover id, which is
  also our interaction id), so a handover always starts a fresh Genesys conversation and agent
  replies (addressed to `channel.to.id`) map straight back to it. The bot history goes first, as one
  transcript message (`history: transcript`, default) or as the messages in order
  (`history: messages`); that first message carries the tags, metadata and handover facts in
  `channel.metadata.customAttributes`, which Genesys turns into participant data for Architect.
- Customer messages: inbound open messages (`messageId` = the Infobip message id); media as a link.
- Agent replies: the integration's outbound webhook posts NormalizedMessages, signed with
  X-Hub-Signature-256 = "sha256=" + base64(HMAC-SHA256(secret, raw body)). Text and attachments
  become agent messages, Typing events typing events. Genesys fails the whole chat on a non-2xx
  answer, so a message that later cannot reach the customer is reported back with a Failed receipt.
- Close: the Open Messaging webhook sends no "agent ended" event. Without a public inbound channel
  the bridge polls (capabilities.always_poll): per cycle at most `poll_batch` open conversations,
  rotating, read with GET /api/v2/conversations/messages/{id}; ended when the customer participant
  is disconnected, or when an agent took part and no agent, ACD or flow participant is left.
- Auth: OAuth client credentials; the token is cached per process (keyed by login host, client id
  and a digest of the secret) and renewed before it expires or when an API call answers 401.
  Requests per token are kept under Genesys' default 300 per minute; 429 is retried with Retry-After.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from bridge import http, media
from bridge.connectors.base import (
    Capabilities,
    Connector,
    Field,
    load_webhook_json,
    vendor_time,
)
from bridge.exceptions import (
    ConfigurationError,
    InteractionOverError,
    NotFoundError,
    PermanentError,
    SignatureError,
    TransientError,
    UpstreamAuthError,
    UpstreamError,
    WebhookError,
)
from bridge.types import (
    AgentMessage,
    CcaasEvent,
    CloseReason,
    Direction,
    EventType,
    HandoverContext,
    InfobipMessage,
    InteractionRef,
    OpenResult,
    PollResult,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"
# Reference: https://developer.genesys.cloud/organization/organization/limits (300 requests per
# minute per client-credentials token by default; raisable by a support case).
DEFAULT_RATE_LIMIT = 300
DEFAULT_POLL_BATCH = 20
TEXT_LIMIT = 4000  # Open messaging text limit shown to agents ("Open API: 4000" characters)
TEXT_UNIT = "utf16"  # counted so that a part fits however Genesys counts characters
TOKEN_RENEW_MARGIN = 300.0  # renew a token this many seconds (at most half its life) before expiry
RATE_WAIT_SECONDS = 2.0  # wait this long for a free slot, else retry later
ENDED_STATES = frozenset({"disconnected", "terminated"})
HUMAN_PURPOSES = frozenset({"agent", "user"})
ROUTING_PURPOSES = frozenset({"agent", "user", "acd", "workflow", "ivr"})
CLOSE_NOTES = {
    CloseReason.CONVERSATION_CLOSED: "The customer's conversation was closed on their side.",
    CloseReason.IDLE_TIMEOUT: "The conversation was closed after a long time without messages.",
    CloseReason.OPERATOR: "An operator closed this conversation.",
}


# --- per-process token cache and rate limit --------------------------------------------------------
class _TokenCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: dict[tuple[str, str, str], tuple[str, float, float]] = {}

    def get(self, key: tuple[str, str, str], now: float) -> str | None:
        with self.lock:
            entry = self.tokens.get(key)
        if entry is None:
            return None
        token, issued, expires = entry
        margin = min(TOKEN_RENEW_MARGIN, (expires - issued) / 2)
        return token if now < expires - margin else None

    def put(self, key: tuple[str, str, str], token: str, issued: float, expires: float) -> None:
        with self.lock:
            self.tokens[key] = (token, issued, expires)

    def drop(self, key: tuple[str, str, str], token: str | None = None) -> None:
        with self.lock:
            if token is None or (self.tokens.get(key) or ("",))[0] == token:
                self.tokens.pop(key, None)

    def clear(self) -> None:
        with self.lock:
            self.tokens.clear()


class _RateLimit:
    """A sliding one-minute window of request times per token key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.windows: dict[tuple[str, str], deque[float]] = {}

    def take(self, key: tuple[str, str], per_minute: int, *, service: str) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                window = self.windows.setdefault(key, deque())
                while window and now - window[0] >= 60:
                    window.popleft()
                if len(window) < per_minute:
                    window.append(now)
                    return
                wait = 60 - (now - window[0])
            if wait > RATE_WAIT_SECONDS:
                raise TransientError(
                    f"{service}: {per_minute} requests in the last minute (Genesys' per-token limit); "
                    f"next slot in {wait:.0f}s",
                    status=429,
                    retry_after=wait,
                    service=service,
                )
            time.sleep(wait)

    def clear(self) -> None:
        with self.lock:
            self.windows.clear()


TOKENS = _TokenCache()
RATE = _RateLimit()


# --- helpers ---------------------------------------------------------------------------------------
def iso(value: datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def signature(secret: str, body: bytes) -> str:
    """X-Hub-Signature-256 as Genesys computes it: "sha256=" + base64 HMAC-SHA256 of the raw body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def _attribute(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# What Genesys says (in a 4xx, 409 Conflict included) when a conversation takes no more messages.
SESSION_OVER_HINTS = (
    "read-only",
    "read only",
    "readonly",
    "session is closed",
    "conversation ended",
    "disconnected",
)


def _session_over(exc: UpstreamError) -> bool:
    if isinstance(exc, UpstreamAuthError) or exc.status is None:
        return False
    body = (exc.body or "").lower()
    return 400 <= exc.status < 500 and any(hint in body for hint in SESSION_OVER_HINTS)


def conversation_ended(conversation: Mapping[str, Any]) -> bool:
    """Whether a MessageConversation has ended on the agents' side.

    Ended: the customer participant is disconnected (the whole conversation ended), or a human agent
    took part and no agent, ACD queue or flow participant is still active (a transfer keeps an ACD
    or agent participant active, so it does not count as an end)."""
    participants = [p for p in conversation.get("participants") or [] if isinstance(p, dict)]

    def active(participant: Mapping[str, Any]) -> bool:
        return str(participant.get("state") or "").lower() not in ENDED_STATES and not participant.get(
            "endTime"
        )

    customers = [p for p in participants if p.get("purpose") == "customer"]
    if customers and not any(active(p) for p in customers):
        return True
    humans = [p for p in participants if p.get("purpose") in HUMAN_PURPOSES]
    routing = [p for p in participants if p.get("purpose") in ROUTING_PURPOSES]
    return bool(humans) and not any(active(p) for p in routing)


class GenesysConnector(Connector):
    kind = "genesys"
    label = "Genesys Cloud (Open Messaging)"
    # Open Messaging takes at most 4,000 characters a text; counted as UTF-16 code units, which is
    # within the limit however Genesys counts (an emoji is one character but two code units).
    capabilities = Capabilities(
        webhook=True,
        poll=False,
        attachments=True,
        typing=True,
        always_poll=True,
        text_limit=TEXT_LIMIT,
        text_unit=TEXT_UNIT,
    )
    config_fields = (
        Field("region", "Your Genesys Cloud region's domain, e.g. mypurecloud.com or mypurecloud.de"),
        Field("base_url", "API host instead of https://api.<region> (tests, proxies)", kind="url"),
        Field("login_url", "Login host instead of https://login.<region>", kind="url"),
        Field("integration_id", "The Open Messaging integration's id (Admin > Message > Platforms)", True),
        Field(
            "history",
            "transcript: the bot history as one first message; messages: each message in order",
            False,
            "choice",
            ("transcript", "messages"),
            "transcript",
        ),
        Field("poll_batch", "Conversations checked for an end per poll cycle (default 20)", kind="int"),
        Field(
            "rate_limit_per_minute",
            "Requests per minute per token this process allows itself (default 300, Genesys' default)",
            kind="int",
        ),
    )
    credential_fields = (
        Field("client_id", "OAuth client (Client Credentials grant) id", True),
        Field("client_secret", "OAuth client secret", True),
        Field(
            "webhook_secret", "The integration's Outbound Notification Webhook Signature Secret Token", True
        ),
    )

    @classmethod
    def validate(cls, config: Mapping[str, Any], credentials: Mapping[str, Any]) -> list[str]:
        problems = super().validate(config, credentials)
        if not config.get("region") and not (config.get("base_url") and config.get("login_url")):
            problems.append("config: 'region' is required (or both 'base_url' and 'login_url')")
        if config.get("mode") == "poll":
            problems.append("config: genesys agent replies arrive by webhook only; use mode 'webhook'")
        return problems

    @classmethod
    def default_interaction_url(cls, config: Mapping[str, Any], ref: InteractionRef) -> str | None:
        # The interaction details page of Genesys Cloud's web app (apps.<region>), which needs the
        # Genesys conversation id: known once Genesys has answered the first inbound message. Config
        # `app_url` overrides the host. Reference: https://help.mypurecloud.com/articles/view-interactions-details/
        conversation = str((ref.data or {}).get("conversation_id") or "")
        if not conversation:
            return None
        app = str(config.get("app_url") or "").rstrip("/")
        if not app:
            region = str(config.get("region") or "").strip().strip("/")
            region = region.removeprefix("https://").removeprefix("api.").removeprefix("login.")
            if not region and config.get("base_url"):
                region = str(config["base_url"]).rstrip("/").removeprefix("https://").removeprefix("api.")
            if not region:
                return None
            app = f"https://apps.{region}"
        return f"{app}/directory/#/analytics/interactions/{quote(conversation, safe='')}/admin"

    # --- plumbing -----------------------------------------------------------------------------------
    @property
    def _service(self) -> str:
        return f"endpoint {self.endpoint.slug} (Genesys Cloud)"

    def _host(self, key: str, prefix: str) -> str:
        if self.config.get(key):
            return str(self.config[key]).rstrip("/")
        region = str(self.require(self.config, "region")).strip().strip("/")
        region = region.removeprefix("https://").removeprefix("api.").removeprefix("login.")
        return f"https://{prefix}.{region}"

    @property
    def api_url(self) -> str:
        return self._host("base_url", "api")

    @property
    def login_url(self) -> str:
        return self._host("login_url", "login")

    @property
    def integration_id(self) -> str:
        return str(self.require(self.config, "integration_id"))

    def _token_key(self) -> tuple[str, str, str]:
        secret = str(self.require(self.credentials, "client_secret"))
        digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
        return (self.login_url, str(self.require(self.credentials, "client_id")), digest)

    def _rate_limit(self) -> int:
        try:
            return max(1, int(self.config.get("rate_limit_per_minute") or DEFAULT_RATE_LIMIT))
        except (TypeError, ValueError):
            return DEFAULT_RATE_LIMIT

    def _token(self) -> str:
        key = self._token_key()
        token = TOKENS.get(key, time.time())
        if token:
            return token
        # Reference: https://developer.genesys.cloud/authorization/platform-auth/use-client-credentials
        issued = time.time()
        try:
            response = http.request(
                self.http_session(),
                "POST",
                f"{self.login_url}/oauth/token",
                service=self._service,
                check_url=True,
                data={"grant_type": "client_credentials"},
                auth=(key[1], str(self.credentials["client_secret"])),
            )
        except UpstreamError as exc:
            if exc.status in (400, 401, 403):  # invalid_client is a 400 or 401
                raise UpstreamAuthError(
                    f"{self._service}: the OAuth client was refused (HTTP {exc.status}): {exc.body}",
                    status=exc.status,
                    body=exc.body,
                    service=self._service,
                ) from None
            raise
        data = http.json_or_error(response, service=self._service)
        token = (data or {}).get("access_token") if isinstance(data, dict) else None
        if not token:
            raise UpstreamError(
                f"{self._service}: the token answer has no access_token", service=self._service
            )
        lifetime = float(data.get("expires_in") or 86400)
        TOKENS.put(key, str(token), issued, issued + lifetime)
        logger.info("%s: new access token, valid %.0fs", self._service, lifetime)
        return str(token)

    def _call(self, method: str, path: str, body: Any = None, *, retry_auth: bool = True) -> Any:
        token = self._token()
        key = self._token_key()
        RATE.take(key[:2], self._rate_limit(), service=self._service)
        try:
            response = http.request(
                self.http_session(),
                method,
                f"{self.api_url}{path}",
                service=self._service,
                check_url=True,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
        except UpstreamAuthError as exc:
            if exc.status == 401 and retry_auth:
                # A revoked or expired token: fetch a new one once, then give up.
                TOKENS.drop(key, token)
                return self._call(method, path, body, retry_auth=False)
            raise
        return http.json_body(response, service=self._service, empty={})

    # --- Bridge -> Genesys --------------------------------------------------------------------------
    def _inbound(
        self,
        customer_id: str,
        nickname: str,
        message_id: str,
        when: datetime,
        text: str,
        attributes: Mapping[str, str] | None = None,
    ) -> dict:
        channel: dict[str, Any] = {
            "messageId": message_id,
            "from": {"id": customer_id, "idType": "Opaque", "nickname": nickname[:100]},
            "time": iso(when),
        }
        if attributes:
            channel["metadata"] = {"customAttributes": dict(attributes)}
        if media.measure(text, TEXT_UNIT) > TEXT_LIMIT:
            # Never cut: the bridge splits texts before they get here, so this is a bug to see.
            raise PermanentError(
                f"{self._service}: a text of {media.measure(text, TEXT_UNIT)} UTF-16 units is over "
                f"Genesys' {TEXT_LIMIT}; it was not sent rather than cut",
                service=self._service,
            )
        body = {"channel": channel, "text": text}
        # Reference: https://developer.genesys.cloud/commdigital/digital/openmessaging/inboundMessages
        path = f"/api/v2/conversations/messages/{quote(self.integration_id)}/inbound/open/message"
        data = self._call("POST", path, body)
        return data if isinstance(data, dict) else {}

    def _attributes(self, ctx: HandoverContext) -> dict[str, str]:
        attributes = {
            **{str(k): _attribute(v) for k, v in ctx.context.items() if v is not None},
            **{str(k): _attribute(v) for k, v in ctx.metadata.items() if v is not None},
            "infobipConversationId": ctx.conversation_id,
            "handoverId": ctx.handover_id,
            "channel": ctx.channel,
            "customerAddress": ctx.customer.address,
            "priority": ctx.priority,
            "tags": ",".join(ctx.tags),
        }
        if ctx.queue:
            attributes["queue"] = ctx.queue
        if ctx.customer.display_name:
            attributes["customerName"] = ctx.customer.display_name
        return attributes

    @staticmethod
    def _who(message: InfobipMessage, customer: str) -> str:
        if message.direction == Direction.INBOUND:
            return customer
        return {"AGENT": "Agent", "SYSTEM": "System"}.get(message.author_type.value, "Bot")

    def _line(self, message: InfobipMessage, customer: str) -> str:
        when = message.created_at.astimezone(UTC).strftime("%H:%M")
        text = media.render_text(message.content_type, message.content)
        return f"[{when} UTC] {self._who(message, customer)}: {text}"

    def _history_messages(self, ctx: HandoverContext) -> list[tuple[str, datetime, str]]:
        """(message id, time, text) of what goes first, per the `history` setting."""
        if not ctx.history:
            return [(f"handover:{ctx.handover_id}", datetime.now(UTC), "The customer asks for an agent.")]
        if self.config.get("history") == "messages":
            found: list[tuple[str, datetime, str]] = []
            for m in ctx.history:
                text = media.render_text(m.content_type, m.content)
                if m.direction != Direction.INBOUND:
                    text = f"{self._who(m, '')}: {text}"
                pieces = media.split_text(text, TEXT_LIMIT, TEXT_UNIT)
                found += [
                    (m.id if n == 0 else f"{m.id}:{n + 1}", m.created_at, piece)
                    for n, piece in enumerate(pieces)
                ]
            return found
        customer = ctx.customer.display_name or "Customer"
        lines = [f"Conversation with the bot before the handover ({ctx.channel}):"]
        lines += [self._line(m, customer) for m in ctx.history]
        parts: list[str] = []
        for line in lines:
            if parts and media.measure(parts[-1] + "\n" + line, TEXT_UNIT) <= TEXT_LIMIT:
                parts[-1] += "\n" + line
            else:
                parts.extend(media.split_text(line, TEXT_LIMIT, TEXT_UNIT))
        when = ctx.history[-1].created_at
        return [(f"transcript:{ctx.handover_id}:{n}", when, text) for n, text in enumerate(parts)]

    def open_interaction(self, ctx: HandoverContext) -> OpenResult:
        customer_id = ctx.handover_id
        nickname = ctx.customer.display_name or ctx.customer.address
        attributes = self._attributes(ctx)
        first: dict = {}
        for index, (message_id, when, text) in enumerate(self._history_messages(ctx)):
            answer = self._inbound(
                customer_id, nickname, message_id, when, text, attributes if index == 0 else None
            )
            first = first or answer
        data: dict[str, Any] = {"customer_id": customer_id}
        if first.get("id"):
            data["first_message_id"] = str(first["id"])
        conversation_id = first.get("conversationId") or self._resolve(data.get("first_message_id"))
        if conversation_id:
            data["conversation_id"] = str(conversation_id)
        return OpenResult(interaction_id=customer_id, data=data)

    def _resolve(self, message_id: str | None) -> str | None:
        """The conversation id of one of our inbound messages, or None while Genesys does not know it."""
        if not message_id:
            return None
        try:
            # Reference: https://developer.genesys.cloud/devapps/api-explorer#get-api-v2-conversations-messages--messageId--details
            data = self._call("GET", f"/api/v2/conversations/messages/{quote(message_id)}/details")
        except (NotFoundError, TransientError) as exc:
            logger.info("%s: conversation of message %s not known yet: %s", self._service, message_id, exc)
            return None
        value = (data or {}).get("conversationId") if isinstance(data, dict) else None
        return str(value) if value else None

    def send_customer_message(self, ref: InteractionRef, message: InfobipMessage) -> None:
        try:
            self._inbound(
                ref.interaction_id,
                ref.customer.display_name or ref.customer.address,
                message.id,
                message.created_at,
                media.render_text(message.content_type, message.content),
            )
        except (PermanentError, TransientError) as exc:
            if _session_over(exc):
                raise InteractionOverError(
                    f"{self._service}: the Genesys conversation of {ref.interaction_id} is over "
                    f"(HTTP {exc.status}: {exc.body[:200]})",
                    status=exc.status,
                    body=exc.body,
                    service=self._service,
                ) from exc
            raise

    def _conversation_id(self, ref: InteractionRef) -> str | None:
        return ref.data.get("conversation_id") or self._resolve(ref.data.get("first_message_id"))

    def close_interaction(self, ref: InteractionRef, reason: CloseReason) -> None:
        conversation_id = self._conversation_id(ref)
        if not conversation_id:
            raise TransientError(
                f"{self._service}: the Genesys conversation of {ref.interaction_id} is not known yet",
                service=self._service,
            )
        path = f"/api/v2/conversations/messages/{quote(conversation_id)}"
        try:
            # Reference: https://developer.genesys.cloud/devapps/api-explorer#get-api-v2-conversations-messages--conversationId-
            if conversation_ended(self._call("GET", path) or {}):
                return  # a message now would start a new conversation
            note = CLOSE_NOTES.get(reason, "The conversation was closed.")
            self._inbound(
                ref.interaction_id,
                ref.customer.display_name or ref.customer.address,
                f"close:{ref.handover_id}",
                datetime.now(UTC),
                note,
            )
            # Reference: https://developer.genesys.cloud/devapps/api-explorer#patch-api-v2-conversations-messages--conversationId-
            self._call("PATCH", path, {"state": "disconnected"})
        except NotFoundError:
            logger.info("%s: conversation %s no longer exists", self._service, conversation_id)

    def acknowledge_failed_delivery(self, ref: InteractionRef, message_id: str, error: str) -> None:
        """Tell the agent an outbound message did not reach the customer: a Failed receipt."""
        body = {
            "id": message_id.split(":", 1)[0],
            "channel": {"to": {"id": ref.interaction_id, "idType": "Opaque"}, "time": iso(datetime.now(UTC))},
            "status": "Failed",
            "direction": "Outbound",
            "isFinalReceipt": True,
            "reasons": [{"code": "GeneralError", "message": error[:500]}],
        }
        # Reference: https://developer.genesys.cloud/commdigital/digital/openmessaging/inboundReceiptMessages
        self._call(
            "POST", f"/api/v2/conversations/messages/{quote(self.integration_id)}/inbound/open/receipt", body
        )

    # --- Genesys -> Bridge --------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> None:
        # Reference: https://developer.genesys.cloud/commdigital/digital/openmessaging/validate
        secret = self.credentials.get("webhook_secret")
        if not secret:
            raise ConfigurationError(f"endpoint {self.endpoint.slug}: 'webhook_secret' is not configured")
        given = (headers.get(SIGNATURE_HEADER) or "").strip()
        if not given:
            raise SignatureError(f"missing {SIGNATURE_HEADER}")
        if not hmac.compare_digest(signature(str(secret), body).encode(), given.encode()):
            raise SignatureError(f"{SIGNATURE_HEADER} does not match the webhook secret")

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[CcaasEvent]:
        data = load_webhook_json(body)
        if not isinstance(data, dict) or not isinstance(data.get("channel"), dict):
            raise WebhookError("not an Open Messaging NormalizedMessage (no channel)")
        channel = data["channel"]
        kind = str(data.get("type") or "")
        to = str((channel.get("to") or {}).get("id") or "")
        message_id = str(data.get("id") or channel.get("messageId") or "")
        if not message_id:
            message_id = "sha256:" + hashlib.sha256(body).hexdigest()
        unknown = CcaasEvent(
            id=f"{kind or 'message'}:{message_id}:{channel.get('time', '')}",
            type=EventType.UNKNOWN,
            interaction_id=to,
            raw=data,
            original_type=kind or "unknown",
        )
        if str(data.get("direction") or "Outbound") != "Outbound" or not to:
            return [unknown]
        if kind == "Event":
            typing = [
                e for e in data.get("events") or [] if isinstance(e, dict) and e.get("eventType") == "Typing"
            ]
            if not typing:
                return [unknown]
            return [
                CcaasEvent(
                    id=f"typing:{message_id}:{channel.get('time', '')}",
                    type=EventType.TYPING,
                    interaction_id=to,
                    raw=data,
                    original_type="Typing",
                )
            ]
        if kind not in ("Text", "Structured"):
            return [unknown]  # Receipts and what Genesys may add later: stored, no action
        return self._agent_events(data, message_id, to) or [unknown]

    def _agent_events(self, data: dict, message_id: str, to: str) -> list[CcaasEvent]:
        sender = (data.get("channel") or {}).get("from") or {}
        agent_id = str(sender.get("id")) if sender.get("id") else None
        agent_name = sender.get("nickname") or None
        parts: list[tuple[str, dict]] = []
        text = data.get("text")
        if isinstance(text, str) and text.strip():
            parts.append(("TEXT", {"text": text}))
        for item in data.get("content") or []:
            if not isinstance(item, dict):
                continue
            attachment = item.get("attachment") or {}
            if item.get("contentType") == "Attachment" and attachment.get("url"):
                parts.append(
                    media.agent_attachment(
                        str(attachment["url"]),
                        mime_type=str(attachment.get("mime") or ""),
                        filename=str(attachment.get("filename") or ""),
                        caption=str(attachment.get("text") or ""),
                    )
                )
            elif isinstance(item.get("text"), dict) and item["text"].get("body"):
                parts.append(("TEXT", {"text": str(item["text"]["body"])}))
        if not parts:
            # Nothing to show (an empty text): recorded and skipped visibly, never an empty message.
            parts.append(("TEXT", {"text": ""}))
        events = []
        for index, (content_type, content) in enumerate(parts):
            part_id = message_id if index == 0 else f"{message_id}:{index}"
            events.append(
                CcaasEvent(
                    id=part_id,
                    type=EventType.AGENT_MESSAGE,
                    interaction_id=to,
                    message=AgentMessage(
                        id=part_id,
                        content_type=content_type,
                        content=content,
                        agent_id=agent_id,
                        agent_name=agent_name,
                        # Genesys gives no sequence; its time of the message orders the replies.
                        sent_at=vendor_time((data.get("channel") or {}).get("time")),
                    ),
                    raw=data,
                    original_type=str(data.get("type")),
                )
            )
        return events

    # --- noticing the end ---------------------------------------------------------------------------
    def _poll_batch(self) -> int:
        try:
            return max(1, int(self.config.get("poll_batch") or DEFAULT_POLL_BATCH))
        except (TypeError, ValueError):
            return DEFAULT_POLL_BATCH

    def poll(self, cursor: str, open_interactions: list[InteractionRef]) -> PollResult:
        """Check at most `poll_batch` open conversations for an end, rotating through all of them.

        Cursor: {"after": the last interaction id checked, "conversations": {interaction id:
        Genesys conversation id}} (ids looked up here are kept, so each is looked up once)."""
        try:
            state = json.loads(cursor) if cursor else {}
        except ValueError:
            state = {}
        known: dict[str, str] = dict(state.get("conversations") or {})
        after = str(state.get("after") or "")
        refs = sorted((r for r in open_interactions if r.interaction_id), key=lambda r: r.interaction_id)
        start = next((i for i, r in enumerate(refs) if r.interaction_id > after), 0)
        batch = (refs[start:] + refs[:start])[: self._poll_batch()]
        events: list[CcaasEvent] = []
        for ref in batch:
            conversation_id = ref.data.get("conversation_id") or known.get(ref.interaction_id)
            if not conversation_id:
                conversation_id = self._resolve(ref.data.get("first_message_id"))
                if not conversation_id:
                    continue
                known[ref.interaction_id] = conversation_id
            try:
                # Reference: https://developer.genesys.cloud/devapps/api-explorer#get-api-v2-conversations-messages--conversationId-
                conversation = self._call("GET", f"/api/v2/conversations/messages/{quote(conversation_id)}")
            except NotFoundError:
                logger.warning("%s: conversation %s not found", self._service, conversation_id)
                continue
            if isinstance(conversation, dict) and conversation_ended(conversation):
                events.append(
                    CcaasEvent(
                        id=f"ended:{conversation_id}",
                        type=EventType.CLOSED,
                        interaction_id=ref.interaction_id,
                        raw={
                            "id": conversation_id,
                            "participants": [
                                {k: p.get(k) for k in ("purpose", "state", "endTime", "disconnectType")}
                                for p in conversation.get("participants") or []
                                if isinstance(p, dict)
                            ],
                        },
                        original_type="conversation_ended",
                    )
                )
        open_ids = {r.interaction_id for r in refs}
        new_cursor = {
            "after": batch[-1].interaction_id if batch and len(batch) < len(refs) else "",
            "conversations": {k: v for k, v in known.items() if k in open_ids},
        }
        return PollResult(events=events, cursor=json.dumps(new_cursor, sort_keys=True))

    # --- operators ----------------------------------------------------------------------------------
    def check_connection(self) -> str:
        # Reference: https://developer.genesys.cloud/devapps/api-explorer#get-api-v2-conversations-messaging-integrations-open--integrationId-
        data = self._call(
            "GET", f"/api/v2/conversations/messaging/integrations/open/{quote(self.integration_id)}"
        )
        data = data if isinstance(data, dict) else {}
        hook = data.get("outboundNotificationWebhookUrl") or ""
        ours = self.endpoint.webhook_url()
        note = "" if hook == ours else f"; its webhook URL is {hook or 'not set'}, expected {ours}"
        return f"integration {data.get('name') or self.integration_id}{note}"

    def webhook_instructions(self) -> str:
        return (
            "In Genesys Cloud, Admin > Message > Platforms > Open Messaging (your integration): set "
            f"Outbound Notification Webhook URL to {self.endpoint.webhook_url()} and the Outbound "
            "Notification Webhook Signature Secret Token to the endpoint's webhook_secret. The webhook "
            "sends no 'agent ended' event; the bridge notices ends by polling the conversation "
            "(every BRIDGE_POLL_INTERVAL_SECONDS), so the OAuth client needs the Conversation > "
            "Message > View permission as well as Open Messaging."
        )
