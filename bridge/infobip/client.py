"""InfobipClient: the Conversations ("Inbox") API calls the bridge makes, and nothing else.

One requests.Session with timeouts; every status mapped to success, TransientError or PermanentError
by bridge.http; Infobip's own error quirks (400 for a missing entity, 400 for a closed conversation)
mapped here. Requests are validated against Infobip's OpenAPI spec in tests/test_infobip_client.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings

from bridge import http, ratelimit
from bridge.exceptions import (
    ConfigurationError,
    ConversationClosedError,
    NotFoundError,
    PermanentError,
    UpstreamError,
    WebhookError,
)
from bridge.infobip.events import parse_message
from bridge.inputs import clean_text
from bridge.types import InfobipMessage

logger = logging.getLogger(__name__)

SERVICE = "Infobip"
PAGE_LIMIT = 999  # the spec's maximum page size for list operations
CONTENT_TEXT_MAX = 4096


def more_pages(data: Any, items: list, pages_read: int, asked: int) -> bool:
    """Whether a list answer has pages after the `pages_read` already read. Infobip's Pagination
    object gives `totalItems` and the `limit` it really used, which may be smaller than the one
    asked for; a page shorter than that size is the last. Never decided from a partial window: a
    full page without a total means read on."""
    pagination = (data.get("pagination") if isinstance(data, dict) else None) or {}
    if not items:
        return False
    try:
        size = int(pagination.get("limit") or asked)
    except (TypeError, ValueError):
        size = asked
    total = pagination.get("totalItems")
    if isinstance(total, int):
        return pages_read * size < total
    return len(items) >= size


def format_time(value: datetime) -> str:
    """Infobip's documented filter format: yyyy-MM-dd'T'HH:mm:ss.SSS+0000 (UTC)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


class InfobipClient:
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        agent_id: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = (base_url if base_url is not None else settings.INFOBIP_BASE_URL).rstrip("/")
        api_key = api_key if api_key is not None else settings.INFOBIP_API_KEY
        self.agent_id = agent_id if agent_id is not None else settings.INFOBIP_AGENT_ID
        if not self.base_url or not api_key:
            raise ConfigurationError("INFOBIP_BASE_URL and INFOBIP_API_KEY must be set to talk to Infobip")
        self.session = session or http.make_session(reuse_key=f"infobip:{self.base_url}")
        # The bridge's workers share Infobip's Get Messages budget through bridge.ratelimit
        # (database or Redis); a standalone client (scripts, tests) does not count.
        self.shared_rate_limit = False
        self.rate_wait = 5.0  # seconds a call may wait for the shared budget before it is retried later
        self.session.headers.update({"Authorization": f"App {api_key}", "Accept": "application/json"})

    # --- plumbing ---------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return http.request(self.session, method, f"{self.base_url}{path}", service=SERVICE, **kwargs)
        except PermanentError as exc:
            # Infobip answers 400 (not 404) for unknown ids, and 400 for any change to a closed
            # conversation. Reference: https://www.infobip.com/docs/api/customer-engagement/conversations
            text = exc.body.lower()
            if exc.status == 400 and "closed conversation" in text:
                raise ConversationClosedError(
                    str(exc), status=exc.status, body=exc.body, service=SERVICE
                ) from exc
            if exc.status == 400 and "no such entity" in text and not isinstance(exc, NotFoundError):
                raise NotFoundError(str(exc), status=exc.status, body=exc.body, service=SERVICE) from exc
            raise

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return http.json_or_error(self._call(method, path, **kwargs), service=SERVICE)

    @staticmethod
    def _conv(conversation_id: str) -> str:
        return f"/ccaas/1/conversations/{quote(conversation_id, safe='')}"

    # --- conversations ----------------------------------------------------------------------------
    def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/get-conversation
        return self._json("GET", self._conv(conversation_id))

    def close_conversation(self, conversation_id: str) -> bool:
        """Set status CLOSED. Returns False when Infobip says it was already closed (also success)."""
        # Reference: https://infobip.com/docs/api/customer-engagement/conversations/update-conversation
        try:
            self._call("PATCH", self._conv(conversation_id), json={"status": "CLOSED"})
        except ConversationClosedError:
            return False
        return True

    def route_conversation(self, conversation_id: str) -> dict[str, Any]:
        """Send the conversation to Infobip's own routing (its agents), unassigning any agent."""
        # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/route-conversation
        return self._json("POST", f"{self._conv(conversation_id)}/route")

    def change_assignment(self, conversation_id: str, agent_id: str) -> dict[str, Any]:
        # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/change-conversation-assignee
        return self._json("PUT", f"{self._conv(conversation_id)}/assignee", json={"agentId": agent_id})

    # --- messages ---------------------------------------------------------------------------------
    def iter_messages(
        self,
        conversation_id: str,
        *,
        created_after: datetime | None = None,
        message_ids: list[str] | None = None,
        page_limit: int = PAGE_LIMIT,
        on_refused: Callable[[str, str], None] | None = None,
    ) -> Iterator[InfobipMessage]:
        """Every message of the conversation, oldest first, across as many pages as it takes.

        A message that cannot be stored (bridge.inputs) is skipped, logged and passed to
        `on_refused(message id, why)`; the others are still yielded."""
        # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/get-messages
        params: dict[str, Any] = {"limit": min(page_limit, PAGE_LIMIT), "orderBy": "createdAt:asc"}
        if created_after is not None:
            params["createdAfter"] = format_time(created_after)
        if message_ids:
            params["messageIds"] = message_ids
        page = 0
        while True:
            if self.shared_rate_limit:
                # Infobip's one published limit (~500/min), shared by every worker.
                ratelimit.acquire(
                    "infobip:get-messages",
                    settings.BRIDGE_INFOBIP_GET_MESSAGES_PER_MINUTE,
                    max_wait=self.rate_wait,
                )
            data = self._json(
                "GET", f"{self._conv(conversation_id)}/messages", params={**params, "page": page}
            )
            items = data.get("messages") or [] if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise UpstreamError(
                    f"{SERVICE}: Get Messages answered without a messages list", service=SERVICE
                )
            for item in items:
                if isinstance(item, dict):
                    item.setdefault("conversationId", conversation_id)
                try:
                    message = parse_message(item)
                except WebhookError as exc:
                    # One message that cannot be stored must not hold back the rest of the list.
                    ident = item.get("id") if isinstance(item, dict) else None
                    logger.warning("Get Messages of %s: message %r skipped: %s", conversation_id, ident, exc)
                    if on_refused is not None:
                        on_refused(clean_text(str(ident))[:80] if ident is not None else "", str(exc))
                    continue
                yield message
            page += 1
            if not more_pages(data, items, page, params["limit"]):
                return

    def get_messages(self, conversation_id: str, **kwargs: Any) -> list[InfobipMessage]:
        return list(self.iter_messages(conversation_id, **kwargs))

    def create_message(
        self,
        conversation_id: str,
        *,
        channel: str,
        from_: str,
        to: str,
        content_type: str,
        content: dict[str, Any],
    ) -> dict[str, Any]:
        """Send one message to the customer. `from_` is the business sender, `to` the customer."""
        # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/create-message
        # x-agent-id is required once a conversation is assigned to an agent, and refused otherwise:
        # https://www.infobip.com/docs/conversations-api/messages
        headers = {"x-agent-id": self.agent_id} if self.agent_id else {}
        body = {"channel": channel, "from": from_, "to": to, "contentType": content_type, "content": content}
        return self._json("POST", f"{self._conv(conversation_id)}/messages", json=body, headers=headers)

    def send_typing(self, conversation_id: str, *, channel: str, from_: str, to: str, started: bool) -> None:
        # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/send-conversation-event
        body = {
            "from": from_,
            "to": to,
            "channel": channel,
            "type": "TYPING_STARTED" if started else "TYPING_STOPPED",
        }
        self._call("POST", f"{self._conv(conversation_id)}/events", json=body)

    # --- tags and metadata ------------------------------------------------------------------------
    def get_tags(self, conversation_id: str) -> list[str]:
        # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/get-tags
        names: list[str] = []
        page = 0
        while True:
            data = self._json(
                "GET",
                "/ccaas/1/tags",
                params={"conversationId": conversation_id, "limit": PAGE_LIMIT, "page": page},
            )
            items = data.get("tags") or []
            names.extend(item["name"] for item in items if item.get("name"))
            page += 1
            if not more_pages(data, items, page, PAGE_LIMIT):
                return names

    def create_tag(self, name: str) -> None:
        """Create an account tag; an existing one is fine."""
        # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/create-tag
        try:
            self._call("POST", "/ccaas/1/tags", json={"name": name})
        except PermanentError as exc:
            if exc.status == 400 and "already exists" in exc.body.lower():
                return
            raise

    def add_tag(self, conversation_id: str, name: str, *, create: bool = True) -> None:
        """Tag the conversation, creating the account tag first (Infobip requires it to exist)."""
        # Reference: https://infobip.com/docs/api/customer-engagement/conversations/add-conversation-tag
        if create:
            self.create_tag(name)
        self._call("POST", f"{self._conv(conversation_id)}/tags", json={"tagName": name})

    def remove_tag(self, conversation_id: str, name: str) -> None:
        # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/remove-conversation-tag
        self._call("DELETE", f"{self._conv(conversation_id)}/tags/{quote(name, safe='')}")

    def get_metadata(self, conversation_id: str) -> dict[str, Any]:
        # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/get-metadata
        try:
            data = self._json("GET", f"{self._conv(conversation_id)}/metadata")
        except NotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def put_metadata(self, conversation_id: str, metadata: dict[str, Any]) -> None:
        # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/put-metadata
        self._call("PUT", f"{self._conv(conversation_id)}/metadata", json=metadata)

    def unassign(self, conversation_id: str) -> dict[str, Any]:
        # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/unassign-conversation
        return self._json("DELETE", f"{self._conv(conversation_id)}/assignee")

    def set_queue(self, conversation_id: str, queue_id: str) -> None:
        # Reference: https://infobip.com/docs/api/customer-engagement/conversations/update-conversation
        self._call("PATCH", self._conv(conversation_id), json={"queueId": queue_id})

    # --- external bots ------------------------------------------------------------------------------
    # Reference: https://www.infobip.com/docs/api/customer-engagement/conversations/get-bots (and
    # setup-bot, get-bot, update-bot, delete-bot); the model is BotApiModel of the Conversations spec.
    def list_bots(self) -> list[dict[str, Any]]:
        bots: list[dict[str, Any]] = []
        page = 0
        while True:
            data = self._json("GET", "/ccaas/1/bots", params={"limit": PAGE_LIMIT, "page": page})
            items = data.get("bots") or []
            bots.extend(items)
            page += 1
            if len(items) < PAGE_LIMIT:
                return bots

    def get_bot(self, bot_id: str) -> dict[str, Any] | None:
        """The bot, or None when Infobip does not know it (it answers 400 NOT_FOUND or 404)."""
        try:
            return self._json("GET", f"/ccaas/1/bots/{quote(bot_id, safe='')}")
        except NotFoundError:
            return None
        except PermanentError as exc:
            if exc.status == 404 or (exc.status == 400 and "not_found" in exc.body.lower()):
                return None
            raise

    def create_bot(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/ccaas/1/bots", json=body)

    def update_bot(self, bot_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("PUT", f"/ccaas/1/bots/{quote(bot_id, safe='')}", json=body)

    def delete_bot(self, bot_id: str) -> None:
        """Delete the bot; Infobip re-routes its open conversations. An unknown bot is fine."""
        try:
            self._call("DELETE", f"/ccaas/1/bots/{quote(bot_id, safe='')}")
        except NotFoundError:
            return
        except PermanentError as exc:
            if exc.status == 404 or (exc.status == 400 and "not_found" in exc.body.lower()):
                return
            raise

    # --- account ----------------------------------------------------------------------------------
    def update_account_configuration(self, webhook_url: str) -> None:
        """Legacy (deprecated) way to receive every inbound message at one URL; replaces any set."""
        # Reference: https://infobip.com/docs/api/customer-engagement/conversations/update-conversation-account-configuration
        self._call("PUT", "/ccaas/1/account/configuration", json={"webhookUrl": webhook_url})

    # --- Subscriptions API ------------------------------------------------------------------------
    # Reference: https://www.infobip.com/docs/api/platform/subscriptions-api
    def _get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return self._json("GET", path)
        except NotFoundError:
            return None
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise

    def put_security_settings(self, auth_id: str, body: dict[str, Any]) -> str:
        """Create or update security settings; returns "created" or "updated"."""
        # Reference: https://www.infobip.com/docs/api/platform/subscriptions-api/create-security-settings
        path = f"/subscriptions/1/security/{quote(auth_id, safe='')}"
        if self._get_or_none(path) is None:
            self._call("POST", "/subscriptions/1/security", json={"authId": auth_id, **body})
            return "created"
        self._call("PUT", path, json=body)
        return "updated"

    def put_profile(self, profile_id: str, body: dict[str, Any]) -> str:
        # Reference: https://www.infobip.com/docs/api/platform/subscriptions-api/create-profile
        path = f"/subscriptions/1/profiles/{quote(profile_id, safe='')}"
        if self._get_or_none(path) is None:
            self._call("POST", "/subscriptions/1/profiles", json={"profileId": profile_id, **body})
            return "created"
        self._call("PUT", path, json=body)
        return "updated"

    def put_subscription(self, channel: str, subscription_id: str, body: dict[str, Any]) -> str:
        # Reference: https://www.infobip.com/docs/api/platform/subscriptions-api/create-subscription
        base = f"/subscriptions/1/subscription/{quote(channel, safe='')}"
        path = f"{base}/{quote(subscription_id, safe='')}"
        if self._get_or_none(path) is None:
            self._call("POST", base, json={"subscriptionId": subscription_id, **body})
            return "created"
        self._call("PUT", path, json=body)
        return "updated"
