"""Key rotation as the README documents it, and what happens when a key is missing.

Put a new key first, keep the old ones, run `manage.py bridge_rotate_keys`, drop the old keys: every
encrypted value (endpoint credentials and the Infobip subscription's HMAC secret) is re-encrypted,
and every signed webhook and every endpoint keeps working. The command refuses, changing nothing,
when a value cannot be decrypted or the keys look oldest-first. A credential no configured key
decrypts is an endpoint error an operator sees and fixes in the admin, never a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.management import CommandError, call_command
from django.db import connection

from bridge import delivery
from bridge.connectors import get_connector
from bridge.models import (
    CcaasEndpoint,
    ConversationLink,
    Delivery,
    InfobipSubscription,
    RetiredEncryptionKey,
    State,
)
from bridge.signing import sign

pytestmark = pytest.mark.django_db

A, B, C = (Fernet.generate_key().decode() for _ in range(3))
HMAC_SECRET = "infobip-hmac-secret-value"
CREDENTIALS = {
    "generic": ({"base_url": "https://generic.example.com", "mode": "webhook"}, {"secret": "generic-secret"}),
    "zendesk": (
        {"subdomain": "acme", "mode": "webhook"},
        {"email": "bot@acme.test", "api_token": "zd-token", "webhook_secret": "zd-hook"},
    ),
    "chatwoot": (
        {"base_url": "https://chat.example.com", "account_id": "1", "inbox_id": "2", "mode": "webhook"},
        {"api_access_token": "cw-token", "webhook_secret": "cw-hook"},
    ),
    "rt": ({"base_url": "https://rt.example.com", "queue": "Support", "mode": "poll"}, {"token": "rt-token"}),
    "genesys": (
        {"base_url": "https://api.example.com", "login_url": "https://login.example.com", "mode": "webhook"},
        {"client_id": "gc-id", "client_secret": "gc-secret", "webhook_secret": "gc-hook"},
    ),
}


def use_keys(settings, *keys: str) -> None:
    settings.BRIDGE_ENCRYPTION_KEYS = list(keys)


def raw(model, pk) -> str:
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT credentials FROM {table} WHERE id = %s", [pk])
        return str(cursor.fetchone()[0])


def rotate() -> str:
    from io import StringIO

    out = StringIO()
    call_command("bridge_rotate_keys", stdout=out)
    return out.getvalue()


@pytest.fixture
def stored(settings):
    """Every kind of endpoint and the Infobip subscription, written with key A only."""
    use_keys(settings, A)
    endpoints = {
        kind: CcaasEndpoint.objects.create(slug=f"ep-{kind}", kind=kind, config=config, credentials=creds)
        for kind, (config, creds) in CREDENTIALS.items()
    }
    subscription = InfobipSubscription.objects.create(
        subscription_id="handover-bridge",
        profile_id="p",
        security=InfobipSubscription.Security.HMAC,
        credentials={"secret": HMAC_SECRET},
        notify_url="https://bridge.example.com/webhooks/infobip/x/",
    )
    return endpoints, subscription


def infobip_event_ok(client, settings) -> int:
    body = json.dumps(
        {"type": "CONVERSATION_TAG_ADDED", "timestamp": "2026-01-01T10:00:00Z", "payload": {"id": "c-1"}}
    ).encode()
    signature = hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return client.post(
        f"/webhooks/infobip/{settings.BRIDGE_INBOUND_TOKEN}/",
        data=body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=f"sha256={signature}",
    ).status_code


def generic_webhook(client, endpoint, event_id="e-1"):
    body = json.dumps({"events": [{"id": event_id, "type": "agent_joined", "interactionId": "i-1"}]}).encode()
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign("generic-secret", body).items()}
    return client.post(
        f"/webhooks/ccaas/{endpoint.slug}/", data=body, content_type="application/json", **headers
    )


def everything_works(client, settings, endpoints) -> None:
    assert infobip_event_ok(client, settings) == 200
    assert (
        generic_webhook(
            client, endpoints["generic"], event_id=f"e-{settings.BRIDGE_ENCRYPTION_KEYS[0][:6]}"
        ).status_code
        == 200
    )
    for kind, (_, creds) in CREDENTIALS.items():
        endpoint = CcaasEndpoint.objects.get(slug=f"ep-{kind}")
        assert get_connector(endpoint).credentials == creds, kind
    assert InfobipSubscription.objects.get().credentials == {"secret": HMAC_SECRET}
    assert not [m for m in checks.run_checks() if m.id.startswith("bridge.W10")]


def test_rotating_twice_and_dropping_old_keys_keeps_every_webhook_and_endpoint_working(
    client, settings, stored
):
    endpoints, _ = stored
    everything_works(client, settings, endpoints)
    written_with_a = {kind: raw(CcaasEndpoint, e.pk) for kind, e in endpoints.items()}

    use_keys(settings, B, A)
    warnings = [m for m in checks.run_checks() if m.id == "bridge.W102"]
    assert warnings and "6 stored secret(s) use key #2" in warnings[0].msg  # check says: rotate
    output = rotate()
    assert "5 contact-center endpoint, 1 infobip subscription" in output and "0 value(s) already" in output
    assert all(raw(CcaasEndpoint, e.pk) != written_with_a[k] for k, e in endpoints.items())
    use_keys(settings, B)  # drop the old key
    everything_works(client, settings, endpoints)

    use_keys(settings, C, B)
    assert "5 contact-center endpoint, 1 infobip subscription" in rotate()
    use_keys(settings, C)
    everything_works(client, settings, endpoints)
    assert RetiredEncryptionKey.objects.count() == 2


def test_every_encrypted_field_is_covered(stored):
    from bridge.keys import encrypted_fields

    assert {(m.__name__, f.name) for m, f in encrypted_fields()} == {
        ("CcaasEndpoint", "credentials"),
        ("InfobipSubscription", "credentials"),
        ("InfobipBot", "credentials"),
        ("AlertChannel", "target"),
    }


def test_running_again_after_a_rotation_changes_nothing(settings, stored):
    use_keys(settings, B, A)
    rotate()
    again = rotate()
    assert "re-encrypted with key #1: nothing; 6 value(s) already used key #1" in again


def test_rotation_refuses_a_value_no_key_decrypts_and_names_the_row(settings, stored):
    use_keys(settings, B)
    lost = CcaasEndpoint.objects.create(slug="written-with-b", kind="generic", credentials={"secret": "x"})
    before = {e.pk: raw(CcaasEndpoint, e.pk) for e in CcaasEndpoint.objects.all()}
    use_keys(settings, C, A)  # B is missing
    with pytest.raises(CommandError) as refused:
        rotate()
    assert "cannot be decrypted" in str(refused.value) and "written-with-b" in str(refused.value)
    assert f"id {lost.pk}" in str(refused.value)
    assert {e.pk: raw(CcaasEndpoint, e.pk) for e in CcaasEndpoint.objects.all()} == before  # nothing changed
    assert [m.id for m in checks.run_checks() if m.id == "bridge.W101"] == ["bridge.W101"]


def test_keys_given_oldest_first_are_refused(settings, stored):
    endpoints, _ = stored
    before = raw(CcaasEndpoint, endpoints["generic"].pk)
    use_keys(settings, A, B)  # the new key B appended instead of put first
    with pytest.raises(CommandError, match="looks like a new key that is not first"):
        rotate()
    assert raw(CcaasEndpoint, endpoints["generic"].pk) == before

    use_keys(settings, B, A)
    rotate()  # the right order
    use_keys(settings, A, B)  # and back again by mistake: A was retired
    with pytest.raises(CommandError, match="retired by an earlier rotation"):
        rotate()
    use_keys(settings, B)
    assert get_connector(CcaasEndpoint.objects.get(pk=endpoints["generic"].pk)).credentials == {
        "secret": "generic-secret"
    }


# --- an undecryptable credential: visible, fixable, never a 500 ------------------------------------------
@pytest.fixture
def lost_key(settings, stored):
    use_keys(settings, C)  # neither A nor B: nothing stored decrypts
    return stored


def test_admin_shows_the_error_and_the_form_replaces_the_credentials(client, settings, lost_key):
    endpoints, _ = lost_key
    generic = endpoints["generic"]
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(user)
    listing = client.get("/admin/bridge/ccaasendpoint/")
    assert listing.status_code == 200 and "credentials unreadable" in listing.content.decode()
    page = client.get(f"/admin/bridge/ccaasendpoint/{generic.pk}/change/")
    assert page.status_code == 200 and "enter it again" in page.content.decode()
    for url in (
        "/admin/",
        "/admin/bridge/conversationlink/",
        "/admin/bridge/infobipsubscription/",
        "/metrics",
    ):
        assert client.get(url).status_code in (200, 302, 404), url
    form = {
        "slug": generic.slug,
        "name": "",
        "kind": "generic",
        "enabled": "on",
        "routing_order": "100",
        "routing_rules": "[]",
        "cfg__generic__base_url": "https://generic.example.com",
        "cfg__generic__mode": "webhook",
        "cred__generic__secret": "a-new-secret",
    }
    saved = client.post(f"/admin/bridge/ccaasendpoint/{generic.pk}/change/", form)
    assert saved.status_code == 302, saved.content.decode()[-2000:]
    assert CcaasEndpoint.objects.get(pk=generic.pk).credentials == {"secret": "a-new-secret"}


def test_webhooks_answer_503_with_the_reason_on_the_endpoint(client, settings, lost_key):
    endpoints, _ = lost_key
    response = generic_webhook(client, endpoints["generic"])
    assert response.status_code == 503 and "error" in response.json()
    assert "cannot be decrypted" in CcaasEndpoint.objects.get(pk=endpoints["generic"].pk).last_error
    assert infobip_event_ok(client, settings) == 503  # the subscription's secret is unreadable too


def test_escalation_is_accepted_and_waits_with_the_endpoint_error(api, settings, lost_key, fake_infobip):
    endpoints, _ = lost_key
    CcaasEndpoint.objects.filter(pk=endpoints["generic"].pk).update(is_default=True)
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "I need a human")
    response = api.post("/api/escalations/", {"conversationId": conv}, format="json")
    assert response.status_code == 202
    delivery.drain()
    link = ConversationLink.objects.get(pk=response.json()["id"])
    opening = Delivery.objects.get(link=link, kind=Delivery.Kind.OPEN)
    assert link.state == State.REQUESTED and opening.state == Delivery.Status.PENDING  # retried, not dead
    assert "cannot be decrypted" in opening.last_error
    assert "cannot be decrypted" in CcaasEndpoint.objects.get(pk=endpoints["generic"].pk).last_error
