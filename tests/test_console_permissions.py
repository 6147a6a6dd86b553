"""Read-only operators change nothing, anywhere: every admin view and every action of the console is
walked as a member of "Operators (read-only)". Reads answer 200; every write, action and button
answers 403 (also when forged), and afterwards no row, health field or admin-log entry has changed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.core import serializers
from django.urls import reverse
from django.utils import timezone

from bridge.models import (
    AlertChannel,
    AlertIncident,
    AlertNotification,
    CcaasEndpoint,
    ConversationLink,
    Delivery,
    HandoverEvent,
    InboundEvent,
    InfobipBot,
    Message,
    State,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client):
    user = User.objects.create_user("vera", password="pw-vera-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators (read-only)"))
    client.force_login(user)
    return client


@pytest.fixture
def rows(generic_endpoint):
    link = ConversationLink.objects.create(
        conversation_id="conv-perm",
        endpoint=generic_endpoint,
        state=State.ACTIVE,
        interaction_id="int-perm",
        escalated_at=timezone.now() - timedelta(hours=2),
    )
    message = Message.objects.create(
        link=link,
        source=Message.Source.CCAAS,
        direction=Message.Direction.OUTBOUND,
        external_id="a-perm",
        author_type="AGENT",
        content={"text": "hello"},
        created_at=timezone.now(),
    )
    Delivery.objects.create(
        link=link,
        message=message,
        kind=Delivery.Kind.MESSAGE,
        lane=Delivery.Lane.TO_INFOBIP,
        state=Delivery.Status.DEAD,
        failing_since=timezone.now() - timedelta(hours=1),
        last_error="HTTP 503",
    )
    InboundEvent.objects.create(
        source="ccaas:acme", event_id="e-perm", type="message", endpoint=generic_endpoint
    )
    HandoverEvent.objects.create(link=link, kind="escalated", text="to acme")
    InfobipBot.objects.create(
        display_name="Support bot",
        channel="WHATSAPP",
        destination="447860099299",
        endpoint=generic_endpoint,
        webhook_token="t" * 40,
    )
    channel = AlertChannel.objects.create(name="ops", kind="email", target={"to": ["ops@example.com"]})
    incident = AlertIncident.objects.create(kind="stuck", key=str(link.pk), summary="stuck")
    AlertNotification.objects.create(channel=channel, incident=incident, subject="s", text="t", state="DEAD")
    return link


def snapshot() -> str:
    models = (
        CcaasEndpoint,
        ConversationLink,
        Message,
        Delivery,
        InboundEvent,
        HandoverEvent,
        InfobipBot,
        AlertChannel,
        AlertIncident,
        AlertNotification,
    )
    return "".join(serializers.serialize("json", model.objects.order_by("pk")) for model in models)


def test_a_read_only_operator_can_read_every_view_and_run_nothing(viewer, rows, generic_endpoint):
    before = snapshot()
    bridge_admins = [(m, a) for m, a in admin.site._registry.items() if m._meta.app_label == "bridge"]
    assert {m.__name__ for m, _ in bridge_admins} >= {
        "CcaasEndpoint",
        "ConversationLink",
        "Message",
        "Delivery",
        "InboundEvent",
    }
    walked = 0
    for model, model_admin in bridge_admins:
        name = model._meta.model_name
        obj = model.objects.order_by("pk").first()
        assert obj is not None, f"no {name} row to walk"
        changelist = reverse(f"admin:bridge_{name}_changelist")
        change = reverse(f"admin:bridge_{name}_change", args=[obj.pk])
        assert viewer.get(changelist).status_code == 200, name
        assert viewer.get(change).status_code == 200, name
        assert viewer.get(reverse(f"admin:bridge_{name}_history", args=[obj.pk])).status_code == 200, name
        assert viewer.get(reverse(f"admin:bridge_{name}_add")).status_code == 403, name
        assert viewer.post(reverse(f"admin:bridge_{name}_add"), {}).status_code == 403, name
        assert viewer.post(change, {}).status_code == 403, name
        assert (
            viewer.post(reverse(f"admin:bridge_{name}_delete", args=[obj.pk]), {"post": "yes"}).status_code
            == 403
        )
        # Every action the admin declares, and the stock bulk delete, forged as POSTs.
        for action in [*(model_admin.actions or ()), "delete_selected"]:
            action = action if isinstance(action, str) else action.__name__
            response = viewer.post(
                changelist,
                {"action": action, "_selected_action": [str(obj.pk)], "index": "0", "reason": "x"},
            )
            assert response.status_code == 403, (name, action)
            walked += 1
        # Nothing to press on the pages either.
        page = viewer.get(change).content.decode()
        for button in ("btn-close", "btn-retry", "btn-route", "btn-reopen", "btn-test-connection", "resend"):
            assert f'id="{button}"' not in page and ">resend" not in page, (name, button)
    # The console's own buttons, forged.
    for operation in ("close", "retry", "route", "reopen", "anything"):
        url = reverse("admin:bridge_conversationlink_operate", args=[rows.pk, operation])
        assert viewer.post(url, {"reason": "x", "endpoint": generic_endpoint.pk}).status_code == 403, (
            operation
        )
        walked += 1
    message = Message.objects.get(external_id="a-perm")
    resend = reverse("admin:bridge_conversationlink_resend", args=[rows.pk, message.pk])
    assert viewer.post(resend, {"confirm": "yes"}).status_code == 403
    test = reverse("admin:bridge_ccaasendpoint_test", args=[generic_endpoint.pk])
    assert viewer.post(test).status_code == 403
    assert walked >= 12
    assert snapshot() == before
    assert LogEntry.objects.count() == 0


def test_an_operator_may_test_a_connection_but_not_edit_the_endpoint(client, generic_endpoint):
    user = User.objects.create_user("olga", password="pw-olga-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"))
    client.force_login(user)
    page = client.get(
        reverse("admin:bridge_ccaasendpoint_change", args=[generic_endpoint.pk])
    ).content.decode()
    assert 'id="btn-test-connection"' in page
    assert (
        client.post(reverse("admin:bridge_ccaasendpoint_change", args=[generic_endpoint.pk]), {}).status_code
        == 403
    )
    client.post(reverse("admin:bridge_ccaasendpoint_test", args=[generic_endpoint.pk]))
    generic_endpoint.refresh_from_db()
    assert generic_endpoint.health == ("healthy", "ok")
    assert LogEntry.objects.get().change_message == "Connection test succeeded."
