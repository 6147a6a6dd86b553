"""A stateful fake of the Zendesk Support API at the HTTP seam (`responses`), answering as the spec
says, and checking every request the bridge sends against Zendesk's OpenAPI document."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
from datetime import UTC, datetime

import responses

from tests.openapi import assert_conforms

BASE_URL = "https://acme.zendesk.com"
AGENT_ID = 7000001
# A known defect of the published OAS: ticket.custom_fields items point at CustomFieldObject, the
# *ticket field definition* (key, type and title required), while the Tickets reference documents
# the values as {"id": <field id>, "value": ...}
# (https://developer.zendesk.com/documentation/ticketing/managing-tickets/creating-and-updating-tickets#setting-custom-field-values).
# Only those three "required" complaints on custom_fields items are tolerated.
SPEC_DEFECTS = ((r"ticket/custom_fields/\d+", r"^'(key|type|title)' is a required property$"),)
# Sorting and paging parameters the OAS documents only in the prose of each list operation ("Sorting",
# "Pagination") and in https://developer.zendesk.com/api-reference/introduction/pagination/.
PROSE_QUERY = ("sort_order", "sort", "page", "per_page", "page[size]", "page[after]", "page[before]")


def zendesk_signature(secret: str, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    ts = timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = base64.b64encode(hmac.new(secret.encode(), ts.encode() + body, hashlib.sha256).digest()).decode()
    return {"X-Zendesk-Webhook-Signature": digest, "X-Zendesk-Webhook-Signature-Timestamp": ts}


class FakeZendesk:
    def __init__(self, mock: responses.RequestsMock, base_url: str = BASE_URL) -> None:
        self.spec = "zendesk-support-openapi.json"
        self.base_url = base_url
        self.users: dict[int, dict] = {}
        self.tickets: dict[int, dict] = {}
        self.comments: dict[int, list[dict]] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.ids = itertools.count(1001)
        self.comment_ids = itertools.count(50001)
        self.fail_next: list[tuple[int, dict]] = []
        prefix = re.escape(base_url)
        for method in (responses.GET, responses.POST, responses.PUT, responses.DELETE):
            mock.add_callback(method, re.compile(prefix + r"/api/v2/.*"), callback=self._handle)

    # --- vendor-side actions (what agents do in Zendesk) --------------------------------------------
    def agent_comments(self, ticket_id: int, body: str, *, public: bool = True) -> dict:
        comment = {
            "id": next(self.comment_ids),
            "author_id": AGENT_ID,
            "body": body,
            "plain_body": body,
            "public": public,
            "attachments": [],
            "created_at": "2026-01-01T10:05:00Z",
        }
        self.comments[ticket_id].append(comment)
        return comment

    def comment_event(self, ticket_id: int, comment: dict, *, is_staff: bool = True) -> dict:
        ticket = self.tickets[ticket_id]
        return {
            "account_id": 12514403,
            "detail": {
                "id": str(ticket_id),
                "requester_id": str(ticket["requester_id"]),
                "status": ticket["status"].upper(),
                "external_id": ticket.get("external_id"),
                "via": {"channel": "web_service"},
            },
            "event": {
                "comment": {
                    "author": {"id": str(comment["author_id"]), "is_staff": is_staff, "name": "Bo Agent"},
                    "body": comment["body"],
                    "id": str(comment["id"]),
                    "is_public": comment["public"],
                }
            },
            "id": f"evt-comment-{comment['id']}",
            "subject": f"zen:ticket:{ticket_id}",
            "time": "2026-01-01T10:05:00Z",
            "type": "zen:event-type:ticket.comment_added",
            "zendesk_event_version": "2022-11-06",
        }

    def solve_event(self, ticket_id: int) -> dict:
        self.tickets[ticket_id]["status"] = "solved"
        return {
            "account_id": 12514403,
            "detail": {"id": str(ticket_id), "status": "SOLVED"},
            "event": {"current": "SOLVED", "previous": "OPEN"},
            "id": f"evt-status-{ticket_id}",
            "subject": f"zen:ticket:{ticket_id}",
            "time": "2026-01-01T10:09:00Z",
            "type": "zen:event-type:ticket.status_changed",
            "zendesk_event_version": "2022-11-06",
        }

    # --- the API -----------------------------------------------------------------------------------
    def _handle(self, request):
        checked = request
        if re.fullmatch(r"/api/v2/tickets/\d+/tags", request.path_url.split("?")[0]) and request.body:
            # The OAS gives Add Tags / Remove Tags no request body, while Zendesk's reference shows
            # {"tags": [...]} (https://developer.zendesk.com/api-reference/ticketing/ticket-management/tags/#add-tags):
            # check that shape here, and the rest of the request against the spec.
            tags = json.loads(request.body).get("tags")
            assert isinstance(tags, list) and tags and all(isinstance(t, str) for t in tags), request.body
            checked = request.copy()
            checked.body = None
        assert_conforms(self.spec, checked, ignore=SPEC_DEFECTS, prose_query=PROSE_QUERY)
        body = json.loads(request.body) if request.body else None
        path = request.path_url.split("?")[0]
        self.requests.append((request.method, request.path_url, body))
        if self.fail_next:
            status, headers = self.fail_next.pop(0)
            return (
                status,
                headers,
                json.dumps({"error": "RecordInvalid", "description": "failing on purpose"}),
            )
        if path == "/api/v2/users/me":
            return 200, {}, json.dumps({"user": {"id": AGENT_ID, "name": "Bridge API", "role": "admin"}})
        if path == "/api/v2/users/create_or_update":
            user = body["user"]
            existing = next((u for u in self.users.values() if u["external_id"] == user["external_id"]), None)
            if existing is None:
                existing = {"id": next(self.ids), "role": "end-user", **user}
                self.users[existing["id"]] = existing
                return 201, {}, json.dumps({"user": existing})
            existing.update(user)
            return 200, {}, json.dumps({"user": existing})
        if path == "/api/v2/tickets" and request.method == "GET":
            wanted = request.params.get("external_id")
            found = [t for t in self.tickets.values() if t.get("external_id") == wanted]
            return 200, {}, json.dumps({"tickets": found, "count": len(found)})
        if path == "/api/v2/tickets" and request.method == "POST":
            data = body["ticket"]
            ticket_id = next(self.ids)
            ticket = {k: v for k, v in data.items() if k != "comment"}
            ticket.update({"id": ticket_id, "status": "new"})
            self.tickets[ticket_id] = ticket
            self.comments[ticket_id] = []
            self._add_comment(ticket_id, data["comment"], default_author=data.get("submitter_id"))
            return 201, {}, json.dumps({"ticket": ticket})
        if path == "/api/v2/tickets/show_many":
            ids = [int(i) for i in request.params["ids"].split(",")]
            return 200, {}, json.dumps({"tickets": [self.tickets[i] for i in ids if i in self.tickets]})
        match = re.fullmatch(r"/api/v2/tickets/(\d+)/tags", path)
        if match and int(match.group(1)) in self.tickets:
            ticket = self.tickets[int(match.group(1))]
            tags = list(ticket.get("tags") or [])
            if request.method == "PUT":
                tags += [t for t in body["tags"] if t not in tags]
            elif request.method == "DELETE":
                tags = [t for t in tags if t not in body["tags"]]
            ticket["tags"] = tags
            return 200, {}, json.dumps({"tags": tags})
        match = re.fullmatch(r"/api/v2/tickets/(\d+)(/comments)?", path)
        if match:
            ticket_id = int(match.group(1))
            if ticket_id not in self.tickets:
                return 404, {}, json.dumps({"error": "RecordNotFound"})
            if match.group(2):
                return 200, {}, json.dumps(self._comments_page(request, ticket_id))
            data = body["ticket"]
            if self.tickets[ticket_id].get("status") == "closed":
                # Reference: https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#update-ticket
                # (a closed ticket cannot be updated; Zendesk answers 422 RecordInvalid)
                return (
                    422,
                    {},
                    json.dumps(
                        {
                            "error": "RecordInvalid",
                            "description": "Record validation errors",
                            "details": {"status": [{"description": "Status: closed prevents ticket update"}]},
                        }
                    ),
                )
            if "comment" in data:
                self._add_comment(ticket_id, data["comment"], default_author=AGENT_ID)
            if "status" in data:
                self.tickets[ticket_id]["status"] = data["status"]
            return 200, {}, json.dumps({"ticket": self.tickets[ticket_id]})
        return 404, {}, json.dumps({"error": "InvalidEndpoint"})

    def _comments_page(self, request, ticket_id: int) -> dict:
        """List Comments with offset pagination, as Zendesk answers it: at most `per_page` (100 by
        default and at most) a page, and `next_page` / `previous_page` URLs."""
        # Reference: https://developer.zendesk.com/api-reference/introduction/pagination/
        page = int(request.params.get("page") or 1)
        per_page = min(int(request.params.get("per_page") or 100), 100)
        comments = self.comments[ticket_id]
        if request.params.get("sort_order") == "desc":
            comments = comments[::-1]
        chunk = comments[(page - 1) * per_page : page * per_page]
        url = f"{self.base_url}/api/v2/tickets/{ticket_id}/comments.json?page={{}}&per_page={per_page}"
        return {
            "comments": chunk,
            "count": len(comments),
            "next_page": url.format(page + 1) if page * per_page < len(comments) else None,
            "previous_page": url.format(page - 1) if page > 1 else None,
        }

    def add_requester_comments(self, ticket_id: int, count: int) -> None:
        """`count` public comments by the ticket's requester (what the bridge writes for the customer)."""
        requester = self.tickets[ticket_id]["requester_id"]
        for n in range(count):
            self._add_comment(
                ticket_id, {"body": f"customer says {n}", "author_id": requester}, default_author=requester
            )

    def _add_comment(self, ticket_id: int, comment: dict, *, default_author) -> None:
        self.comments[ticket_id].append(
            {
                "id": next(self.comment_ids),
                "author_id": comment.get("author_id", default_author),
                "body": comment["body"],
                "plain_body": comment["body"],
                "public": comment.get("public", True),
                "attachments": [],
                "created_at": "2026-01-01T10:00:00Z",
            }
        )
