"""A local fake of the Genesys Cloud API parts the `genesys` connector uses, on real loopback HTTP.

It answers as Genesys' developer documentation describes (see tests/fixtures/genesys/README.md):
the OAuth client-credentials token endpoint, inbound open messages (checked against the documented
OpenInboundNormalizedMessage fields; customAttributes must be strings), message details, message
conversations with participants, disconnecting a conversation, inbound receipts and the integration.
Conversations are keyed by the customer's `channel.from.id`, as Genesys does: a message from an id
whose conversation ended starts a new conversation. What agents do (join, reply, type, end) is
produced here as the signed NormalizedMessage webhooks Genesys would send.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from bridge.connectors.genesys import SIGNATURE_HEADER, signature
from bridge.demo.fakes import FakeServer, Recorded, now_iso

CLIENT_ID = "genesys-client-id"
CLIENT_SECRET = "genesys-client-secret-do-not-log"
INTEGRATION_ID = "c6b0e62f-8487-44fd-a218-c16e006a7a23"
WEBHOOK_SECRET = "genesys-webhook-secret"
AGENT = {"id": "5a5b5c5d-0000-4000-8000-00000000a9e1", "name": "Ada Agent"}

FROM_FIELDS = {"id", "idType", "nickname", "firstName", "lastName", "image", "email"}
CHANNEL_FIELDS = {"from", "time", "messageId", "metadata"}
MESSAGE_FIELDS = {"channel", "text", "content", "metadata"}


TEXT_LIMIT = 4000  # the Open Messaging text limit shown to agents


class FakeGenesys(FakeServer):
    name = "fake-genesys"

    def __init__(self, port: int = 0, *, token_lifetime: int = 86400) -> None:
        super().__init__(port)
        self.token_lifetime = token_lifetime
        self.tokens: dict[str, float] = {}  # token -> expiry
        self.token_requests = 0
        self.conversations: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}  # Genesys message id -> message
        self.receipts: list[dict[str, Any]] = []
        self.ids = itertools.count(1)
        prefix = r"/api/v2/conversations/messages"
        self.route("POST", r"/oauth/token", self._token)
        self.route("POST", prefix + r"/([^/]+)/inbound/open/message", self._inbound)
        self.route("POST", prefix + r"/([^/]+)/inbound/open/receipt", self._receipt)
        self.route("GET", prefix + r"/([^/]+)/details", self._details)
        self.route("GET", prefix + r"/([^/]+)", self._conversation)
        self.route("PATCH", prefix + r"/([^/]+)", self._patch)
        self.route("GET", r"/api/v2/conversations/messaging/integrations/open/([^/]+)", self._integration)

    # --- what happens in Genesys ---------------------------------------------------------------------
    def conversation_of(self, customer_id: str) -> dict[str, Any]:
        """The newest conversation of a customer id."""
        found = [c for c in self.conversations.values() if c["customer_id"] == customer_id]
        assert found, f"no conversation for {customer_id}"
        return found[-1]

    def inbound_texts(self, customer_id: str) -> list[str]:
        return [
            m["text"]
            for c in self.conversations.values()
            if c["customer_id"] == customer_id
            for m in c["messages"]
        ]

    def agent_joins(self, conversation_id: str) -> None:
        conversation = self.conversations[conversation_id]
        for p in conversation["participants"]:
            if p["purpose"] == "acd" and p["state"] == "connected":
                self._end(p)
        conversation["participants"].append(
            self._participant("agent", name=AGENT["name"], user={"id": AGENT["id"], "name": AGENT["name"]})
        )

    def agent_transfers_to_queue(self, conversation_id: str) -> None:
        conversation = self.conversations[conversation_id]
        for p in conversation["participants"]:
            if p["purpose"] == "agent" and p["state"] == "connected":
                self._end(p, "transfer")
        conversation["participants"].append(self._participant("acd", name="Support"))

    def agent_ends(self, conversation_id: str) -> None:
        """The agent clicks End: agent and customer legs are disconnected (an Open Messaging
        conversation without a persistent session ends with its agent)."""
        for p in self.conversations[conversation_id]["participants"]:
            if p["state"] != "disconnected":
                self._end(p, "peer" if p["purpose"] == "customer" else "client")

    def agent_says(
        self, conversation_id: str, text: str = "", attachments: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The outbound NormalizedMessage the webhook receives for an agent's message."""
        conversation = self.conversations[conversation_id]
        message_id = uuid.uuid4().hex
        body: dict[str, Any] = {
            "id": message_id,
            "channel": {
                "id": INTEGRATION_ID,
                "platform": "Open",
                "type": "Private",
                "to": {"id": conversation["customer_id"], "idType": "Opaque"},
                "from": {"nickname": "Bridge integration", "id": INTEGRATION_ID, "idType": "Opaque"},
                "time": now_iso().replace("+00:00", "Z"),
                "messageId": message_id,
            },
            "type": "Text",
            "direction": "Outbound",
        }
        if text:
            body["text"] = text
        if attachments:
            body["content"] = [{"contentType": "Attachment", "attachment": a} for a in attachments]
        conversation["outbound"].append(body)
        return body

    def agent_types(self, conversation_id: str) -> dict[str, Any]:
        conversation = self.conversations[conversation_id]
        message_id = uuid.uuid4().hex
        return {
            "id": message_id,
            "channel": {
                "id": INTEGRATION_ID,
                "platform": "Open",
                "type": "Private",
                "to": {"id": conversation["customer_id"]},
                "from": {"nickname": "Bridge integration", "id": INTEGRATION_ID, "idType": "Opaque"},
                "time": now_iso().replace("+00:00", "Z"),
                "messageId": message_id,
            },
            "type": "Event",
            "events": [{"eventType": "Typing", "typing": {"type": "On", "duration": 5000}}],
            "direction": "Outbound",
        }

    @staticmethod
    def signed(body: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(body).encode()
        return raw, {SIGNATURE_HEADER: signature(secret, raw)}

    # --- the API -------------------------------------------------------------------------------------
    @staticmethod
    def _participant(purpose: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "purpose": purpose,
            "state": "connected",
            "startTime": now_iso(),
            "connectedTime": now_iso(),
            **extra,
        }

    @staticmethod
    def _end(participant: dict[str, Any], how: str = "client") -> None:
        participant.update(state="disconnected", endTime=now_iso(), disconnectType=how)

    def _authorized(self, req: Recorded) -> bool:
        header = req.headers.get("Authorization") or ""
        token = header.removeprefix("Bearer ")
        return header.startswith("Bearer ") and self.tokens.get(token, 0) > time.time()

    def _token(self, req: Recorded) -> tuple[int, Any]:
        self.token_requests += 1
        form = parse_qs(req.body.decode())
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if req.headers.get("Authorization") != f"Basic {basic}":
            return 401, {"error": "invalid_client", "description": "client not found"}
        if form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type"}
        token = f"tok-{next(self.ids)}-{uuid.uuid4().hex[:8]}"
        self.tokens[token] = time.time() + self.token_lifetime
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime}

    def _inbound(self, req: Recorded, integration_id: str) -> tuple[int, Any]:
        if not self._authorized(req):
            return 401, {"status": 401, "code": "bad.credentials", "message": "Invalid login credentials."}
        if integration_id != INTEGRATION_ID:
            return 404, {"status": 404, "code": "not.found", "message": "integration not found"}
        body = req.json or {}
        channel = body.get("channel") or {}
        sender = channel.get("from") or {}
        problems = [
            *(f"unknown field {k}" for k in set(body) - MESSAGE_FIELDS),
            *(f"unknown channel field {k}" for k in set(channel) - CHANNEL_FIELDS),
            *(f"unknown from field {k}" for k in set(sender) - FROM_FIELDS),
        ]
        if not sender.get("id") or not channel.get("time"):
            problems.append("channel.from.id and channel.time are required")
        if not body.get("text") and not body.get("content"):
            problems.append("text or content is required")
        if len(str(body.get("text") or "").encode("utf-16-le")) // 2 > TEXT_LIMIT:
            problems.append(f"text is longer than {TEXT_LIMIT} characters")
        attributes = (channel.get("metadata") or {}).get("customAttributes") or {}
        if any(not isinstance(v, str) for v in attributes.values()):
            problems.append("customAttributes values must be strings")
        if problems:
            return 400, {"status": 400, "code": "bad.request", "message": "; ".join(problems)}
        customer_id = sender["id"]
        conversation = next(
            (
                c
                for c in reversed(list(self.conversations.values()))
                if c["customer_id"] == customer_id
                and any(p["purpose"] == "customer" and p["state"] == "connected" for p in c["participants"])
            ),
            None,
        )
        if conversation is None:
            conversation_id = str(uuid.uuid4())
            conversation = {
                "id": conversation_id,
                "customer_id": customer_id,
                "participants": [
                    self._participant("customer", name=sender.get("nickname"), attributes=dict(attributes)),
                    self._participant("acd", name="Support"),
                ],
                "messages": [],
                "outbound": [],
            }
            self.conversations[conversation_id] = conversation
        message_id = uuid.uuid4().hex
        message = {"id": message_id, "conversationId": conversation["id"], **body}
        conversation["messages"].append({"id": message_id, "text": body.get("text"), "body": body})
        self.messages[message_id] = message
        answer = {
            "id": message_id,
            "channel": {
                "id": INTEGRATION_ID,
                "platform": "Open",
                "type": "Private",
                "messageId": channel.get("messageId"),
                "to": {"id": INTEGRATION_ID},
                "from": sender,
                "time": channel["time"],
            },
            "type": "Text",
            "text": body.get("text"),
            "direction": "Inbound",
        }
        return 200, answer

    def _receipt(self, req: Recorded, integration_id: str) -> tuple[int, Any]:
        if not self._authorized(req):
            return 401, {"status": 401, "code": "bad.credentials"}
        body = req.json or {}
        if body.get("status") not in ("Delivered", "Failed") or not body.get("id"):
            return 400, {"status": 400, "code": "bad.request", "message": "id and status are required"}
        self.receipts.append(body)
        return 200, {**body, "type": "Receipt"}

    def _details(self, req: Recorded, message_id: str) -> tuple[int, Any]:
        if not self._authorized(req):
            return 401, {"status": 401, "code": "bad.credentials"}
        message = self.messages.get(message_id)
        if message is None:
            return 404, {"status": 404, "code": "not.found", "message": "message not found"}
        return 200, {
            "id": message_id,
            "conversationId": message["conversationId"],
            "direction": "inbound",
            "messengerType": "open",
            "textBody": message.get("text"),
            "status": "received",
            "timestamp": message["channel"]["time"],
        }

    def _conversation(self, req: Recorded, conversation_id: str) -> tuple[int, Any]:
        if not self._authorized(req):
            return 401, {"status": 401, "code": "bad.credentials"}
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            return 404, {"status": 404, "code": "not.found", "message": "conversation not found"}
        return 200, {
            "id": conversation_id,
            "participants": conversation["participants"],
            "selfUri": f"/api/v2/conversations/messages/{conversation_id}",
        }

    def _patch(self, req: Recorded, conversation_id: str) -> tuple[int, Any]:
        if not self._authorized(req):
            return 401, {"status": 401, "code": "bad.credentials"}
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            return 404, {"status": 404, "code": "not.found"}
        if (req.json or {}).get("state") == "disconnected":
            for p in conversation["participants"]:
                if p["state"] != "disconnected":
                    self._end(p, "client" if p["purpose"] == "customer" else "peer")
        return 200, {"id": conversation_id, "participants": conversation["participants"]}

    def _integration(self, req: Recorded, integration_id: str) -> tuple[int, Any]:
        if not self._authorized(req):
            return 401, {"status": 401, "code": "bad.credentials"}
        if integration_id != INTEGRATION_ID:
            return 404, {"status": 404, "code": "not.found"}
        return 200, {
            "id": INTEGRATION_ID,
            "name": "Infobip bridge",
            "messengerType": "open",
            "outboundNotificationWebhookUrl": "http://localhost:8000/webhooks/ccaas/genesys/",
            "status": "Active",
        }
