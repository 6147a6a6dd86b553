"""Request Tracker 5 through its core REST2 API (connector kind `rt`).

RT has no webhooks, so agent replies are polled: one TransactionSQL search per poll cycle covers every
open handover of the endpoint (agent correspondence, owner changes, status changes, ordered by
transaction id after a stored cursor), plus one attachments search for the content of the new
correspondence. The cost of a cycle does not grow with the number of open tickets.

Reference: https://docs.bestpractical.com/rt/5.0.3/RT/REST2.html
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from bridge import http
from bridge.connectors.base import Capabilities, Connector, Field, vendor_sequence, vendor_time
from bridge.exceptions import (
    ConfigurationError,
    InteractionOverError,
    NotFoundError,
    PermanentError,
    UpstreamAuthError,
    UpstreamError,
    WebhookError,
)
from bridge.media import render_text
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

DEFAULT_CLOSED_STATUSES = ("resolved", "rejected")
PAGE_SIZE = 100  # REST2's largest page
MAX_PAGES_PER_POLL = 20  # a guard; the cursor keeps the place, so the rest follows next cycle
MEDIA_TYPES = {"IMAGE", "DOCUMENT", "VIDEO", "AUDIO", "FILE"}
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
NOBODY = {"", "nobody", "6"}  # RT's "no owner" user (id 6 in a standard install)


def message_text(message: InfobipMessage) -> str:
    """A readable text for any Infobip message: its text, or a line naming the media (or location,
    contact, choice) with its link; the file itself is attached where it can be fetched."""
    return render_text(message.content_type, message.content or {})


def author_label(message: InfobipMessage, customer_name: str | None) -> str:
    if message.direction == Direction.INBOUND:
        return customer_name or "Customer"
    return {"BOT": "Bot", "AGENT": "Agent", "SYSTEM": "System"}.get(message.author_type.value, "Bot")


def transcript(ctx: HandoverContext) -> str:
    """The bot conversation so far, one block per message: who said what, when."""
    name = ctx.customer.display_name
    lines = [
        f"Conversation {ctx.conversation_id} on {ctx.channel} with "
        f"{name + ' ' if name else ''}({ctx.customer.address}) was handed over.",
    ]
    if ctx.tags:
        lines.append(f"Tags: {', '.join(ctx.tags)}")
    if ctx.metadata:
        lines.append("Metadata: " + ", ".join(f"{k}={v}" for k, v in sorted(ctx.metadata.items())))
    if ctx.context:
        lines.append("Context: " + ", ".join(f"{k}={v}" for k, v in sorted(ctx.context.items())))
    lines.append("")
    lines.append(f"History ({len(ctx.history)} messages, oldest first):")
    for message in ctx.history:
        when = message.created_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
        lines.append(f"[{when}] {author_label(message, name)}: {message_text(message)}")
    return "\n".join(lines) + "\n"


def requestor_address(ctx_channel: str, address: str) -> str:
    """RT's requestor must be an email address; a phone number or chat id gets a reserved domain
    (RFC 2606 `.invalid`), so it is recognisable and RT's mail never leaves the machine for it."""
    if re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
        return address
    local = re.sub(r"[^A-Za-z0-9._+-]", "_", address) or "customer"
    domain = re.sub(r"[^a-z0-9-]", "", ctx_channel.lower()) or "chat"
    return f"{local}@{domain}.invalid"


def html_to_text(value: str) -> str:
    value = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", value)
    return html.unescape(re.sub(r"<[^>]+>", "", value)).strip()


class RtConnector(Connector):
    kind = "rt"
    label = "Request Tracker 5"
    capabilities = Capabilities(
        webhook=False, poll=True, attachments=True, typing=False, poll_covers_all_interactions=True
    )
    config_fields = (
        Field(
            "base_url", "RT's address, e.g. https://rt.example.com (REST2 is under /REST/2.0)", True, "url"
        ),
        Field("queue", "The queue tickets are created in (name or id)", True),
        Field(
            "closed_statuses",
            "Statuses that end the handover",
            False,
            "json",
            default=list(DEFAULT_CLOSED_STATUSES),
        ),
        Field(
            "custom_fields",
            'Ticket custom fields to fill, e.g. {"conversation_id": "Conversation ID", "channel": '
            '"Channel", "tags": "Tags", "metadata.language": "Language"}',
            False,
            "json",
            default={},
        ),
        Field(
            "customer_messages",
            "How customer messages are added: correspond (as the requestor sees it) or comment",
            False,
            "choice",
            ("correspond", "comment"),
            "correspond",
        ),
        Field("mode", "RT has no webhooks: always poll", False, "choice", ("poll",), "poll"),
    )
    credential_fields = (
        Field("token", "An RT auth token of the bridge's user (Authorization: token ...)"),
        Field("username", "The bridge's RT user, with password (Basic auth) if no token"),
        Field("password", "The password of that user"),
    )

    @classmethod
    def validate(cls, config: Mapping[str, Any], credentials: Mapping[str, Any]) -> list[str]:
        problems = super().validate(config, credentials)
        if not credentials.get("token") and not (credentials.get("username") and credentials.get("password")):
            problems.append("credentials: give 'token', or 'username' and 'password'")
        statuses = config.get("closed_statuses")
        if statuses is not None and (
            not isinstance(statuses, list) or not all(isinstance(s, str) and s for s in statuses)
        ):
            problems.append("config: 'closed_statuses' must be a list of status names")
        fields = config.get("custom_fields")
        if fields is not None and not isinstance(fields, dict):
            problems.append("config: 'custom_fields' must be an object of {key: custom field name}")
        return problems

    def __init__(self, endpoint) -> None:
        super().__init__(endpoint)
        self.session = http.make_session({"Accept": "application/json"})
        token = self.credentials.get("token")
        if token:
            self.session.headers["Authorization"] = f"token {token}"
        elif self.credentials.get("username"):
            self.session.auth = (str(self.credentials["username"]), str(self.credentials.get("password", "")))
        self.requests_made = 0  # HTTP requests sent by this instance (the poll-cost figure)

    @classmethod
    def default_interaction_url(cls, config: Mapping[str, Any], ref: InteractionRef) -> str | None:
        # RT's ticket display page. Reference: https://docs.bestpractical.com/rt/5.0.7/
        base = str(config.get("base_url") or "").rstrip("/")
        if not base or not str(ref.interaction_id).isdigit():
            return None
        return f"{base}/Ticket/Display.html?id={ref.interaction_id}"

    # --- plumbing ----------------------------------------------------------------------------------
    @property
    def api(self) -> str:
        return str(self.require(self.config, "base_url")).rstrip("/") + "/REST/2.0"

    @property
    def queue(self) -> str:
        return str(self.require(self.config, "queue"))

    @property
    def closed_statuses(self) -> list[str]:
        value = self.config.get("closed_statuses")
        return [str(s).lower() for s in value] if value else list(DEFAULT_CLOSED_STATUSES)

    @property
    def _service(self) -> str:
        return f"endpoint {self.endpoint.slug}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        self.requests_made += 1
        response = http.request(
            self.session, method, f"{self.api}{path}", service=self._service, check_url=True, **kwargs
        )
        return http.json_body(response, service=self._service, empty=None)

    def _custom_fields(self, ctx: HandoverContext) -> dict[str, Any]:
        mapping = self.config.get("custom_fields") or {}
        values: dict[str, Any] = {}
        for key, field_name in mapping.items():
            if not field_name:
                continue
            if key == "conversation_id":
                value: Any = ctx.conversation_id
            elif key == "channel":
                value = ctx.channel
            elif key == "tags":
                value = list(ctx.tags)
            elif key == "priority":
                value = ctx.priority
            elif key == "queue":
                value = ctx.queue
            elif key == "customer":
                value = ctx.customer.address
            elif key.startswith("metadata."):
                value = ctx.metadata.get(key.removeprefix("metadata."))
            elif key.startswith("context."):
                value = ctx.context.get(key.removeprefix("context."))
            else:
                continue
            if value not in (None, "", []):
                values[str(field_name)] = value if isinstance(value, list) else str(value)
        return values

    # --- Bridge -> RT ------------------------------------------------------------------------------
    def open_interaction(self, ctx: HandoverContext) -> OpenResult:
        existing = self._open_ticket_of(ctx.conversation_id)
        if existing is not None:
            # A retry after a lost answer: the ticket was made, do not make a second one.
            ticket_id, creator = existing
        else:
            name = ctx.customer.display_name
            body: dict[str, Any] = {
                "Queue": self.queue,
                "Subject": f"{ctx.channel.title()} conversation with {name or ctx.customer.address}",
                "Requestor": requestor_address(ctx.channel, ctx.customer.address),
                "Content": transcript(ctx),
                "ContentType": "text/plain",
            }
            custom = self._custom_fields(ctx)
            if custom:
                body["CustomFields"] = custom
            # Reference: https://docs.bestpractical.com/rt/5.0.3/RT/REST2.html#Tickets (POST /ticket)
            created = self._call("POST", "/ticket", json=body)
            ticket_id = str((created or {}).get("id") or "")
            if not ticket_id:
                raise UpstreamError(
                    f"{self._service}: POST /ticket answered without an id", service=self._service
                )
            creator = self._ticket_creator(ticket_id)
        return OpenResult(interaction_id=ticket_id, data={"ticket_id": ticket_id, "bridge_user": creator})

    def _open_ticket_of(self, conversation_id: str) -> tuple[str, str] | None:
        """The ticket already opened for this conversation and not closed, if the conversation id
        is kept in a custom field (the only way to make ticket creation safe to retry)."""
        field_name = (self.config.get("custom_fields") or {}).get("conversation_id")
        if not field_name:
            return None
        quoted = conversation_id.replace("'", "\\'")
        closed = " AND ".join(f"Status != '{s}'" for s in self.closed_statuses)
        query = f"Queue = '{self.queue}' AND 'CF.{{{field_name}}}' = '{quoted}' AND {closed}"
        # Reference: https://docs.bestpractical.com/rt/5.0.3/RT/REST2.html#Tickets (TicketSQL search)
        found = self._call(
            "POST",
            "/tickets",
            params={"fields": "Creator", "orderby": "id", "order": "DESC", "per_page": 1},
            data={"query": query},
        )
        items = (found or {}).get("items") or []
        if not items:
            return None
        return str(items[0]["id"]), str((items[0].get("Creator") or {}).get("id") or "")

    def _ticket_creator(self, ticket_id: str) -> str:
        """The bridge's own RT user name, so polling never forwards what the bridge wrote."""
        if self.credentials.get("username") and not self.credentials.get("token"):
            return str(self.credentials["username"])
        ticket = self._call("GET", f"/ticket/{quote(ticket_id)}", params={"fields": "Creator"})
        return str(((ticket or {}).get("Creator") or {}).get("id") or "")

    def send_customer_message(self, ref: InteractionRef, message: InfobipMessage) -> None:
        action = "comment" if self.config.get("customer_messages") == "comment" else "correspond"
        who = ref.customer.display_name or ref.customer.address
        body: dict[str, Any] = {
            "Content": f"{who} wrote:\n\n{message_text(message)}\n",
            "ContentType": "text/plain",
        }
        attachment = self._attachment(message)
        if attachment:
            body["Attachments"] = [attachment]
        # Reference: https://docs.bestpractical.com/rt/5.0.3/RT/REST2.html#Tickets (correspond / comment)
        try:
            self._call("POST", f"/ticket/{quote(ref.interaction_id)}/{action}", json=body)
        except PermanentError as exc:
            self._raise_if_over(ref, exc)
            raise

    def _raise_if_over(self, ref: InteractionRef, exc: PermanentError) -> None:
        """InteractionOverError when a refused correspondence met a ticket that is gone (404) or in
        one of the closed statuses (checked with GET /ticket/:id). A resolved ticket that accepts
        the correspondence is reopened by RT's standard scrip, so nothing is lost there."""
        if isinstance(exc, UpstreamAuthError):
            return
        state = "gone (404)" if exc.status == 404 else ""
        if not state:
            try:
                # Reference: https://docs.bestpractical.com/rt/5.0.3/RT/REST2.html#Tickets (GET /ticket/:id)
                ticket = self._call(
                    "GET", f"/ticket/{quote(ref.interaction_id)}", params={"fields": "Status"}
                )
            except NotFoundError:
                state = "gone (404)"
            else:
                status = str((ticket or {}).get("Status") or "").lower()
                if status in self.closed_statuses or status == "deleted":
                    state = status
        if state:
            raise InteractionOverError(
                f"{self._service}: ticket {ref.interaction_id} is {state} and takes no more correspondence",
                status=exc.status,
                body=exc.body,
                service=self._service,
            ) from exc

    def _attachment(self, message: InfobipMessage) -> dict[str, str] | None:
        """The customer's file, fetched from Infobip's media URL and attached to the ticket. A file
        that cannot be fetched for good, or whose URL the SSRF guard refuses, stays a link in the text
        (already there)."""
        if message.content_type.upper() not in MEDIA_TYPES:
            return None
        url = (message.content or {}).get("url") or (message.content or {}).get("mediaUrl")
        if not url:
            return None
        try:
            response = http.request(
                http.make_session(), "GET", str(url), service="media", check_url=True, stream=True
            )
        except (PermanentError, ConfigurationError):
            return None
        data = response.raw.read(MAX_ATTACHMENT_BYTES + 1, decode_content=True)
        if len(data) > MAX_ATTACHMENT_BYTES:
            return None
        name = str(url).rsplit("/", 1)[-1].split("?", 1)[0] or "attachment"
        return {
            "FileName": str((message.content or {}).get("filename") or name),
            "FileType": response.headers.get("Content-Type", "application/octet-stream").split(";")[0],
            "FileContent": base64.b64encode(data).decode(),
        }

    def close_interaction(self, ref: InteractionRef, reason: CloseReason) -> None:
        status = self.closed_statuses[0]
        # Reference: https://docs.bestpractical.com/rt/5.0.3/RT/REST2.html#Tickets (PUT /ticket/:id)
        try:
            self._call("PUT", f"/ticket/{quote(ref.interaction_id)}", json={"Status": status})
        except NotFoundError as exc:
            raise InteractionOverError(
                f"{self._service}: ticket {ref.interaction_id} is gone (404)",
                status=exc.status,
                body=exc.body,
                service=self._service,
            ) from exc

    # --- RT -> Bridge ------------------------------------------------------------------------------
    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[CcaasEvent]:
        raise WebhookError("Request Tracker has no webhooks; this endpoint is polled", status=404)

    def poll(self, cursor: str, open_interactions: list[InteractionRef]) -> PollResult:
        tickets = {ref.interaction_id: ref for ref in open_interactions}
        if not cursor:
            if not tickets:
                return PollResult(events=[], cursor=self._newest_transaction_id())
            # Handovers opened before the first poll: every transaction of a ticket has an id at
            # least the ticket's own id (each ticket's creation writes one), so start below the oldest.
            cursor = (
                str(min(int(t) for t in tickets if t.isdigit()) - 1)
                if any(t.isdigit() for t in tickets)
                else "0"
            )
        if not tickets:
            return PollResult(events=[], cursor=cursor)
        items = self._transactions_after(int(cursor))
        if not items:
            return PollResult(events=[], cursor=cursor)
        own = {str(ref.data.get("bridge_user") or "") for ref in open_interactions} - {""}
        if self.credentials.get("username"):
            own.add(str(self.credentials["username"]))
        wanted = [
            item
            for item in items
            if str(item.get("ObjectId")) in tickets
            and self._creator(item) not in own
            # RT's own autoreplies are not an agent speaking; its status changes (scrips) still count
            and not (self._creator(item) == "RT_System" and item.get("Type") != "Status")
        ]
        contents = self._contents([item["id"] for item in wanted if item.get("Type") == "Correspond"])
        events = [e for item in wanted if (e := self._event(item, contents)) is not None]
        return PollResult(events=events, cursor=str(max(int(item["id"]) for item in items)))

    def _transactions_after(self, after: int) -> list[dict[str, Any]]:
        """The queue's agent correspondence, owner changes and closing status changes with an id
        above `after`, oldest first: page after page (each search continues after the last id of
        the one before), so one busy cycle never leaves transactions behind for a later decision."""
        closed = " OR ".join(f"NewValue = '{s}'" for s in self.closed_statuses)
        found: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES_PER_POLL):
            query = (
                f"ObjectType = 'RT::Ticket' AND TicketQueue = '{self.queue}' AND id > {after} AND "
                f"(Type = 'Correspond' OR (Type = 'Set' AND Field = 'Owner') OR (Type = 'Status' AND ({closed})))"
            )
            # Reference: https://docs.bestpractical.com/rt/5.0.3/RT/REST2.html#Transactions (TransactionSQL)
            page = self._call(
                "POST",
                "/transactions",
                params={
                    "fields": "Type,Creator,ObjectId,Field,NewValue,Created",
                    "fields[Creator]": "Name,RealName",
                    "orderby": "id",
                    "order": "ASC",
                    "per_page": PAGE_SIZE,
                },
                data={"query": query},
            )
            items = [i for i in (page or {}).get("items") or [] if isinstance(i, dict) and i.get("id")]
            found += items
            if len(items) < PAGE_SIZE:
                break
            after = max(int(item["id"]) for item in items)
        return found

    @staticmethod
    def _creator(item: dict[str, Any]) -> str:
        creator = item.get("Creator") or {}
        return str(creator.get("Name") or creator.get("id") or "")

    def _newest_transaction_id(self) -> str:
        page = self._call(
            "POST",
            "/transactions",
            params={"fields": "id", "orderby": "id", "order": "DESC", "per_page": 1},
            data={"query": "id > 0"},
        )
        items = (page or {}).get("items") or []
        return str(items[0]["id"]) if items else "0"

    def _contents(self, transaction_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The text and file names of these transactions, from attachment searches of a page each."""
        if not transaction_ids:
            return {}
        search = [{"field": "TransactionId", "value": int(t)} for t in transaction_ids]
        found: dict[str, dict[str, Any]] = {
            t: {"plain": [], "html": [], "files": []} for t in transaction_ids
        }
        page_no = 1
        while True:
            # Reference: https://docs.bestpractical.com/rt/5.0.3/RT/REST2.html#Transactions (POST /attachments)
            page = self._call(
                "POST",
                "/attachments",
                params={
                    "fields": "TransactionId,ContentType,Filename,Content",
                    "orderby": "id",
                    "order": "ASC",
                    "per_page": PAGE_SIZE,
                    "page": page_no,
                },
                json=search,
            )
            items = (page or {}).get("items") or []
            for item in items:
                slot = found.get(str(item.get("TransactionId")))
                if slot is None:
                    continue
                content_type = str(item.get("ContentType") or "").lower()
                if item.get("Filename"):
                    slot["files"].append({"name": item["Filename"], "type": content_type})
                elif content_type == "text/plain":
                    slot["plain"].append(str(item.get("Content") or ""))
                elif content_type == "text/html":
                    slot["html"].append(html_to_text(str(item.get("Content") or "")))
            if len(items) < PAGE_SIZE:
                return found
            page_no += 1

    def _event(self, item: dict[str, Any], contents: dict[str, dict[str, Any]]) -> CcaasEvent | None:
        txn = str(item["id"])
        ticket = str(item["ObjectId"])
        kind = str(item.get("Type"))
        raw = {k: v for k, v in item.items() if not k.startswith("_")}
        if kind == "Correspond":
            found = contents.get(txn) or {}
            text = "\n".join(found.get("plain") or []).strip() or "\n".join(found.get("html") or []).strip()
            files = found.get("files") or []
            if files:
                names = ", ".join(f["name"] for f in files)
                text = (text + "\n\n" if text else "") + f"(The agent attached: {names})"
            # A blank correspondence is still an agent message: the bridge records it and skips it
            # visibly rather than sending the customer an empty message (or dropping it unseen).
            creator = item.get("Creator") or {}
            return CcaasEvent(
                id=f"txn:{txn}",
                type=EventType.AGENT_MESSAGE,
                interaction_id=ticket,
                message=AgentMessage(
                    id=txn,
                    content_type="TEXT",
                    content={"text": text},
                    agent_id=str(creator.get("Name") or creator.get("id") or "") or None,
                    agent_name=creator.get("RealName") or creator.get("Name") or None,
                    # RT's transaction ids grow with every change to any ticket.
                    sent_at=vendor_time(item.get("Created")),
                    sequence=vendor_sequence(txn),
                ),
                raw=raw,
                original_type="Correspond",
            )
        if kind == "Set" and item.get("Field") == "Owner":
            if str(item.get("NewValue") or "").lower() in NOBODY:
                return None
            return CcaasEvent(
                id=f"txn:{txn}",
                type=EventType.ACCEPTED,
                interaction_id=ticket,
                raw=raw,
                original_type="Owner",
            )
        if kind == "Status" and str(item.get("NewValue") or "").lower() in self.closed_statuses:
            return CcaasEvent(
                id=f"txn:{txn}", type=EventType.CLOSED, interaction_id=ticket, raw=raw, original_type="Status"
            )
        return None

    def check_connection(self) -> str:
        # Reference: https://docs.bestpractical.com/rt/5.0.3/RT/REST2.html (GET /queue/:name)
        queue = self._call("GET", f"/queue/{quote(self.queue, safe='')}")
        info = self._call("GET", "/rt")
        return f"RT {(info or {}).get('Version', '?')}: queue {(queue or {}).get('Name', self.queue)} is reachable"

    def webhook_instructions(self) -> str:
        return (
            "Request Tracker has no webhooks: the bridge polls it every BRIDGE_POLL_INTERVAL_SECONDS. "
            "Give the bridge's RT user CreateTicket, ReplyToTicket, CommentOnTicket, ModifyTicket, "
            "ShowTicket, SeeQueue and SeeCustomField on the queue."
        )
