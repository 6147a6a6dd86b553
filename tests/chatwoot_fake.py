"""A stateful fake of Chatwoot's application API at the HTTP seam (`responses`), answering as the
spec says, and checking every request the bridge sends against Chatwoot's OpenAPI document."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
import uuid

import responses

from tests.openapi import assert_conforms

BASE_URL = "https://chat.acme.test"
ACCOUNT = 1
INBOX = 5
AGENT = {"id": 3, "name": "Bo Agent", "type": "user"}


def chatwoot_signature(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "X-Chatwoot-Signature": f"sha256={digest}",
        "X-Chatwoot-Timestamp": ts,
        "X-Chatwoot-Delivery": str(uuid.uuid4()),
    }


class FakeChatwoot:
    def __init__(self, mock: responses.RequestsMock, base_url: str = BASE_URL) -> None:
        self.spec = "chatwoot-application-api-openapi.yml"
        self.base_url = base_url
        self.contacts: dict[int, dict] = {}
        self.conversations: dict[int, dict] = {}
        self.messages: dict[int, list[dict]] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.ids = itertools.count(100)
        self.message_ids = itertools.count(4000)
        for method in (responses.GET, responses.POST):
            mock.add_callback(method, re.compile(re.escape(base_url) + r"/api/v1/.*"), callback=self._handle)

    # --- what agents do in Chatwoot ----------------------------------------------------------------
    def agent_replies(self, conversation_id: int, content: str, *, private: bool = False) -> dict:
        message = self._message(conversation_id, content, message_type=1, private=private, sender=AGENT)
        return {
            "event": "message_created",
            "id": message["id"],
            "content": content,
            "created_at": "2026-01-01T10:05:00.000Z",
            "message_type": "outgoing",
            "content_type": "text",
            "content_attributes": {},
            "private": private,
            "sender": AGENT,
            "conversation": {"id": conversation_id, "inbox_id": INBOX, "status": "open"},
            "account": {"id": ACCOUNT},
        }

    def webhook_for(self, message: dict) -> dict:
        """The message_created webhook Chatwoot sends for a message (also for the bridge's own)."""
        return {
            "event": "message_created",
            "id": message["id"],
            "content": message["content"],
            "message_type": {0: "incoming", 1: "outgoing"}[message["message_type"]],
            "private": message["private"],
            "sender": message["sender"],
            "conversation": {"id": message["conversation_id"], "inbox_id": INBOX},
            "account": {"id": ACCOUNT},
        }

    def resolve(self, conversation_id: int) -> dict:
        self.conversations[conversation_id]["status"] = "resolved"
        return {
            "event": "conversation_status_changed",
            **self.conversations[conversation_id],
            "changed_attributes": [{"status": {"previous_value": "open", "current_value": "resolved"}}],
            "account": {"id": ACCOUNT},
        }

    # --- the API -----------------------------------------------------------------------------------
    def _message(self, conversation_id, content, *, message_type, private, sender) -> dict:
        message = {
            "id": next(self.message_ids),
            "content": content,
            "message_type": message_type,
            "private": private,
            "sender": sender,
            "conversation_id": conversation_id,
            "created_at": int(time.time()),
        }
        self.messages[conversation_id].append(message)
        return message

    def _handle(self, request):
        assert_conforms(self.spec, request)
        assert request.headers.get("api_access_token") == "cw-token"
        body = json.loads(request.body) if request.body else None
        path = request.path_url.split("?")[0]
        self.requests.append((request.method, request.path_url, body))
        if path == "/api/v1/profile":
            return 200, {}, json.dumps({"id": 3, "name": "Bridge Bot", "email": "bot@acme.test"})
        account = f"/api/v1/accounts/{ACCOUNT}"
        if not path.startswith(account):
            return 404, {}, json.dumps({"error": "not found"})
        path = path[len(account) :]
        if path == "/contacts/search":
            # As Chatwoot searches: name, e-mail, phone number or identifier containing q, 15 a page.
            q = request.params["q"].lower()
            found = [
                c
                for c in self.contacts.values()
                if any(
                    q in str(c.get(k) or "").lower() for k in ("name", "email", "phone_number", "identifier")
                )
            ]
            page = int(request.params.get("page") or 1)
            chunk = found[(page - 1) * 15 : page * 15]
            return (
                200,
                {},
                json.dumps({"meta": {"count": len(found), "current_page": page}, "payload": chunk}),
            )
        if path == "/contacts" and request.method == "POST":
            contact = {"id": next(self.ids), **{k: v for k, v in body.items() if k != "inbox_id"}}
            self.contacts[contact["id"]] = contact
            inbox = {"source_id": str(uuid.uuid4()), "inbox": {"id": body["inbox_id"]}}
            return 200, {}, json.dumps({"payload": {"contact": contact, "contact_inbox": inbox}})
        match = re.fullmatch(r"/contacts/(\d+)/(contact_inboxes|conversations)", path)
        if match:
            contact_id = int(match.group(1))
            if match.group(2) == "contact_inboxes":
                return (
                    200,
                    {},
                    json.dumps({"source_id": str(uuid.uuid4()), "inbox": {"id": body["inbox_id"]}}),
                )
            mine = [c for c in self.conversations.values() if c["contact_id"] == contact_id]
            return 200, {}, json.dumps({"payload": mine})
        if path == "/conversations" and request.method == "POST":
            conversation_id = next(self.ids)
            conversation = {**body, "id": conversation_id, "labels": []}
            self.conversations[conversation_id] = conversation
            self.messages[conversation_id] = []
            return (
                200,
                {},
                json.dumps({"id": conversation_id, "account_id": ACCOUNT, "inbox_id": body["inbox_id"]}),
            )
        match = re.fullmatch(r"/conversations/(\d+)(/[a-z_]+)?", path)
        if match:
            conversation_id = int(match.group(1))
            conversation = self.conversations.get(conversation_id)
            if conversation is None:
                return 404, {}, json.dumps({"error": "Resource could not be found"})
            action = match.group(2)
            if action is None:
                return 200, {}, json.dumps(conversation)
            if action == "/labels" and request.method == "GET":
                return 200, {}, json.dumps({"payload": conversation["labels"]})
            if action == "/labels":
                conversation["labels"] = body["labels"]
                return 200, {}, json.dumps({"payload": body["labels"]})
            if action == "/toggle_status":
                conversation["status"] = body["status"]
                return 200, {}, json.dumps({"payload": {"success": True, "current_status": body["status"]}})
            if action == "/messages" and request.method == "POST":
                message = self._message(
                    conversation_id,
                    body["content"],
                    message_type={"incoming": 0, "outgoing": 1}[body.get("message_type", "outgoing")],
                    private=body.get("private", False),
                    sender={"id": 3, "name": "Bridge Bot", "type": "user"}
                    if body.get("message_type") == "outgoing"
                    else {"id": conversation["contact_id"], "type": "contact"},
                )
                return 200, {}, json.dumps(message)
            if action == "/messages":
                # As the spec and Chatwoot's MessageFinder answer: `after` gives up to 100 messages
                # after that id, oldest first; with neither `after` nor `before`, the latest 20.
                messages = self.messages[conversation_id]
                if "after" in request.params:
                    after = int(request.params["after"] or 0)
                    payload = [m for m in messages if m["id"] > after][:100]
                else:
                    payload = messages[-20:]
                return 200, {}, json.dumps({"meta": {}, "payload": payload})
        return 404, {}, json.dumps({"error": "not found"})
