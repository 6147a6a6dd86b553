"""Chatwoot (kind `chatwoot`): one conversation in an API-channel inbox per handover.

- Open: find the contact by identifier (else create it in the inbox), get its contact-inbox source
  id, create the conversation (status open) with custom_attributes from the Infobip metadata and
  labels from the tags. The history follows in order: customer turns as `incoming` messages, bot
  and agent turns as private notes ("Bot: ..."), so nothing of the history is sent to the customer
  again and nothing of it comes back as an agent reply.
- Customer messages: `incoming` messages (media as links).
- Agent replies: `message_created` webhooks with message_type outgoing, not private, sent by a user
  (a human agent); signed with X-Chatwoot-Signature, which can be switched off because of
  chatwoot/chatwoot#13809 (the secret shown is not always the signing key). Polling reads
  GET .../messages?after=<id> per conversation.
- Close: `conversation_status_changed` to resolved closes the Infobip conversation; a close on our
  side resolves the Chatwoot conversation after a private note saying why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from bridge import http
from bridge.connectors.base import (
    Capabilities,
    Connector,
    Field,
    load_webhook_json,
    vendor_sequence,
    vendor_time,
)
from bridge.exceptions import (
    ConfigurationError,
    InteractionOverError,
    NotFoundError,
    PermanentError,
    SignatureError,
    UpstreamAuthError,
    UpstreamError,
    WebhookError,
)
from bridge.media import render_text
from bridge.types import (
    AgentMessage,
    AuthorType,
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

SIGNATURE_HEADER = "X-Chatwoot-Signature"
TIMESTAMP_HEADER = "X-Chatwoot-Timestamp"
DELIVERY_HEADER = "X-Chatwoot-Delivery"
MAX_SKEW_SECONDS = 300
KEY_MISMATCH_HINT = (
    "if the secret is right, Chatwoot may be signing with a different key than the one it shows "
    "(chatwoot/chatwoot#13809); set config require_signature=false to accept unsigned webhooks"
)
MESSAGES_PER_PAGE = 100  # Get Messages with `after` answers up to 100
CONTACTS_PER_PAGE = 15  # Search Contacts' page size
MAX_SEARCH_PAGES = 50
MAX_MESSAGES_PER_POLL = 5000  # a guard; the cursor keeps the place, so the rest follows next cycle
# In the REST API message_type is a number; in webhooks a word.
MESSAGE_TYPES = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}


def message_text(content_type: str, content: dict[str, Any]) -> str:
    """Text of a message; media and rich content read as text with the link (attachments=False)."""
    return render_text(content_type, content)


def _flag(value: Any, default: bool = True) -> bool:
    if value in (None, ""):
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off")
    return bool(value)


def _label(tag: str) -> str:
    """Chatwoot labels are lowercase words."""
    return str(tag).strip().lower().replace(" ", "_")


class ChatwootConnector(Connector):
    kind = "chatwoot"
    label = "Chatwoot"
    # Chatwoot validates message content to at most 150,000 characters (Message model).
    capabilities = Capabilities(
        webhook=True,
        poll=True,
        attachments=False,
        typing=True,
        tags=True,
        text_limit=150000,
        text_unit="characters",
    )
    config_fields = (
        Field("base_url", "Your Chatwoot, e.g. https://app.chatwoot.com", True, "url"),
        Field("account_id", "The account id (in the dashboard URL)", True, "int"),
        Field("inbox_id", "The API-channel inbox the conversations go to", True, "int"),
        Field(
            "mode",
            "webhook: Chatwoot calls us; poll: we read messages",
            False,
            "choice",
            ("webhook", "poll"),
            "webhook",
        ),
        Field(
            "require_signature",
            "Refuse unsigned or wrongly signed webhooks (default true; see chatwoot/chatwoot#13809)",
            kind="bool",
            default=True,
        ),
    )
    credential_fields = (
        Field("api_access_token", "An agent's or agent bot's access token (Profile settings)", True),
        Field("webhook_secret", "The webhook's secret, to check X-Chatwoot-Signature"),
    )

    @classmethod
    def validate(cls, config: Mapping[str, Any], credentials: Mapping[str, Any]) -> list[str]:
        problems = super().validate(config, credentials)
        if (
            config.get("mode", "webhook") == "webhook"
            and _flag(config.get("require_signature"))
            and not credentials.get("webhook_secret")
        ):
            problems.append(
                "credentials: 'webhook_secret' is required while require_signature is on (webhook mode)"
            )
        return problems

    def __init__(self, endpoint) -> None:
        super().__init__(endpoint)
        self.session = http.make_session()
        token = self.credentials.get("api_access_token")
        if token:
            # Reference: https://developers.chatwoot.com/api-reference/introduction (api_access_token header)
            self.session.headers["api_access_token"] = str(token)

    @classmethod
    def default_interaction_url(cls, config: Mapping[str, Any], ref: InteractionRef) -> str | None:
        # The dashboard's conversation page (the URL the Chatwoot UI itself shows), e.g.
        # https://app.chatwoot.com/app/accounts/1/conversations/42
        base = str(config.get("base_url") or "").rstrip("/")
        account = str(config.get("account_id") or "")
        if not base or not account.isdigit() or not str(ref.interaction_id).isdigit():
            return None
        return f"{base}/app/accounts/{account}/conversations/{ref.interaction_id}"

    # --- plumbing -----------------------------------------------------------------------------------
    @property
    def _service(self) -> str:
        return f"endpoint {self.endpoint.slug} (Chatwoot)"

    @property
    def account_url(self) -> str:
        base = str(self.require(self.config, "base_url")).rstrip("/")
        return f"{base}/api/v1/accounts/{int(self.require(self.config, 'account_id'))}"

    @property
    def inbox_id(self) -> int:
        return int(self.require(self.config, "inbox_id"))

    def _call(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> Any:
        if "api_access_token" not in self.session.headers:
            raise ConfigurationError(f"endpoint {self.endpoint.slug}: 'api_access_token' is not configured")
        url = path if path.startswith("http") else f"{self.account_url}{path}"
        response = http.request(
            self.session, method, url, service=self._service, check_url=True, json=body, params=params
        )
        return http.json_body(response, service=self._service, empty={})

    def update_tags(self, ref: InteractionRef, added: list[str], removed: list[str]) -> None:
        """Follow Infobip's tags with the conversation's labels; labels agents set are kept. Chatwoot
        replaces the whole label list, so the current one is read first."""
        path = f"/conversations/{int(ref.interaction_id)}/labels"
        # Reference: https://developers.chatwoot.com/api-reference/conversations/list-all-labels-of-a-conversation
        current = list((self._call("GET", path) or {}).get("payload") or [])
        drop = {_label(r) for r in removed}
        labels = [label for label in current if label not in drop]
        labels += [label for label in (_label(a) for a in added) if label and label not in labels]
        if labels != current:
            # Reference: https://developers.chatwoot.com/api-reference/conversations/add-labels
            self._call("POST", path, {"labels": labels})

    def _post_message(self, conversation_id: str, content: str, *, private: bool) -> int | None:
        body = {"content": content, "message_type": "outgoing" if private else "incoming", "private": private}
        # Reference: https://developers.chatwoot.com/api-reference/messages/create-new-message
        data = self._call("POST", f"/conversations/{int(conversation_id)}/messages", body)
        return data.get("id") if isinstance(data, dict) else None

    # --- Bridge -> Chatwoot -------------------------------------------------------------------------
    def _contact(self, ctx: HandoverContext) -> tuple[int, str]:
        """(contact id, contact-inbox source id) for the customer, created when unknown."""
        identifier = f"infobip:{ctx.channel.lower()}:{ctx.customer.address}"
        contact = self._find_contact(identifier)
        if contact is None:
            body: dict[str, Any] = {
                "inbox_id": self.inbox_id,
                "name": ctx.customer.display_name or ctx.customer.address,
                "identifier": identifier,
            }
            if ctx.channel.upper() == "EMAIL":
                body["email"] = ctx.customer.address
            elif ctx.customer.address.lstrip("+").isdigit():
                body["phone_number"] = f"+{ctx.customer.address.lstrip('+')}"
            # Reference: https://developers.chatwoot.com/api-reference/contacts/create-contact
            data = self._call("POST", "/contacts", body)
            payload = (data or {}).get("payload") or {}
            contact = payload.get("contact") or {}
            source_id = (payload.get("contact_inbox") or {}).get("source_id")
            if contact.get("id") and source_id:
                return int(contact["id"]), str(source_id)
            if not contact.get("id"):
                raise UpstreamError(
                    f"{self._service}: contact create answered without an id", service=self._service
                )
        # Reference: https://developers.chatwoot.com/api-reference/contacts/create-contact-inbox
        inbox = self._call(
            "POST", f"/contacts/{int(contact['id'])}/contact_inboxes", {"inbox_id": self.inbox_id}
        )
        source_id = (inbox or {}).get("source_id")
        if not source_id:
            raise UpstreamError(
                f"{self._service}: contact inbox answered without a source_id", service=self._service
            )
        return int(contact["id"]), str(source_id)

    def _find_contact(self, identifier: str) -> dict | None:
        """The contact whose identifier is exactly `identifier`. Search Contacts matches names,
        e-mails, phone numbers and identifiers by substring, 15 a page, so every page is read until
        the exact one is found: a first page of near matches must never lead to a second contact."""
        for page in range(1, MAX_SEARCH_PAGES + 1):
            # Reference: https://developers.chatwoot.com/api-reference/contacts/search-contacts
            found = self._call("GET", "/contacts/search", params={"q": identifier, "page": page})
            items = [c for c in (found or {}).get("payload") or [] if isinstance(c, dict)]
            contact = next((c for c in items if c.get("identifier") == identifier), None)
            if contact is not None:
                return contact
            count = ((found or {}).get("meta") or {}).get("count")
            if len(items) < CONTACTS_PER_PAGE or (
                isinstance(count, int) and page * CONTACTS_PER_PAGE >= count
            ):
                return None
        return None

    def _existing_conversation(self, contact_id: int, conversation_id: str) -> dict | None:
        """An unresolved conversation already opened for this Infobip conversation (a retried open)."""
        # Reference: https://developers.chatwoot.com/api-reference/contacts/contact-conversations
        data = self._call("GET", f"/contacts/{contact_id}/conversations")
        for item in (data or {}).get("payload") or []:
            attributes = item.get("custom_attributes") or {}
            if (
                attributes.get("infobip_conversation_id") == conversation_id
                and item.get("status") != "resolved"
            ):
                return item
        return None

    def open_interaction(self, ctx: HandoverContext) -> OpenResult:
        contact_id, source_id = self._contact(ctx)
        existing = self._existing_conversation(contact_id, ctx.conversation_id)
        already: set[str] = set()
        if existing:
            conversation_id = str(existing["id"])
            already = {str(m.get("content")) for m in self._messages_after(conversation_id, 0)}
        else:
            custom = {
                "infobip_conversation_id": ctx.conversation_id,
                "infobip_handover_id": ctx.handover_id,
                "channel": ctx.channel,
                "priority": ctx.priority,
                **{k: v for k, v in ctx.metadata.items() if isinstance(v, str | int | float | bool)},
            }
            body = {
                "source_id": source_id,
                "inbox_id": self.inbox_id,
                "contact_id": contact_id,
                "status": "open",
                "custom_attributes": custom,
                "additional_attributes": {"infobip_queue": ctx.queue} if ctx.queue else {},
            }
            # Reference: https://developers.chatwoot.com/api-reference/conversations/create-new-conversation
            data = self._call("POST", "/conversations", body)
            if not isinstance(data, dict) or not data.get("id"):
                raise UpstreamError(
                    f"{self._service}: conversation create answered without an id", service=self._service
                )
            conversation_id = str(data["id"])
            if ctx.tags:
                # Reference: https://developers.chatwoot.com/api-reference/conversations/add-labels
                labels = [_label(t) for t in ctx.tags]
                self._call("POST", f"/conversations/{int(conversation_id)}/labels", {"labels": labels})
        own: list[int] = []
        for message in ctx.history:
            text = message_text(message.content_type, message.content)
            if message.direction == Direction.INBOUND:
                content, private = text, False
            else:
                who = "Bot" if message.author_type == AuthorType.BOT else message.author_type.value.title()
                when = message.created_at.astimezone(UTC).strftime("%H:%M")
                content, private = f"{who} ({when} UTC, before the handover): {text}", True
            if content in already:
                continue
            message_id = self._post_message(conversation_id, content, private=private)
            if message_id:
                own.append(int(message_id))
        return OpenResult(
            interaction_id=conversation_id,
            data={"contact_id": contact_id, "source_id": source_id, "history_message_ids": own},
        )

    def send_customer_message(self, ref: InteractionRef, message: InfobipMessage) -> list[str] | None:
        try:
            message_id = self._post_message(
                ref.interaction_id, message_text(message.content_type, message.content), private=False
            )
        except PermanentError as exc:
            self._raise_if_over(ref, exc)
            raise
        return [str(message_id)] if message_id else None

    def _raise_if_over(self, ref: InteractionRef, exc: PermanentError) -> None:
        """InteractionOverError when a refused message met a conversation that is gone (404) or
        resolved (a 422, checked with Conversation Details)."""
        if isinstance(exc, UpstreamAuthError) or exc.status not in (404, 422):
            return
        state = "gone (404)"
        if exc.status == 422:
            try:
                # Reference: https://developers.chatwoot.com/api-reference/conversations/conversation-details
                details = self._call("GET", f"/conversations/{int(ref.interaction_id)}")
            except NotFoundError:
                details = None
            if details is not None:
                if (details or {}).get("status") != "resolved":
                    return
                state = "resolved"
        raise InteractionOverError(
            f"{self._service}: conversation {ref.interaction_id} is {state} and takes no more messages",
            status=exc.status,
            body=exc.body,
            service=self._service,
        ) from exc

    def close_interaction(self, ref: InteractionRef, reason: CloseReason) -> None:
        why = {
            CloseReason.CONVERSATION_CLOSED: "the conversation was closed on the customer's side",
            CloseReason.IDLE_TIMEOUT: "the conversation was idle too long",
            CloseReason.OPERATOR: "an operator closed the handover",
        }.get(reason, reason.value)
        try:
            self._post_message(ref.interaction_id, f"Handover closed by the bridge: {why}.", private=True)
        except PermanentError as exc:
            self._raise_if_over(ref, exc)
            raise
        # Reference: https://developers.chatwoot.com/api-reference/conversations/toggle-status
        self._call("POST", f"/conversations/{int(ref.interaction_id)}/toggle_status", {"status": "resolved"})

    # --- Chatwoot -> Bridge -------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> None:
        if not _flag(self.config.get("require_signature")):
            return
        secret = self.credentials.get("webhook_secret")
        if not secret:
            raise ConfigurationError(
                f"endpoint {self.endpoint.slug}: 'webhook_secret' is not configured (or set require_signature=false)"
            )
        signature = headers.get(SIGNATURE_HEADER) or ""
        timestamp = headers.get(TIMESTAMP_HEADER) or ""
        if not signature or not timestamp:
            raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}; {KEY_MISMATCH_HINT}")
        try:
            sent = int(timestamp)
        except ValueError as exc:
            raise SignatureError(f"{TIMESTAMP_HEADER} is not unix seconds") from exc
        if abs((time.time() if now is None else now) - sent) > MAX_SKEW_SECONDS:
            raise SignatureError(f"{TIMESTAMP_HEADER} is more than 300 s away from our clock")
        expected = (
            "sha256="
            + hmac.new(str(secret).encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
            raise SignatureError(f"signature does not match the webhook secret; {KEY_MISMATCH_HINT}")

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[CcaasEvent]:
        data = load_webhook_json(body)
        if not isinstance(data, dict) or not data.get("event"):
            raise WebhookError("expected a Chatwoot webhook with an event")
        kind = str(data["event"])
        delivery = headers.get(DELIVERY_HEADER) or ""
        conversation = data.get("conversation") if isinstance(data.get("conversation"), dict) else {}
        if kind == "message_created":
            conversation_id = str(conversation.get("id") or conversation.get("display_id") or "")
            if not data.get("id") or not conversation_id:
                raise WebhookError("message_created without id or conversation.id")
            event_id = f"message:{data['id']}"
            if not self._is_agent_reply(data):
                return [self._unknown(event_id, conversation_id, data, kind)]
            return [self._agent_event(event_id, conversation_id, data, kind)]
        # Conversation events carry the conversation itself at the top level.
        conversation_id = str(data.get("id") or conversation.get("id") or "")
        event_id = (
            delivery or f"{kind}:{conversation_id}:{data.get('status') or ''}:{data.get('updated_at') or ''}"
        )
        if kind == "conversation_status_changed" and data.get("status") == "resolved" and conversation_id:
            return [
                CcaasEvent(
                    id=event_id,
                    type=EventType.CLOSED,
                    interaction_id=conversation_id,
                    raw=data,
                    original_type=kind,
                )
            ]
        if kind in ("conversation_typing_on", "conversation_typing_off") and not data.get("is_private"):
            conversation_id = str(conversation.get("id") or "")
            user = data.get("user") or {}
            if conversation_id and user.get("type", "user") == "user":
                return [
                    CcaasEvent(
                        id=delivery or f"{kind}:{conversation_id}:{time.time_ns()}",
                        type=EventType.TYPING,
                        interaction_id=conversation_id,
                        raw=data,
                        original_type=kind,
                        typing=kind == "conversation_typing_on",
                    )
                ]
        return [self._unknown(event_id, conversation_id, data, kind)]

    @staticmethod
    def _unknown(event_id: str, conversation_id: str, data: dict, kind: str) -> CcaasEvent:
        return CcaasEvent(
            id=event_id, type=EventType.UNKNOWN, interaction_id=conversation_id, raw=data, original_type=kind
        )

    @staticmethod
    def _is_agent_reply(message: dict) -> bool:
        """Outgoing, public, written by a human agent: never our incoming messages or private notes,
        never an agent bot's or the system's messages."""
        message_type = message.get("message_type")
        message_type = MESSAGE_TYPES.get(message_type, message_type)
        if message_type != "outgoing" or message.get("private"):
            return False
        sender = message.get("sender") or {}
        sender_type = str(sender.get("type") or message.get("sender_type") or "").lower()
        return sender_type == "user"

    @staticmethod
    def _agent_event(event_id: str, conversation_id: str, data: dict, kind: str) -> CcaasEvent:
        content: dict[str, Any] = {"text": str(data.get("content") or "")}
        attachments = [
            {
                "url": str(a["data_url"]),
                # Chatwoot gives a file_type (image, audio, video, file), not a MIME type.
                "mimeType": str(a.get("file_type") or ""),
                "filename": str(a["data_url"]).rsplit("/", 1)[-1].split("?", 1)[0],
            }
            for a in data.get("attachments") or []
            if isinstance(a, dict) and a.get("data_url")
        ]
        if attachments:
            content["attachments"] = attachments
        sender = data.get("sender") or {}
        return CcaasEvent(
            id=event_id,
            type=EventType.AGENT_MESSAGE,
            interaction_id=conversation_id,
            message=AgentMessage(
                id=str(data["id"]),
                content_type="TEXT",
                content=content,
                agent_id=str(sender["id"]) if sender.get("id") is not None else None,
                agent_name=sender.get("name"),
                # Chatwoot's message ids grow with every message; created_at is ISO in webhooks and
                # unix seconds in the REST API.
                sent_at=vendor_time(data.get("created_at")),
                sequence=vendor_sequence(data.get("id")),
            ),
            raw=data,
            original_type=kind,
        )

    # --- polling ------------------------------------------------------------------------------------
    def poll(self, cursor: str, open_interactions: list[InteractionRef]) -> PollResult:
        """Per open conversation, the messages after the last id seen (cursor: {conversation: id}),
        and a close when it is resolved."""
        try:
            seen: dict[str, int] = json.loads(cursor) if cursor else {}
        except ValueError:
            seen = {}
        events: list[CcaasEvent] = []
        ids = [ref.interaction_id for ref in open_interactions if ref.interaction_id]
        for conversation_id in ids:
            last = int(seen.get(conversation_id, 0))
            for message in self._messages_after(conversation_id, last):
                message_id = int(message.get("id") or 0)
                if message_id <= last:
                    continue
                last = message_id
                if self._is_agent_reply(message):
                    events.append(
                        self._agent_event(f"message:{message_id}", conversation_id, message, "message")
                    )
            seen[conversation_id] = last
            # Reference: https://developers.chatwoot.com/api-reference/conversations/conversation-details
            details = self._call("GET", f"/conversations/{int(conversation_id)}")
            if (details or {}).get("status") == "resolved":
                events.append(
                    CcaasEvent(
                        id=f"resolved:{conversation_id}",
                        type=EventType.CLOSED,
                        interaction_id=conversation_id,
                        raw={"id": conversation_id, "status": "resolved"},
                        original_type="status",
                    )
                )
        return PollResult(events=events, cursor=json.dumps({k: v for k, v in seen.items() if k in ids}))

    def _messages_after(self, conversation_id: str, after: int) -> list[dict]:
        """Every message of the conversation after the id `after`, oldest first. Get Messages answers
        at most 100 messages after an id (and only the latest 20 without one), so it is read again
        after the last id of each full page until a page is not full."""
        found: list[dict] = []
        while True:
            # Reference: https://developers.chatwoot.com/api-reference/messages/get-messages
            data = self._call(
                "GET", f"/conversations/{int(conversation_id)}/messages", params={"after": after}
            )
            page = sorted(
                (m for m in (data or {}).get("payload") or [] if isinstance(m, dict) and m.get("id")),
                key=lambda m: int(m["id"]),
            )
            page = [m for m in page if int(m["id"]) > after]
            found += page
            if len(page) < MESSAGES_PER_PAGE or len(found) >= MAX_MESSAGES_PER_POLL:
                return found
            after = int(page[-1]["id"])

    def check_connection(self) -> str:
        # Reference: https://developers.chatwoot.com/api-reference/profile/fetch-user-profile-details
        base = str(self.require(self.config, "base_url")).rstrip("/")
        profile = self._call("GET", f"{base}/api/v1/profile")
        return f"authenticated as {(profile or {}).get('name') or (profile or {}).get('id')}"

    def webhook_instructions(self) -> str:
        return (
            f"In Chatwoot, Settings > Integrations > Webhooks > Add new webhook: URL {self.endpoint.webhook_url()}, "
            "events 'Message created', 'Conversation status changed' and (optional) 'Conversation typing'. "
            "Copy the webhook's secret into the endpoint's credentials as webhook_secret. If signed "
            "webhooks are refused although the secret is right, see chatwoot/chatwoot#13809 and set "
            "require_signature=false in the config."
        )
