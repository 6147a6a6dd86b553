"""`bridge_subscribe --subscriptions`: every request validated against Infobip's Subscriptions spec,
idempotent, the secret stored encrypted; and the shared rate limiter."""

from __future__ import annotations

import json
import re

import pytest
import responses
from django.core.management import call_command

from bridge import ratelimit
from bridge.models import InfobipSubscription
from tests.openapi import find_operation, validate_request, validate_schema

pytestmark = pytest.mark.django_db
SUBS = "infobip-subscriptions-api-openapi.json"
PREFIX = "6e71a232d29cf86cbe8cd24bd719c2050de4613347854f985c920dd3d0d3e33f"
BASE = "https://xyz123.api.infobip.com"


@pytest.fixture
def infobip(settings):
    settings.INFOBIP_BASE_URL = BASE
    settings.INFOBIP_API_KEY = "key"
    state: dict[str, dict] = {}

    def handler(request):
        path = request.path_url.split("?")[0]
        body = json.loads(request.body) if request.body else None
        if "/subscription/" in path and body is not None:
            # The spec's subscription body is a oneOf over every channel without a discriminator, and
            # several channels' shapes coincide; the {channel} path parameter picks the schema.
            find_operation(SUBS, request.method, path)
            name = (
                "CustomerEngagementSubscriptionRequest"
                if request.method == "POST"
                else ("CustomerEngagementNoIdSubscriptionRequest")
            )
            validate_schema(SUBS, f"#/components/schemas/{PREFIX}.{name}", body)
        else:
            validate_request(SUBS, request.method, path, body=body)
        if request.method == "GET":
            return (200, {}, json.dumps(state[path])) if path in state else (404, {}, "{}")
        if request.method == "POST":
            key = (
                body.get("authId") or body.get("profileId")
                if "subscription/" not in path
                else body["subscriptionId"]
            )
            state[f"{path}/{key}"] = body
        else:
            state[path] = body
        return 200, {}, json.dumps(body)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, re.compile(BASE + r"/subscriptions/.*"), callback=handler)
        mock.add_callback(responses.POST, re.compile(BASE + r"/subscriptions/.*"), callback=handler)
        mock.add_callback(responses.PUT, re.compile(BASE + r"/subscriptions/.*"), callback=handler)
        yield mock


def test_subscribe_with_hmac_creates_then_updates_idempotently(infobip, capsys):
    call_command("bridge_subscribe", "--subscriptions")
    row = InfobipSubscription.objects.get()
    secret = row.credentials["secret"]
    assert row.security == "HMAC" and len(secret) >= 32
    assert "created" in capsys.readouterr().out
    first = [(c.request.method, c.request.path_url) for c in infobip.calls]
    assert ("POST", "/subscriptions/1/subscription/CUSTOMER_ENGAGEMENT") in first
    security = next(
        json.loads(c.request.body) for c in infobip.calls if c.request.path_url == "/subscriptions/1/security"
    )
    assert security["credentials"] == {"secretKey": secret, "algorithm": "HMAC_SHA_256"}

    call_command("bridge_subscribe", "--subscriptions")
    assert InfobipSubscription.objects.get().credentials["secret"] == secret
    assert "updated" in capsys.readouterr().out
    assert not [c for c in infobip.calls[len(first) :] if c.request.method == "POST"]


def test_secret_is_not_stored_in_clear(infobip):
    from django.db import connection

    call_command("bridge_subscribe", "--subscriptions")
    secret = InfobipSubscription.objects.get().credentials["secret"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM bridge_infobipsubscription")
        assert secret not in str(cursor.fetchone()[0])


@pytest.mark.parametrize("security", ["basic", "header"])
def test_subscribe_with_basic_or_static_header(infobip, security):
    call_command("bridge_subscribe", "--subscriptions", "--security", security)
    assert InfobipSubscription.objects.get().security == security.upper()


def test_legacy_subscribe_warns_that_it_replaces_the_webhook(settings, capsys):
    settings.INFOBIP_BASE_URL = BASE
    settings.INFOBIP_API_KEY = "key"
    with responses.RequestsMock() as mock:
        mock.add(responses.PUT, BASE + "/ccaas/1/account/configuration", json={})
        call_command("bridge_subscribe")
        body = json.loads(mock.calls[0].request.body)
    validate_request("infobip-conversations-openapi.json", "PUT", "/ccaas/1/account/configuration", body=body)
    assert body["webhookUrl"].endswith(f"/webhooks/infobip/{settings.BRIDGE_INBOUND_TOKEN}/")
    assert "replaces any webhook" in capsys.readouterr().err


def test_rate_limit_is_shared_and_resets_each_window():
    now = 1_000_040.0
    assert all(ratelimit.try_acquire("k", 3, now=now) == 0 for _ in range(3))
    assert ratelimit.try_acquire("k", 3, now=now) == pytest.approx(40.0)
    assert ratelimit.try_acquire("k", 3, now=now + 60) == 0
    with pytest.raises(ratelimit.RateLimited):
        for _ in range(4):
            ratelimit.acquire("j", 3, max_wait=0)
