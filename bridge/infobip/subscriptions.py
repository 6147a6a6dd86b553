"""The Subscriptions-API way of receiving Infobip events (the replacement of Update Account
Configuration): one CUSTOMER_ENGAGEMENT subscription, its notification profile and its security
settings, created or updated idempotently; and the check the webhook view applies to what arrives.

Reference: https://www.infobip.com/docs/api/platform/subscriptions-api and
https://www.infobip.com/docs/cpaas-x/subscriptions-management. Infobip does not document how the HMAC
signature travels (header name, encoding); see docs/infobip.md and BRIDGE_INFOBIP_HMAC_HEADERS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings

from bridge.exceptions import ConfigurationError, WebhookError
from bridge.infobip.client import InfobipClient
from bridge.models import InfobipSubscription

CHANNEL = "CUSTOMER_ENGAGEMENT"
# Every event the spec lets a CUSTOMER_ENGAGEMENT subscription select.
EVENTS = [
    "CONVERSATION_ASSIGNMENT_UPDATED",
    "CONVERSATION_CREATED",
    "CONVERSATION_MESSAGE_DELETED",
    "CONVERSATION_MESSAGE_RECEIVED",
    "CONVERSATION_MESSAGE_UPDATED",
    "CONVERSATION_STATUS_UPDATED",
]
STATIC_HEADER = "X-Bridge-Webhook-Token"


class Unauthorized(WebhookError):
    """The request does not carry the configured credentials (401)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=401)


class Forbidden(WebhookError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=403)


@dataclass(frozen=True)
class SubscribeResult:
    subscription_id: str
    security: str
    actions: dict[str, str]


def webhook_url() -> str:
    return f"{settings.BRIDGE_PUBLIC_URL}/webhooks/infobip/{settings.BRIDGE_INBOUND_TOKEN}/"


def subscribe(
    *,
    security: str = InfobipSubscription.Security.HMAC,
    client: InfobipClient | None = None,
    subscription_id: str | None = None,
    username: str = "",
    password: str = "",
    rotate: bool = False,
) -> SubscribeResult:
    """Create or update the subscription, its profile and its security; store the secret encrypted.

    Running it again changes nothing on Infobip's side except re-sending the same settings; the HMAC
    secret (or Basic password, or header value) is generated once and kept unless `rotate`.
    """
    client = client or InfobipClient()
    subscription_id = subscription_id or settings.BRIDGE_INFOBIP_SUBSCRIPTION_ID
    security = InfobipSubscription.Security(security)
    row = InfobipSubscription.objects.filter(subscription_id=subscription_id).first()
    credentials = dict(row.credentials) if row and row.security == security and not rotate else {}
    auth_id = f"{subscription_id}-auth"
    profile_id = f"{subscription_id}-profile"
    url = webhook_url()
    actions: dict[str, str] = {}
    profile: dict = {"webhook": {"notifyUrl": url}}
    if security == InfobipSubscription.Security.HMAC:
        credentials.setdefault("secret", secrets.token_urlsafe(48))
        actions["security"] = client.put_security_settings(
            auth_id,
            {
                "type": "HMAC",
                "credentials": {"secretKey": credentials["secret"], "algorithm": "HMAC_SHA_256"},
            },
        )
        profile["security"] = {"authId": auth_id}
    elif security == InfobipSubscription.Security.BASIC:
        credentials["username"] = username or credentials.get("username") or "infobip"
        credentials["password"] = password or credentials.get("password") or secrets.token_urlsafe(32)
        actions["security"] = client.put_security_settings(
            auth_id,
            {
                "type": "BASIC",
                "credentials": {"username": credentials["username"], "password": credentials["password"]},
            },
        )
        profile["security"] = {"authId": auth_id}
    elif security == InfobipSubscription.Security.HEADER:
        credentials.setdefault("header", STATIC_HEADER)
        credentials.setdefault("value", secrets.token_urlsafe(32))
        profile["headers"] = {credentials["header"]: credentials["value"]}
    actions["profile"] = client.put_profile(profile_id, profile)
    actions["subscription"] = client.put_subscription(
        CHANNEL,
        subscription_id,
        {"name": "Handover Bridge", "events": EVENTS, "profile": {"profileId": profile_id}},
    )
    InfobipSubscription.objects.update_or_create(
        subscription_id=subscription_id,
        defaults={
            "profile_id": profile_id,
            "auth_id": auth_id if security in ("HMAC", "BASIC") else "",
            "security": security,
            "credentials": credentials,
            "notify_url": url,
            "events": EVENTS,
        },
    )
    return SubscribeResult(subscription_id=subscription_id, security=security, actions=actions)


def active_subscription() -> InfobipSubscription | None:
    return InfobipSubscription.objects.exclude(security=InfobipSubscription.Security.NONE).first()


def _header(headers: Mapping[str, str], name: str) -> str:
    return headers.get(name) or ""


def _signature_matches(secret: str, body: bytes, given: str) -> bool:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    value = given.strip()
    if "=" in value[:16] and not value.endswith("="):
        value = value.split("=", 1)[1]  # "sha256=<sig>" style prefixes
    elif value.lower().startswith(("sha256=", "hmacsha256=")):
        value = value.split("=", 1)[1]
    encoding = settings.BRIDGE_INFOBIP_HMAC_ENCODING
    candidates = []
    if encoding in ("hex", "any"):
        candidates.append(digest.hex())
    if encoding in ("base64", "any"):
        candidates.append(base64.b64encode(digest).decode())
    return any(hmac.compare_digest(value.encode(), c.encode()) for c in candidates) or (
        encoding in ("hex", "any") and hmac.compare_digest(value.lower().encode(), digest.hex().encode())
    )


def verify(body: bytes, headers: Mapping[str, str], subscription: InfobipSubscription | None) -> None:
    """Raise 401/403 unless the request passes the configured check; no subscription: no check."""
    if subscription is None:
        return
    creds = subscription.credentials or {}
    kind = subscription.security
    if kind == InfobipSubscription.Security.HMAC:
        secret = creds.get("secret")
        if not secret:
            raise ConfigurationError("the Infobip subscription has no stored HMAC secret")
        given = next((v for n in settings.BRIDGE_INFOBIP_HMAC_HEADERS if (v := _header(headers, n))), "")
        if not given:
            raise Unauthorized("missing HMAC signature header")
        if not _signature_matches(secret, body, given):
            raise Forbidden("HMAC signature does not match")
        return
    if kind == InfobipSubscription.Security.BASIC:
        auth = _header(headers, "Authorization")
        if not auth.lower().startswith("basic "):
            raise Unauthorized("missing Basic credentials")
        expected = base64.b64encode(
            f"{creds.get('username', '')}:{creds.get('password', '')}".encode()
        ).decode()
        if not hmac.compare_digest(auth[6:].strip().encode(), expected.encode()):
            raise Forbidden("Basic credentials do not match")
        return
    if kind == InfobipSubscription.Security.HEADER:
        given = _header(headers, creds.get("header") or STATIC_HEADER)
        if not given:
            raise Unauthorized(f"missing {creds.get('header') or STATIC_HEADER} header")
        if not hmac.compare_digest(given.encode(), str(creds.get("value", "")).encode()):
            raise Forbidden("webhook token header does not match")
