"""Simulated Infobip and generic contact-center servers on loopback.

`bridge_demo` runs a whole handover against them with no account anywhere, and the end-to-end and
fault tests use them as real HTTP peers. They answer as Infobip's spec and docs/protocol.md describe,
record every request, and can be told to fail (status, Retry-After, connection reset, hang).
FakeInfobip also keeps external bots (`/ccaas/1/bots`) and forwards a bot number's customer messages to
the bot's webhook with its static headers, as Infobip documents for external chatbots
(`customer_writes_to`).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests

from bridge import signing


def now_iso() -> str:
    value = datetime.now(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+00:00"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Fault:
    """Answer the next `count` matching requests with `status` (or reset / hang the connection)."""

    method: str
    pattern: str
    count: int
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    action: str = "status"  # status, reset (after reading the request), hang
    hang_seconds: float = 5.0


class FakeServer:
    """A threaded HTTP server with a route table, request log and fault injection."""

    name = "fake"

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., tuple[int, Any]]]] = []
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open (kept-alive) connections, as a stopped server would."""
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def route(self, method: str, pattern: str, func: Callable[..., tuple[int, Any]]) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), func))

    def fail(self, method: str, pattern: str, count: int = 1, status: int = 500, **kwargs: Any) -> Fault:
        fault = Fault(method=method, pattern=pattern, count=count, status=status, **kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def calls(self, method: str | None = None, pattern: str | None = None) -> list[Recorded]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method)
                and (pattern is None or re.match(f"^{pattern}$", r.path))
            ]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.count > 0 and fault.method == method and re.match(f"^{fault.pattern}$", path):
                    fault.count -= 1
                    return fault
        return None

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        record = Recorded(
            method=handler.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k: v for k, v in handler.headers.items()},
            body=body,
        )
        with self.lock:
            self.requests.append(record)
        fault = self._take_fault(handler.command, parts.path)
        if fault is not None:
            if fault.action == "reset":
                handler.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                handler.connection.close()
                handler.close_connection = True
                return
            if fault.action == "hang":
                time.sleep(fault.hang_seconds)
                handler.close_connection = True
                return
            self._send(handler, fault.status, fault.body or {"error": "injected fault"}, fault.headers)
            return
        for method, pattern, func in self.routes:
            match = pattern.match(parts.path)
            if method == handler.command and match:
                try:
                    status, payload = func(record, *[unquote(g) for g in match.groups()])
                except Exception as exc:  # a bug in the fake must show, not hang the client
                    status, payload = 500, {"error": f"fake server error: {exc!r}"}
                self._send(handler, status, payload)
                return
        self._send(handler, 404, {"error": f"no route for {handler.command} {parts.path}"})

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in separate writes

            def setup(self) -> None:
                super().setup()
                with server.lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server.lock:
                    server._connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                server._dispatch(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        return Handler


class FakeInfobip(FakeServer):
    """The parts of Infobip's Conversations API the bridge uses, with an in-memory account."""

    name = "fake-infobip"
    SENDER = "447860099299"

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(port, host)
        self.conversations: dict[str, dict[str, Any]] = {}
        self.webhook_url = ""
        self.account_tags: set[str] = set()
        conv = r"/ccaas/1/conversations/([^/]+)"
        self.route("GET", conv, self._get_conversation)
        self.route("PATCH", conv, self._update_conversation)
        self.route("PUT", conv, self._update_conversation)
        self.route("GET", conv + "/messages", self._get_messages)
        self.route("POST", conv + "/messages", self._create_message)
        self.route("POST", conv + "/events", lambda r, c: (200, {}))
        self.route("GET", conv + "/metadata", lambda r, c: (200, self._conv(c)["metadata"]))
        self.route("PUT", conv + "/metadata", self._put_metadata)
        self.route("POST", conv + "/tags", self._add_tag)
        self.route("POST", conv + "/route", self._route)
        self.route("PUT", conv + "/assignee", self._assign)
        self.route("GET", r"/ccaas/1/tags", self._get_tags)
        self.route("POST", r"/ccaas/1/tags", self._create_tag)
        self.route("PUT", r"/ccaas/1/account/configuration", self._account_config)
        self.route("DELETE", conv + "/assignee", self._unassign)
        self.bots: dict[str, dict[str, Any]] = {}
        self.all_bot_ids: set[str] = set()  # every bot id ever created here (deleted ones included)
        self.route("GET", r"/ccaas/1/bots", self._list_bots)
        self.route("POST", r"/ccaas/1/bots", self._create_bot)
        self.route("GET", r"/ccaas/1/bots/([^/]+)", self._get_bot)
        self.route("PUT", r"/ccaas/1/bots/([^/]+)", self._update_bot)
        self.route("DELETE", r"/ccaas/1/bots/([^/]+)", self._delete_bot)

    # --- test and demo helpers ---------------------------------------------------------------------
    def add_conversation(
        self,
        conversation_id: str | None = None,
        *,
        customer: str = "447700900123",
        channel: str = "WHATSAPP",
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        status: str = "OPEN",
        sender: str | None = None,
    ) -> str:
        conversation_id = conversation_id or uuid.uuid4().hex.upper()
        with self.lock:
            self.conversations[conversation_id] = {
                "id": conversation_id,
                "status": status,
                "priority": "NORMAL",
                "messages": [],
                "tags": list(tags or []),
                "metadata": dict(metadata or {}),
                "customer": customer,
                "channel": channel,
                "agentId": None,
                "routed": False,
                "sender": sender or self.SENDER,
                "queueId": None,
            }
            self.account_tags.update(tags or [])
        return conversation_id

    def message(
        self,
        conversation_id: str,
        text: str,
        *,
        direction: str = "INBOUND",
        author: str = "CUSTOMER",
        created_at: str | None = None,
        message_id: str | None = None,
        store: bool = True,
    ) -> dict[str, Any]:
        """A message object as Infobip shows it (and POSTs it to the account webhook)."""
        conv = self._conv(conversation_id)
        inbound = direction == "INBOUND"
        item = {
            "id": message_id or uuid.uuid4().hex.upper(),
            "channel": conv["channel"],
            "from": conv["customer"] if inbound else conv["sender"],
            "to": conv["sender"] if inbound else conv["customer"],
            "direction": direction,
            "conversationId": conversation_id,
            "createdAt": created_at or now_iso(),
            "updatedAt": created_at or now_iso(),
            "contentType": "TEXT",
            "content": {"text": text},
            "authorType": author,
        }
        if inbound:
            item["singleSendMessage"] = {
                "from": {"phoneNumber": conv["customer"], "type": "PHONE_NUMBER"},
                "to": {"phoneNumber": conv["sender"], "type": "PHONE_NUMBER"},
                "content": {"text": text, "type": "TEXT"},
                "channel": conv["channel"],
                "direction": "INBOUND",
            }
        if store:
            with self.lock:
                conv["messages"].append(item)
        return item

    def customer_says(self, conversation_id: str, text: str, **kwargs: Any) -> dict[str, Any]:
        """The customer writes: stored, and POSTed to the configured webhook like Infobip would."""
        item = self.message(conversation_id, text, **kwargs)
        if self.webhook_url:
            requests.post(self.webhook_url, json=item, timeout=10)
        return item

    def customer_writes_to(
        self, destination: str, text: str, *, customer: str = "447700900123", channel: str = "WHATSAPP"
    ) -> tuple[dict[str, Any], requests.Response | None]:
        """A customer writes to a business number, as external bots see it: the customer's open
        conversation on that number (a new one if none), the message stored, and, while an enabled
        bot serves the number and no one else holds the conversation, POSTed to the bot's webhook
        with its static headers; a new conversation is assigned to the bot. A disabled or deleted
        bot's conversation is re-routed instead, on this message. Returns (message, bot's answer)."""
        with self.lock:
            conv = next(
                (
                    c
                    for c in self.conversations.values()
                    if c["customer"] == customer
                    and c["sender"] == destination
                    and c["channel"] == channel
                    and c["status"] != "CLOSED"
                ),
                None,
            )
        if conv is None:
            conv = self._conv(self.add_conversation(customer=customer, channel=channel, sender=destination))
        item = self.message(conv["id"], text)
        bot = next(
            (b for b in self.bots.values() if b["destination"] == destination and b["channel"] == channel),
            None,
        )
        with self.lock:
            held_by_bot = conv["agentId"] is not None and conv["agentId"] in self.all_bot_ids
            if bot is None or not bot.get("enabled", True):
                if held_by_bot:  # "its open conversations are re-routed on the next inbound message"
                    conv["agentId"], conv["routed"] = None, True
                return item, None
            if conv["agentId"] is None and not conv["routed"]:
                conv["agentId"] = bot["id"]
            if conv["agentId"] != bot["id"]:
                return item, None
        headers = {**(bot.get("webhookHeaders") or {}), **(bot.get("webhookEventHeaders") or {})}
        answer = requests.post(bot["webhookUrl"], json=item, headers=headers, timeout=10)
        return item, answer

    def sent_to_customer(self, conversation_id: str) -> list[dict[str, Any]]:
        """Messages the bridge created (Create Message), in the order Infobip accepted them."""
        with self.lock:
            return [m for m in self._conv(conversation_id)["messages"] if m.get("_via_api")]

    def _conv(self, conversation_id: str) -> dict[str, Any]:
        conv = self.conversations.get(conversation_id)
        if conv is None:
            raise LookupError(conversation_id)
        return conv

    @staticmethod
    def _not_found(conversation_id: str) -> tuple[int, Any]:
        return 400, {
            "requestError": {
                "serviceException": {
                    "messageId": "NOT_FOUND",
                    "text": f"Invalid id '{conversation_id}' given! No such entity exists.",
                }
            }
        }

    @staticmethod
    def _closed() -> tuple[int, Any]:
        return 400, {
            "requestError": {
                "serviceException": {
                    "messageId": "BAD_REQUEST",
                    "text": "Closed conversation cannot be changed",
                }
            }
        }

    def _public(self, conv: dict[str, Any]) -> dict[str, Any]:
        return {k: conv[k] for k in ("id", "status", "priority", "agentId", "queueId")} | {
            "topic": None,
            "summary": None,
            "createdAt": now_iso(),
            "updatedAt": now_iso(),
            "closedAt": None,
        }

    # --- routes ------------------------------------------------------------------------------------
    def _get_conversation(self, req: Recorded, cid: str) -> tuple[int, Any]:
        if cid not in self.conversations:
            return self._not_found(cid)
        return 200, self._public(self.conversations[cid])

    def _update_conversation(self, req: Recorded, cid: str) -> tuple[int, Any]:
        if cid not in self.conversations:
            return self._not_found(cid)
        conv = self.conversations[cid]
        if conv["status"] == "CLOSED":
            return self._closed()
        body = req.json or {}
        with self.lock:
            conv["status"] = body.get("status", conv["status"])
            conv["queueId"] = body.get("queueId", conv["queueId"])
        return 200, self._public(conv)

    def _get_messages(self, req: Recorded, cid: str) -> tuple[int, Any]:
        if cid not in self.conversations:
            return self._not_found(cid)
        limit = int(req.query.get("limit", ["10"])[0])
        page = int(req.query.get("page", ["0"])[0])
        if limit > 999:
            return 400, {
                "requestError": {"serviceException": {"messageId": "BAD_REQUEST", "text": "limit too big"}}
            }
        with self.lock:
            items = [
                {k: v for k, v in m.items() if not k.startswith("_")}
                for m in self.conversations[cid]["messages"]
            ]
        wanted = req.query.get("messageIds")
        if wanted:
            items = [m for m in items if m["id"] in wanted]
        if req.query.get("orderBy", ["id:asc"])[0].lower().startswith("createdat"):
            items.sort(key=lambda m: m["createdAt"], reverse=req.query["orderBy"][0].lower().endswith("desc"))
        else:
            items.sort(key=lambda m: m["id"])
        after = req.query.get("createdAfter")
        if after:
            items = [m for m in items if m["createdAt"] > after[0].replace("+0000", "+00:00")]
        chunk = items[page * limit : (page + 1) * limit]
        pagination = {
            "totalItems": len(items),
            "page": page,
            "limit": limit,
            "orderBy": req.query.get("orderBy", ["id:asc"])[0],
        }
        return 200, {"messages": chunk, "pagination": pagination}

    def _create_message(self, req: Recorded, cid: str) -> tuple[int, Any]:
        if cid not in self.conversations:
            return self._not_found(cid)
        conv = self.conversations[cid]
        if conv["status"] == "CLOSED":
            return self._closed()
        body = req.json or {}
        missing = [k for k in ("channel", "from", "to", "contentType", "content") if not body.get(k)]
        if missing:
            return 400, {
                "requestError": {
                    "serviceException": {
                        "messageId": "BAD_REQUEST",
                        "text": f"{', '.join(missing)} must not be blank",
                    }
                }
            }
        if conv["agentId"] and req.headers.get("x-agent-id") != conv["agentId"]:
            return 400, {
                "requestError": {
                    "serviceException": {
                        "messageId": "BAD_REQUEST",
                        "text": "x-agent-id must be the assigned agent (or bot) of the conversation",
                    }
                }
            }
        item = {
            "id": uuid.uuid4().hex.upper(),
            "channel": body["channel"],
            "from": body["from"],
            "to": body["to"],
            "direction": "OUTBOUND",
            "conversationId": cid,
            "createdAt": now_iso(),
            "updatedAt": now_iso(),
            "contentType": body["contentType"],
            "content": body["content"],
            "authorType": "AGENT",
            "_via_api": True,
        }
        with self.lock:
            conv["messages"].append(item)
        return 200, {k: v for k, v in item.items() if not k.startswith("_")}

    def _put_metadata(self, req: Recorded, cid: str) -> tuple[int, Any]:
        self._conv(cid)["metadata"] = req.json or {}
        return 200, {"statusCode": "SUCCESS", "message": "Metadata added to conversation successfully."}

    def _get_tags(self, req: Recorded) -> tuple[int, Any]:
        cid = req.query.get("conversationId", [None])[0]
        names = self._conv(cid)["tags"] if cid in self.conversations else sorted(self.account_tags)
        tags = [{"name": n, "id": n, "createdAt": now_iso(), "updatedAt": now_iso()} for n in names]
        return 200, {
            "tags": tags,
            "pagination": {"totalItems": len(tags), "page": 0, "limit": 999, "orderBy": "id:asc"},
        }

    def _create_tag(self, req: Recorded) -> tuple[int, Any]:
        name = (req.json or {}).get("name", "")
        if name in self.account_tags:
            return 400, {"statusCode": "ERROR", "message": "Tag already exists."}
        self.account_tags.add(name)
        return 200, {"name": name, "createdAt": now_iso()}

    def _add_tag(self, req: Recorded, cid: str) -> tuple[int, Any]:
        name = (req.json or {}).get("tagName", "")
        if name not in self.account_tags:
            return 400, {
                "statusCode": "ERROR",
                "message": f"Invalid tagName '{name}' given! No such entity exists.",
            }
        self._conv(cid)["tags"].append(name)
        return 200, {"statusCode": "SUCCESS", "message": "Tag added to conversation successfully."}

    def _route(self, req: Recorded, cid: str) -> tuple[int, Any]:
        conv = self._conv(cid)
        conv["routed"], conv["agentId"] = True, None
        return 200, self._public(conv)

    def _assign(self, req: Recorded, cid: str) -> tuple[int, Any]:
        conv = self._conv(cid)
        conv["agentId"] = (req.json or {}).get("agentId")
        return 200, self._public(conv)

    def _unassign(self, req: Recorded, cid: str) -> tuple[int, Any]:
        conv = self._conv(cid)
        conv["agentId"] = None
        return 200, self._public(conv)

    # --- external bots -----------------------------------------------------------------------------
    @staticmethod
    def _bot_public(bot: dict[str, Any]) -> dict[str, Any]:
        # Infobip shows a bot without its headers (Get bot / Get bots examples of the spec).
        return {k: v for k, v in bot.items() if k not in ("webhookHeaders", "webhookEventHeaders")}

    @staticmethod
    def _bot_not_found(bot_id: str) -> tuple[int, Any]:
        return 404, {
            "requestError": {
                "serviceException": {"messageId": "NOT_FOUND", "text": f"Invalid bot id given '{bot_id}'"}
            }
        }

    @staticmethod
    def _bad_bot(body: Any) -> tuple[int, Any] | None:
        if not isinstance(body, dict) or any(
            not body.get(k) for k in ("displayName", "destination", "channel")
        ):
            return 400, {
                "requestError": {
                    "serviceException": {
                        "messageId": "BAD_REQUEST",
                        "text": "Required request body is missing or not valid.",
                    }
                }
            }
        return None

    def _list_bots(self, req: Recorded) -> tuple[int, Any]:
        limit = int(req.query.get("limit", ["10"])[0])
        page = int(req.query.get("page", ["0"])[0])
        items = [self._bot_public(b) for b in sorted(self.bots.values(), key=lambda b: b["id"])]
        chunk = items[page * limit : (page + 1) * limit]
        return 200, {
            "bots": chunk,
            "pagination": {"totalItems": len(items), "page": page, "limit": limit, "orderBy": "id:ASC"},
        }

    def _create_bot(self, req: Recorded) -> tuple[int, Any]:
        bad = self._bad_bot(req.json)
        if bad:
            return bad
        bot = {"enabled": True, "sessionTimeoutInSec": 86400, **req.json, "id": uuid.uuid4().hex.upper()}
        with self.lock:
            self.bots[bot["id"]] = bot
            self.all_bot_ids.add(bot["id"])
        return 200, self._bot_public(bot)

    def _get_bot(self, req: Recorded, bot_id: str) -> tuple[int, Any]:
        if bot_id not in self.bots:
            return self._bot_not_found(bot_id)
        return 200, self._bot_public(self.bots[bot_id])

    def _update_bot(self, req: Recorded, bot_id: str) -> tuple[int, Any]:
        if bot_id not in self.bots:
            return self._bot_not_found(bot_id)
        bad = self._bad_bot(req.json)
        if bad:
            return bad
        with self.lock:
            self.bots[bot_id] = {"enabled": True, "sessionTimeoutInSec": 86400, **req.json, "id": bot_id}
        return 200, self._bot_public(self.bots[bot_id])

    def _delete_bot(self, req: Recorded, bot_id: str) -> tuple[int, Any]:
        if bot_id not in self.bots:
            return self._bot_not_found(bot_id)
        with self.lock:
            del self.bots[bot_id]
        return 200, {}

    def _account_config(self, req: Recorded) -> tuple[int, Any]:
        self.webhook_url = (req.json or {}).get("webhookUrl", "")
        return 200, {"statusCode": "SUCCESS", "message": "Account configuration successfully updated."}


class FakeGenericCcaas(FakeServer):
    """A contact center speaking the generic protocol (docs/protocol.md), in webhook or poll mode."""

    name = "fake-ccaas"

    def __init__(
        self,
        secret: str,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        webhook_url: str = "",
        check_signatures: bool = True,
    ) -> None:
        super().__init__(port, host)
        self.secret = secret
        self.webhook_url = webhook_url  # set: agent events are POSTed there; empty: kept for GET /events
        self.check_signatures = check_signatures
        self.interactions: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.received_keys: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.events_per_page = 50  # GET /events answers at most this many, with "hasMore"
        self.route("POST", r"/bridge/interactions", self._open)
        self.route("POST", r"/bridge/interactions/([^/]+)/messages", self._message)
        self.route("POST", r"/bridge/interactions/([^/]+)/close", self._close)
        self.route("GET", r"/bridge/events", self._events)
        self.route("GET", r"/bridge", lambda r: (200, {"status": "ok"}))

    @property
    def base_url(self) -> str:
        return f"{self.url}/bridge"

    def _verify(self, req: Recorded) -> tuple[int, Any] | None:
        if not self.check_signatures:
            return None
        try:
            signing.verify(self.secret, req.body, req.headers)
        except Exception as exc:
            return 401, {"error": str(exc)}
        return None

    def _open(self, req: Recorded) -> tuple[int, Any]:
        if bad := self._verify(req):
            return bad
        key = req.headers.get("Idempotency-Key", "")
        with self.lock:
            if key and key in self.by_key:
                return 200, {"id": self.by_key[key]}
            interaction_id = f"INT-{len(self.interactions) + 1}"
            body = req.json
            self.interactions[interaction_id] = {
                "open": body,
                "messages": [],
                "closed": None,
                "duplicates": 0,
            }
            if key:
                self.by_key[key] = interaction_id
        return 201, {"id": interaction_id}

    def _message(self, req: Recorded, interaction_id: str) -> tuple[int, Any]:
        if bad := self._verify(req):
            return bad
        interaction = self.interactions.get(interaction_id)
        if interaction is None:
            return 404, {"error": "no such interaction"}
        key = req.headers.get("Idempotency-Key", "")
        with self.lock:
            if key in self.received_keys:
                interaction["duplicates"] += 1
                return 200, {"duplicate": True}
            self.received_keys.append(key)
            interaction["messages"].append(req.json)
        return 202, {}

    def _close(self, req: Recorded, interaction_id: str) -> tuple[int, Any]:
        if bad := self._verify(req):
            return bad
        interaction = self.interactions.get(interaction_id)
        if interaction is None:
            return 404, {"error": "no such interaction"}
        interaction["closed"] = (req.json or {}).get("reason")
        return 200, {}

    def _events(self, req: Recorded) -> tuple[int, Any]:
        if bad := self._verify(req):
            return bad
        after = req.query.get("after", [None])[0]
        start = int(after) if after else 0
        with self.lock:
            batch = self.events[start : start + self.events_per_page]
            more = start + len(batch) < len(self.events)
        return 200, {"events": batch, "cursor": str(start + len(batch)), "hasMore": more}

    # --- what agents do ----------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> requests.Response | None:
        with self.lock:
            self.events.append(event)
        if not self.webhook_url:
            return None
        body = json.dumps({"events": [event]}).encode()
        headers = {"Content-Type": "application/json", **signing.sign(self.secret, body)}
        return requests.post(self.webhook_url, data=body, headers=headers, timeout=10)

    def agent_says(self, interaction_id: str, text: str, *, agent: str = "Alice") -> dict[str, Any]:
        n = len(self.events) + 1
        event = {
            "id": f"evt-{n}-{uuid.uuid4().hex[:8]}",
            "type": "agent_message",
            "interactionId": interaction_id,
            "message": {
                "id": f"msg-{n}-{uuid.uuid4().hex[:8]}",
                "contentType": "TEXT",
                "content": {"text": text},
                "agent": {"id": "agent-1", "name": agent},
            },
        }
        self.emit(event)
        return event

    def agent_accepts(self, interaction_id: str) -> dict[str, Any]:
        event = {"id": f"evt-acc-{uuid.uuid4().hex[:8]}", "type": "accepted", "interactionId": interaction_id}
        self.emit(event)
        return event

    def agent_closes(self, interaction_id: str) -> dict[str, Any]:
        event = {"id": f"evt-close-{uuid.uuid4().hex[:8]}", "type": "closed", "interactionId": interaction_id}
        self.emit(event)
        return event
