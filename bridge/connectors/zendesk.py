"""Zendesk Support (kind `zendesk`): one ticket per handover, comments both ways.

- Open: the customer becomes a Zendesk end user (create-or-update by external id), then a ticket is
  created with that user as requester and submitter, so the readable transcript of the conversation
  is the first public comment, written "by" the customer. `external_id` is the Infobip conversation
  id; tags, custom fields, group, brand and form come from the endpoint config.
- Customer messages: public comments authored by the requester (`comment.author_id`).
- Agent replies: a webhook subscribed to the ticket events `ticket.comment_added` and
  `ticket.status_changed`, signed with the webhook's secret; or polling of the tickets' comments.
  Only public comments whose author is staff and is not the requester are forwarded: every comment
  the bridge writes is authored by the requester (or is an internal note), so it never comes back.
- Close: a ticket solved or closed closes the Infobip conversation; a close on our side solves the
  ticket with an internal note saying why.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bridge import http, ratelimit
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
    PermanentError,
    SignatureError,
    UpstreamAuthError,
    UpstreamError,
    WebhookError,
)
from bridge.media import render_text, split_text
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

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
MAX_SKEW_SECONDS = 300
EVENT_COMMENT_ADDED = "zen:event-type:ticket.comment_added"
EVENT_STATUS_CHANGED = "zen:event-type:ticket.status_changed"
CLOSED_STATUSES = {"solved", "closed"}
# Zendesk allows 200 (Team) to 700 (Enterprise) requests a minute per account; leave room for others.
DEFAULT_REQUESTS_PER_MINUTE = 200
PRIORITIES = {"LOW": "low", "NORMAL": "normal", "HIGH": "high", "URGENT": "urgent"}
EMAIL_CHANNELS = {"EMAIL"}
COMMENTS_PER_PAGE = 100  # List Comments' largest page
MAX_COMMENT_PAGES = 60  # a ticket holds at most 5,000 comments (50 pages); a guard against a loop


def _position(value: Any) -> dict[str, int]:
    """A ticket's place in the poll cursor: {"after": comment id, "page": n}; an older cursor kept
    only the comment id."""
    if isinstance(value, dict):
        try:
            return {"after": int(value.get("after") or 0), "page": max(1, int(value.get("page") or 1))}
        except (TypeError, ValueError):
            return {"after": 0, "page": 1}
    try:
        return {"after": int(value or 0), "page": 1}
    except (TypeError, ValueError):
        return {"after": 0, "page": 1}


def _tag(value: str) -> str:
    # Zendesk tags are single words: spaces would split one Infobip tag into several.
    return "_".join(str(value).strip().lower().split())


def transcript(history: list[InfobipMessage], customer_name: str) -> str:
    """The conversation so far as a readable comment: who said what, when (UTC)."""
    lines = ["Conversation so far (from Infobip):", ""]
    for message in history:
        if message.direction == Direction.INBOUND:
            who = customer_name or "Customer"
        elif message.author_type == AuthorType.BOT:
            who = "Bot"
        elif message.author_type == AuthorType.AGENT:
            who = "Agent"
        else:
            who = message.author_type.value.title()
        when = message.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"[{when}] {who}: {message_text(message.content_type, message.content)}")
    if not history:
        lines.append("(no messages)")
    return "\n".join(lines)


def message_text(content_type: str, content: dict[str, Any]) -> str:
    """Text of a message; media and rich content read as text with the link (Zendesk uploads need
    the bytes, so this connector declares attachments=False and the bridge renders media for it)."""
    return render_text(content_type, content)


def _attachments(items: Any) -> list[dict[str, str]]:
    """A comment's attachments as the bridge carries them to the customer (one Infobip message each)."""
    found = []
    for item in items or []:
        if isinstance(item, dict) and item.get("content_url"):
            found.append(
                {
                    "url": str(item["content_url"]),
                    "mimeType": str(item.get("content_type") or ""),
                    "filename": str(item.get("file_name") or ""),
                }
            )
    return found


def _comment_content(comment: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = {"text": str(comment.get("body") or "")}
    attachments = _attachments(comment.get("attachments"))
    if attachments:
        content["attachments"] = attachments
    return content


class ZendeskConnector(Connector):
    kind = "zendesk"
    label = "Zendesk Support"
    # A comment body is limited in size (about 65,000 characters "depending on encoding"): counted
    # in UTF-8 bytes with room to spare.
    # Reference: https://support.zendesk.com/hc/en-us/community/posts/4719863289498-Commets-size
    capabilities = Capabilities(
        webhook=True,
        poll=True,
        attachments=False,
        typing=False,
        tags=True,
        text_limit=64000,
        text_unit="bytes",
    )
    config_fields = (
        Field("subdomain", "Your Zendesk subdomain, e.g. acme for acme.zendesk.com (or set base_url)"),
        Field("base_url", "Overrides https://<subdomain>.zendesk.com", kind="url"),
        Field(
            "mode",
            "webhook: ticket-event webhook; poll: read comments",
            False,
            "choice",
            ("webhook", "poll"),
            "webhook",
        ),
        Field("group_id", "Group the tickets are assigned to", kind="int"),
        Field("brand_id", "Brand of the tickets (Enterprise)", kind="int"),
        Field("ticket_form_id", "Ticket form (Enterprise)", kind="int"),
        Field("custom_fields", 'Field ids: {"conversation_id": <id>, "channel": <id>}', kind="json"),
        Field("tags", "Extra tags to add to every ticket", kind="json"),
        Field("priority_map", 'Override of {"LOW": "low", "NORMAL": "normal", ...}', kind="json"),
        Field("subject", "Ticket subject; {channel} and {name} are filled in"),
        Field(
            "requests_per_minute",
            f"The bridge's share of the account's API limit, for all its workers (default {DEFAULT_REQUESTS_PER_MINUTE})",
            kind="int",
        ),
    )
    credential_fields = (
        Field("email", "Agent email, for API token authentication"),
        Field("api_token", "API token (Admin Center > Apps and integrations > Zendesk API)"),
        Field("oauth_token", "OAuth access token, instead of email + api_token"),
        Field("webhook_secret", "The webhook's signing secret (webhook mode)"),
    )

    @classmethod
    def validate(cls, config: Mapping[str, Any], credentials: Mapping[str, Any]) -> list[str]:
        problems = super().validate(config, credentials)
        if not config.get("subdomain") and not config.get("base_url"):
            problems.append("config: 'subdomain' (or 'base_url') is required")
        if not credentials.get("oauth_token") and not (
            credentials.get("email") and credentials.get("api_token")
        ):
            problems.append("credentials: give 'email' and 'api_token', or 'oauth_token'")
        if config.get("mode", "webhook") == "webhook" and not credentials.get("webhook_secret"):
            problems.append(
                "credentials: 'webhook_secret' is required in webhook mode (the webhook's signing secret)"
            )
        fields = config.get("custom_fields")
        if fields not in (None, "") and not isinstance(fields, dict):
            problems.append("config: 'custom_fields' must be an object like {\"conversation_id\": 123}")
        return problems

    def __init__(self, endpoint) -> None:
        super().__init__(endpoint)
        self.session = http.make_session()
        oauth = self.credentials.get("oauth_token")
        if oauth:
            self.session.headers["Authorization"] = f"Bearer {oauth}"
        elif self.credentials.get("email") and self.credentials.get("api_token"):
            # Reference: https://developer.zendesk.com/api-reference/introduction/security-and-auth/
            self.session.auth = (f"{self.credentials['email']}/token", str(self.credentials["api_token"]))

    @classmethod
    def default_interaction_url(cls, config: Mapping[str, Any], ref: InteractionRef) -> str | None:
        # The agent workspace's ticket page. Reference: https://support.zendesk.com/hc/en-us/articles/4408886165402
        base = str(config.get("base_url") or "").rstrip("/")
        if not base and config.get("subdomain"):
            base = f"https://{config['subdomain']}.zendesk.com"
        if not base or not str(ref.interaction_id).isdigit():
            return None
        return f"{base}/agent/tickets/{ref.interaction_id}"

    # --- plumbing -----------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self.config.get("base_url"):
            return str(self.config["base_url"]).rstrip("/")
        subdomain = self.config.get("subdomain")
        if not subdomain:
            raise ConfigurationError(f"endpoint {self.endpoint.slug}: 'subdomain' is not configured")
        return f"https://{subdomain}.zendesk.com"

    @property
    def _service(self) -> str:
        return f"endpoint {self.endpoint.slug} (Zendesk)"

    def _call(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> Any:
        if "Authorization" not in self.session.headers and self.session.auth is None:
            raise ConfigurationError(f"endpoint {self.endpoint.slug}: no Zendesk credentials configured")
        # A backlog drains at the account's pace instead of running into 429s: one budget a minute
        # shared by every worker (RateLimited is transient, so the delivery simply waits its turn).
        # Reference: https://developer.zendesk.com/api-reference/introduction/rate-limits/
        limit = int(self.config.get("requests_per_minute") or DEFAULT_REQUESTS_PER_MINUTE)
        ratelimit.acquire(f"zendesk:{self.endpoint.pk}", limit)
        response = http.request(
            self.session,
            method,
            f"{self.base_url}{path}",
            service=self._service,
            check_url=True,
            json=body,
            params=params,
        )
        return http.json_body(response, service=self._service, empty={})

    def update_tags(self, ref: InteractionRef, added: list[str], removed: list[str]) -> None:
        """Add and remove the ticket's tags; tags agents set in Zendesk are left alone."""
        ticket = int(ref.interaction_id)
        if added := [t for t in (_tag(a) for a in added) if t]:
            # Reference: https://developer.zendesk.com/api-reference/ticketing/ticket-management/tags/#add-tags
            self._call("PUT", f"/api/v2/tickets/{ticket}/tags", {"tags": added})
        if removed := [t for t in (_tag(r) for r in removed) if t]:
            # Reference: https://developer.zendesk.com/api-reference/ticketing/ticket-management/tags/#remove-tags
            self._call("DELETE", f"/api/v2/tickets/{ticket}/tags", {"tags": removed})

    def _no_id(self, what: str) -> UpstreamError:
        return UpstreamError(f"{self._service}: {what} answered without an id", service=self._service)

    # --- Bridge -> Zendesk --------------------------------------------------------------------------
    def _requester(self, ctx: HandoverContext) -> int:
        address = ctx.customer.address
        user: dict[str, Any] = {
            "name": ctx.customer.display_name or address,
            "external_id": f"infobip:{ctx.channel.lower()}:{address}",
        }
        if ctx.channel.upper() in EMAIL_CHANNELS:
            user["email"] = address
        elif address.lstrip("+").isdigit():
            user["phone"] = f"+{address.lstrip('+')}"
        # Reference: https://developer.zendesk.com/api-reference/ticketing/users/users/#create-or-update-user
        data = self._call("POST", "/api/v2/users/create_or_update", {"user": user})
        user_id = (data.get("user") or {}).get("id") if isinstance(data, dict) else None
        if not user_id:
            raise self._no_id("create_or_update user")
        return int(user_id)

    def _existing_ticket(self, conversation_id: str) -> dict | None:
        """An unsolved ticket this conversation already has: a retried open reuses it."""
        # Reference: https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#list-tickets
        data = self._call("GET", "/api/v2/tickets", params={"external_id": conversation_id})
        for ticket in (data or {}).get("tickets") or []:
            if str(ticket.get("status", "")).lower() not in CLOSED_STATUSES:
                return ticket
        return None

    def open_interaction(self, ctx: HandoverContext) -> OpenResult:
        requester_id = self._requester(ctx)
        existing = self._existing_ticket(ctx.conversation_id)
        if existing and existing.get("id"):
            return OpenResult(
                interaction_id=str(existing["id"]),
                data={"requester_id": requester_id, "reused": True},
            )
        name = ctx.customer.display_name or ctx.customer.address
        # A transcript over a comment's size goes as the first comment and more after it, never cut.
        chunks = split_text(transcript(ctx.history, name), self.capabilities.text_limit, "bytes")
        subject = str(self.config.get("subject") or "{channel} conversation with {name}").format(
            channel=ctx.channel.title(), name=name
        )
        extra_tags = self.config.get("tags") or []
        tags = list(dict.fromkeys(_tag(t) for t in [*ctx.tags, *extra_tags, "infobip"] if _tag(t)))
        priority_map = {**PRIORITIES, **(self.config.get("priority_map") or {})}
        ticket: dict[str, Any] = {
            "subject": subject,
            "comment": {
                "body": chunks[0],
                "author_id": requester_id,
                "public": True,
            },
            "requester_id": requester_id,
            "submitter_id": requester_id,
            "external_id": ctx.conversation_id,
            "tags": tags,
            "priority": priority_map.get(ctx.priority, "normal"),
        }
        for key in ("group_id", "brand_id", "ticket_form_id"):
            if self.config.get(key) not in (None, ""):
                ticket[key] = int(self.config[key])
        fields = self.config.get("custom_fields") or {}
        values = {"conversation_id": ctx.conversation_id, "channel": ctx.channel}
        custom = [
            {"id": int(fields[name]), "value": value}
            for name, value in values.items()
            if fields.get(name) not in (None, "")
        ]
        for name, field_id in fields.items():
            # Further fields named after a metadata key carry that value.
            if name not in values and name in ctx.metadata and field_id not in (None, ""):
                custom.append({"id": int(field_id), "value": ctx.metadata[name]})
        if custom:
            ticket["custom_fields"] = custom
        # Reference: https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#create-ticket
        data = self._call("POST", "/api/v2/tickets", {"ticket": ticket})
        ticket_id = (data.get("ticket") or {}).get("id") if isinstance(data, dict) else None
        if not ticket_id:
            raise self._no_id("POST /api/v2/tickets")
        for chunk in chunks[1:]:
            comment = {"body": chunk, "author_id": requester_id, "public": True}
            # Reference: https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#update-ticket
            self._call("PUT", f"/api/v2/tickets/{int(ticket_id)}", {"ticket": {"comment": comment}})
        return OpenResult(interaction_id=str(ticket_id), data={"requester_id": requester_id})

    def send_customer_message(self, ref: InteractionRef, message: InfobipMessage) -> list[str] | None:
        requester_id = (ref.data or {}).get("requester_id")
        if not requester_id:
            raise ConfigurationError(f"handover {ref.handover_id}: the ticket's requester id is not known")
        comment = {
            "body": message_text(message.content_type, message.content),
            "author_id": int(requester_id),
            "public": True,
        }
        # Reference: https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#update-ticket
        data = self._update_open_ticket(ref, {"ticket": {"comment": comment}})
        # The answer's audit lists what the update created; its Comment event's id is the comment's.
        events = ((data or {}).get("audit") or {}).get("events") if isinstance(data, dict) else None
        ids = [
            str(e["id"])
            for e in events or []
            if isinstance(e, dict) and e.get("type") == "Comment" and e.get("id")
        ]
        return ids or None

    def _update_open_ticket(self, ref: InteractionRef, body: dict) -> Any:
        """Update Ticket, or InteractionOverError when Zendesk says the ticket takes no more: a
        closed ticket answers 422 "Status: closed prevents ticket update"; a deleted one 404."""
        ticket = int(ref.interaction_id)
        try:
            return self._call("PUT", f"/api/v2/tickets/{ticket}", body)
        except PermanentError as exc:
            if isinstance(exc, UpstreamAuthError):
                raise
            closed = exc.status == 422 and "closed prevents ticket update" in exc.body.lower()
            if not (closed or exc.status == 404):
                raise
            state = "closed" if closed else "gone (404)"
            raise InteractionOverError(
                f"{self._service}: ticket {ticket} is {state} and takes no more comments",
                status=exc.status,
                body=exc.body,
                service=self._service,
            ) from exc

    def close_interaction(self, ref: InteractionRef, reason: CloseReason) -> None:
        why = {
            CloseReason.CONVERSATION_CLOSED: "the conversation was closed on the customer's side",
            CloseReason.IDLE_TIMEOUT: "the conversation was idle too long",
            CloseReason.OPERATOR: "an operator closed the handover",
        }.get(reason, f"closed ({reason.value})")
        ticket = {
            "status": "solved",
            "comment": {"body": f"Handover closed by the bridge: {why}.", "public": False},
        }
        # Reference: https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#update-ticket
        self._update_open_ticket(ref, {"ticket": ticket})

    # --- Zendesk -> Bridge --------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> None:
        # Reference: https://developer.zendesk.com/documentation/webhooks/verifying/
        secret = self.credentials.get("webhook_secret")
        if not secret:
            raise ConfigurationError(f"endpoint {self.endpoint.slug}: 'webhook_secret' is not configured")
        signature = headers.get(SIGNATURE_HEADER) or ""
        timestamp = headers.get(TIMESTAMP_HEADER) or ""
        if not signature or not timestamp:
            raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
        try:
            sent = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except ValueError as exc:
            raise SignatureError(f"{TIMESTAMP_HEADER} is not an ISO 8601 time") from exc
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=UTC)
        current = datetime.now(UTC).timestamp() if now is None else now
        if abs(current - sent.timestamp()) > MAX_SKEW_SECONDS:
            raise SignatureError(f"{TIMESTAMP_HEADER} is more than 300 s away from our clock")
        expected = base64.b64encode(
            hmac.new(str(secret).encode(), timestamp.encode() + body, hashlib.sha256).digest()
        )
        if not hmac.compare_digest(expected, signature.strip().encode()):
            raise SignatureError("signature does not match the webhook secret")

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[CcaasEvent]:
        data = load_webhook_json(body)
        if not isinstance(data, dict) or not data.get("type"):
            raise WebhookError("expected a Zendesk event with a type")
        event_id = str(data.get("id") or headers.get("X-Zendesk-Webhook-Invocation-Id") or "")
        if not event_id:
            raise WebhookError("the event has no id")
        detail = data.get("detail") if isinstance(data.get("detail"), dict) else {}
        payload = data.get("event") if isinstance(data.get("event"), dict) else {}
        ticket_id = str(detail.get("id") or "")
        if not ticket_id and str(data.get("subject", "")).startswith("zen:ticket:"):
            ticket_id = str(data["subject"]).rsplit(":", 1)[-1]
        kind = str(data["type"])
        unknown = CcaasEvent(
            id=event_id, type=EventType.UNKNOWN, interaction_id=ticket_id, raw=data, original_type=kind
        )
        if kind == EVENT_COMMENT_ADDED:
            comment = payload.get("comment") if isinstance(payload.get("comment"), dict) else None
            if comment is None or not ticket_id:
                raise WebhookError("comment_added event without event.comment or detail.id")
            author = comment.get("author") or {}
            if not self._is_agent_reply(
                is_public=comment.get("is_public"),
                author_id=author.get("id"),
                is_staff=author.get("is_staff"),
                requester_id=detail.get("requester_id"),
            ):
                return [unknown]
            return [
                CcaasEvent(
                    id=event_id,
                    type=EventType.AGENT_MESSAGE,
                    interaction_id=ticket_id,
                    message=AgentMessage(
                        id=str(comment.get("id") or event_id),
                        content_type="TEXT",
                        content=_comment_content(comment),
                        agent_id=str(author["id"]) if author.get("id") is not None else None,
                        agent_name=author.get("name"),
                        # The event's time, then the comment id (Zendesk's ids grow).
                        sent_at=vendor_time(comment.get("created_at") or data.get("time")),
                        sequence=vendor_sequence(comment.get("id")),
                    ),
                    raw=data,
                    original_type=kind,
                )
            ]
        if kind == EVENT_STATUS_CHANGED:
            current = payload.get("current")
            if isinstance(current, dict):
                current = current.get("status")
            if ticket_id and str(current or "").lower() in CLOSED_STATUSES:
                return [
                    CcaasEvent(
                        id=event_id,
                        type=EventType.CLOSED,
                        interaction_id=ticket_id,
                        raw=data,
                        original_type=kind,
                    )
                ]
        return [unknown]

    @staticmethod
    def _is_agent_reply(*, is_public: Any, author_id: Any, is_staff: Any, requester_id: Any) -> bool:
        """Public, by staff, and not by the requester (everything the bridge writes is authored by
        the requester or is an internal note, so it is never forwarded back)."""
        if is_public is not True:
            return False
        if is_staff is False:
            return False
        return not (requester_id not in (None, "") and str(author_id) == str(requester_id))

    # --- polling ------------------------------------------------------------------------------------
    def poll(self, cursor: str, open_interactions: list[InteractionRef]) -> PollResult:
        """Each open ticket's comments after the last one seen, every page of them, and a close for
        tickets that are solved. Tickets are read in one show_many call per 100.

        Cursor: {ticket id: {"after": last comment id seen, "page": the List Comments page it is
        on}}; comments are only ever appended (oldest first), so the next poll starts at that page
        instead of reading the ticket's whole history again."""
        try:
            seen: dict[str, Any] = json.loads(cursor) if cursor else {}
        except ValueError:
            seen = {}
        if not isinstance(seen, dict):
            seen = {}
        refs = {ref.interaction_id: ref for ref in open_interactions if ref.interaction_id}
        events: list[CcaasEvent] = []
        statuses: dict[str, str] = {}
        ids = sorted(refs, key=lambda v: int(v) if v.isdigit() else 0)
        for start in range(0, len(ids), 100):
            # Reference: https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#show-multiple-tickets
            data = self._call(
                "GET", "/api/v2/tickets/show_many", params={"ids": ",".join(ids[start : start + 100])}
            )
            for ticket in (data or {}).get("tickets") or []:
                statuses[str(ticket.get("id"))] = str(ticket.get("status") or "").lower()
        positions: dict[str, dict[str, int]] = {}
        for ticket_id in ids:
            ref = refs[ticket_id]
            position = _position(seen.get(ticket_id))
            last = position["after"]
            for page, comment in self._comments(ticket_id, position["page"]):
                comment_id = int(comment.get("id") or 0)
                if comment_id <= last:
                    continue
                last = comment_id
                position["page"] = page
                if not self._is_agent_reply(
                    is_public=comment.get("public"),
                    author_id=comment.get("author_id"),
                    is_staff=None,
                    requester_id=(ref.data or {}).get("requester_id"),
                ):
                    continue
                text = str(comment.get("plain_body") or comment.get("body") or "")
                content: dict[str, Any] = {"text": text}
                attachments = _attachments(comment.get("attachments"))
                if attachments:
                    content["attachments"] = attachments
                events.append(
                    CcaasEvent(
                        id=f"comment:{comment_id}",
                        type=EventType.AGENT_MESSAGE,
                        interaction_id=ticket_id,
                        message=AgentMessage(
                            id=str(comment_id),
                            content_type="TEXT",
                            content=content,
                            agent_id=str(comment.get("author_id")),
                            sent_at=vendor_time(comment.get("created_at")),
                            sequence=comment_id,
                        ),
                        raw=comment,
                        original_type="comment",
                    )
                )
            positions[ticket_id] = {"after": last, "page": position["page"]}
            if statuses.get(ticket_id) in CLOSED_STATUSES:
                events.append(
                    CcaasEvent(
                        id=f"status:{ticket_id}:{statuses[ticket_id]}",
                        type=EventType.CLOSED,
                        interaction_id=ticket_id,
                        raw={"ticket_id": ticket_id, "status": statuses[ticket_id]},
                        original_type="status",
                    )
                )
        # Tickets no longer open drop out of the cursor, so it stays small.
        return PollResult(events=events, cursor=json.dumps(positions, sort_keys=True))

    def _comments(self, ticket_id: str, first_page: int):
        """(page number, comment) of a ticket's comments, oldest first, from `first_page` to the last
        page: List Comments answers at most 100 a page and says `next_page` (offset pagination) or
        `meta.has_more` (cursor pagination) while there are more."""
        page = max(1, first_page)
        while True:
            # Reference: https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/#list-comments
            # Reference: https://developer.zendesk.com/api-reference/introduction/pagination/
            data = self._call(
                "GET",
                f"/api/v2/tickets/{ticket_id}/comments",
                params={"sort_order": "asc", "page": page, "per_page": COMMENTS_PER_PAGE},
            )
            data = data if isinstance(data, dict) else {}
            comments = [c for c in data.get("comments") or [] if isinstance(c, dict)]
            for comment in comments:
                yield page, comment
            more = bool(data.get("next_page")) or bool((data.get("meta") or {}).get("has_more"))
            if not more or not comments or page >= MAX_COMMENT_PAGES:
                return
            page += 1

    def check_connection(self) -> str:
        # Reference: https://developer.zendesk.com/api-reference/ticketing/users/users/#show-the-currently-authenticated-user
        data = self._call("GET", "/api/v2/users/me")
        user = (data or {}).get("user") or {}
        if not user.get("id"):
            raise UpstreamAuthError(
                f"{self._service}: the credentials were not accepted (anonymous user)", service=self._service
            )
        return f"authenticated as {user.get('name') or user['id']} ({user.get('role', 'unknown role')})"

    def webhook_instructions(self) -> str:
        webhook = {
            "webhook": {
                "name": f"Handover bridge ({self.endpoint.slug})",
                "endpoint": self.endpoint.webhook_url(),
                "http_method": "POST",
                "request_format": "json",
                "status": "active",
                "subscriptions": [EVENT_COMMENT_ADDED, EVENT_STATUS_CHANGED],
            }
        }
        return (
            "Create a webhook subscribed to ticket events (Admin Center > Apps and integrations > "
            "Webhooks > Create webhook > Zendesk events: 'Comment added' and 'Status changed'), or with "
            f"POST {self.base_url}/api/v2/webhooks and this body:\n"
            f"{json.dumps(webhook, indent=2)}\n"
            "Then copy its signing secret (GET /api/v2/webhooks/{id}/signing_secret) into the "
            "endpoint's credentials as webhook_secret."
        )
