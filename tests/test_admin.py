"""The operator console through Django's test client: overview, lists, detail, actions, endpoints,
permissions. The browser tests (tests/browser) walk the same paths in Chromium."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bridge import delivery, operations
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, HandoverEvent, Message, State
from tests.conftest import GENERIC_SECRET

pytestmark = pytest.mark.django_db


def make_link(endpoint, conversation_id="conv-1", *, state=State.ACTIVE, age_seconds=60, **extra):
    now = timezone.now()
    defaults = {
        "channel": "WHATSAPP",
        "customer_address": "447700900123",
        "customer_name": "Ana",
        "interaction_id": f"int-{conversation_id}" if state != State.REQUESTED else "",
        "escalated_at": now - timedelta(seconds=age_seconds),
        "opened_at": now if state != State.REQUESTED else None,
    }
    defaults.update(extra)
    return ConversationLink.objects.create(
        conversation_id=conversation_id, endpoint=endpoint, state=state, **defaults
    )


def customer_message(link, text, *, external_id, state=Delivery.Status.DONE, error="", failing=False):
    row = Message.objects.create(
        link=link,
        source=Message.Source.INFOBIP,
        direction=Message.Direction.INBOUND,
        external_id=external_id,
        author_type="CUSTOMER",
        content={"text": text},
        created_at=timezone.now(),
    )
    Delivery.objects.create(
        link=link,
        message=row,
        kind=Delivery.Kind.MESSAGE,
        lane=Delivery.Lane.TO_CCAAS,
        state=state,
        attempts=3 if error else 1,
        last_error=error,
        failing_since=timezone.now() - timedelta(hours=1) if failing else None,
        sort_at=row.created_at,
    )
    return row


@pytest.fixture
def admin_client_logged(client):
    user = User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(user)
    return client


@pytest.fixture
def operator(client):
    user = User.objects.create_user("olga", password="pw-olga-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"))
    return user


@pytest.fixture
def viewer():
    user = User.objects.create_user("vera", password="pw-vera-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators (read-only)"))
    return user


def test_overview_shows_figures_as_links(admin_client_logged, generic_endpoint):
    stuck = make_link(generic_endpoint, "conv-stuck", state=State.REQUESTED, age_seconds=3600)
    ok = make_link(generic_endpoint, "conv-ok")
    customer_message(
        ok, "still waiting", external_id="m1", state=Delivery.Status.DEAD, error="permanent error: 422"
    )
    response = admin_client_logged.get(reverse("admin:index"))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="card-stuck"' in page and "?attention=stuck" in page
    assert "?status=dead" in page and "still waiting" in page
    # both are stuck: one never became active, the other has a dead letter nothing will retry
    assert re.search(r'id="card-stuck"><span class="hb-num">2<', page)
    listing = admin_client_logged.get(
        reverse("admin:bridge_conversationlink_changelist") + "?attention=stuck"
    )
    assert listing.status_code == 200
    assert stuck.conversation_id in listing.content.decode()
    assert ok.conversation_id in listing.content.decode()


def test_overview_query_count_does_not_grow_with_data(admin_client_logged, generic_endpoint):
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client_logged.get(reverse("admin:index")).status_code == 200
        return len(ctx.captured_queries)

    first = count()
    for i in range(30):
        link = make_link(generic_endpoint, f"conv-{i}", state=State.REQUESTED, age_seconds=5000)
        customer_message(
            link, "hi", external_id=f"m{i}", state=Delivery.Status.PENDING, error="503", failing=True
        )
    assert count() == first


def test_filters_and_search(admin_client_logged, generic_endpoint):
    failing = make_link(generic_endpoint, "conv-failing")
    customer_message(failing, "x", external_id="m1", state=Delivery.Status.PENDING, error="503", failing=True)
    closed = make_link(generic_endpoint, "conv-closed", state=State.CLOSED, closed_at=timezone.now())
    url = reverse("admin:bridge_conversationlink_changelist")
    for query, present, absent in [
        ("?attention=failing", failing, closed),
        ("?attention=closed_today", closed, failing),
        ("?channel=WHATSAPP&attention=open", failing, closed),
        ("?q=conv-closed", closed, failing),
        ("?q=int-conv-failing", failing, closed),
    ]:
        page = admin_client_logged.get(url + query).content.decode()
        assert present.conversation_id in page, query
        assert f">{absent.conversation_id}<" not in page, query


def test_detail_shows_transcript_timeline_and_why_it_is_stuck(admin_client_logged, generic_endpoint):
    link = make_link(generic_endpoint, "conv-detail")
    customer_message(link, "My order is late", external_id="m1")
    customer_message(
        link,
        "Hello?",
        external_id="m2",
        state=Delivery.Status.PENDING,
        error="HTTP 503 from ccaas",
        failing=True,
    )
    Message.objects.create(
        link=link,
        source=Message.Source.CCAAS,
        direction=Message.Direction.OUTBOUND,
        external_id="a1",
        author_type="AGENT",
        author_name="Alice",
        content={"text": "Looking into it"},
        created_at=timezone.now(),
    )
    link.note("escalated", "to acme", actor="chatbot")
    page = admin_client_logged.get(
        reverse("admin:bridge_conversationlink_change", args=[link.pk])
    ).content.decode()
    assert "My order is late" in page and "Looking into it" in page and "Alice" in page
    assert "HTTP 503 from ccaas" in page
    assert 'id="stuck-badge"' in page
    assert "has been failing for" in page
    assert "by chatbot" in page


def test_close_and_retry_actions_call_the_services_and_are_logged(
    admin_client_logged, generic_endpoint, fake_infobip
):
    link = make_link(generic_endpoint, "conv-act")
    customer_message(link, "lost", external_id="m1", state=Delivery.Status.DEAD, error="gave up")
    change = reverse("admin:bridge_conversationlink_change", args=[link.pk])
    retry = reverse("admin:bridge_conversationlink_operate", args=[link.pk, "retry"])
    response = admin_client_logged.post(retry, follow=True)
    assert "1 delivery queued again" in response.content.decode()
    assert Delivery.objects.get(message__external_id="m1").state == Delivery.Status.PENDING
    close = reverse("admin:bridge_conversationlink_operate", args=[link.pk, "close"])
    response = admin_client_logged.post(close, {"reason": "customer left"}, follow=True)
    assert response.redirect_chain[-1][0] == change
    link.refresh_from_db()
    assert link.state == State.CLOSING and link.closed_by == "admin:root"
    assert HandoverEvent.objects.filter(link=link, kind="operator_note", text="customer left").exists()
    logs = list(
        LogEntry.objects.filter(object_id=str(link.pk)).values_list("user__username", "change_message")
    )
    assert ("root", "Retried 1 delivery.") in logs
    assert ("root", "Closed on both sides. Reason: customer left") in logs
    assert admin_client_logged.get(retry).status_code == 405


def test_bulk_close_action_with_reason(admin_client_logged, generic_endpoint):
    links = [make_link(generic_endpoint, f"conv-b{i}") for i in range(2)]
    response = admin_client_logged.post(
        reverse("admin:bridge_conversationlink_changelist"),
        {"action": "close_selected", "_selected_action": [str(x.pk) for x in links], "reason": "duplicate"},
        follow=True,
    )
    assert "2 handovers closing on both sides" in response.content.decode()
    assert set(ConversationLink.objects.values_list("state", flat=True)) == {State.CLOSING}


def test_route_to_infobip_asks_infobip_then_closes_the_contact_center_side(
    admin_client_logged, generic_endpoint, fake_infobip
):
    conv = fake_infobip.add_conversation()
    link = make_link(generic_endpoint, conv)
    url = reverse("admin:bridge_conversationlink_operate", args=[link.pk, "route"])
    admin_client_logged.post(url)
    assert fake_infobip.calls("POST", f"/ccaas/1/conversations/{conv}/route")
    link.refresh_from_db()
    assert link.state == State.CLOSING
    kinds = set(Delivery.objects.filter(link=link).values_list("kind", flat=True))
    assert Delivery.Kind.CLOSE_CCAAS in kinds and Delivery.Kind.CLOSE_INFOBIP not in kinds


def test_route_refused_by_infobip_changes_nothing(admin_client_logged, generic_endpoint, fake_infobip):
    link = make_link(generic_endpoint, "conv-unknown-to-infobip")
    url = reverse("admin:bridge_conversationlink_operate", args=[link.pk, "route"])
    page = admin_client_logged.post(url, follow=True).content.decode()
    assert "Not done" in page
    link.refresh_from_db()
    assert link.state == State.ACTIVE


def test_reopen_failed_handover_on_another_endpoint(generic_endpoint, fake_ccaas, fake_infobip):
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "help")
    other = CcaasEndpoint.objects.create(
        slug="backup",
        kind="generic",
        config={"base_url": fake_ccaas.base_url},
        credentials={"secret": GENERIC_SECRET},
    )
    link = make_link(generic_endpoint, conv, state=State.FAILED, interaction_id="")
    Delivery.objects.create(
        link=link, kind=Delivery.Kind.OPEN, lane=Delivery.Lane.TO_CCAAS, phase=0, state=Delivery.Status.DEAD
    )
    moved = operations.reopen_on_endpoint(link, other, actor="admin:root")
    assert moved.endpoint == other and moved.state == State.REQUESTED
    delivery.drain()
    moved.refresh_from_db()
    assert moved.state == State.ACTIVE and moved.interaction_id in fake_ccaas.interactions


def test_reopen_refuses_an_active_handover(generic_endpoint, fake_ccaas):
    other = CcaasEndpoint.objects.create(
        slug="backup", kind="generic", config={"base_url": fake_ccaas.base_url}
    )
    link = make_link(generic_endpoint, "conv-active")
    with pytest.raises(operations.OperationError, match="close it first"):
        operations.reopen_on_endpoint(link, other, actor="x")


def test_resend_a_single_message(admin_client_logged, generic_endpoint, fake_ccaas, fake_infobip):
    link = make_link(generic_endpoint, "conv-resend", interaction_id="")
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "hello")
    ConversationLink.objects.filter(pk=link.pk).update(conversation_id=conv, state=State.REQUESTED)
    Delivery.objects.create(link=link, kind=Delivery.Kind.OPEN, lane=Delivery.Lane.TO_CCAAS, phase=0)
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.ACTIVE
    row = customer_message(link, "again please", external_id="m-again")
    url = reverse("admin:bridge_conversationlink_resend", args=[link.pk, row.pk])
    admin_client_logged.post(url)
    assert Delivery.objects.get(message=row).state == Delivery.Status.PENDING
    delivery.drain()
    sent = [m["content"]["text"] for m in fake_ccaas.interactions[link.interaction_id]["messages"]]
    assert sent == ["again please"]
    assert LogEntry.objects.filter(change_message="Resent message m-again.").exists()


def test_endpoint_form_per_kind_with_write_only_credentials(admin_client_logged, fake_ccaas):
    add = reverse("admin:bridge_ccaasendpoint_add")
    page = admin_client_logged.get(add).content.decode()
    assert 'name="cfg__generic__base_url"' in page and 'name="cred__generic__secret"' in page
    data = {
        "slug": "newcc",
        "name": "New CC",
        "kind": "generic",
        "enabled": "on",
        "routing_order": 100,
        "routing_rules": "[]",
        "cfg__generic__base_url": "not-a-url",
        "cfg__generic__mode": "webhook",
        "cred__generic__secret": "",
    }
    response = admin_client_logged.post(add, data)
    assert response.status_code == 200
    body = response.content.decode()
    assert "must be an http(s) URL" in body and "&#x27;secret&#x27; is required" in body
    data.update({"cfg__generic__base_url": fake_ccaas.base_url, "cred__generic__secret": "s3cr3t-value"})
    response = admin_client_logged.post(add, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint = CcaasEndpoint.objects.get(slug="newcc")
    assert endpoint.config == {"base_url": fake_ccaas.base_url, "mode": "webhook"}
    assert endpoint.credentials == {"secret": "s3cr3t-value"}
    change = reverse("admin:bridge_ccaasendpoint_change", args=[endpoint.pk])
    page = admin_client_logged.get(change).content.decode()
    assert "s3cr3t-value" not in page
    assert "currently set; leave blank to keep it" in page
    assert endpoint.webhook_url() in page
    # blank keeps the stored secret
    data["cred__generic__secret"] = ""
    data["name"] = "Renamed"
    assert admin_client_logged.post(change, data).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.credentials == {"secret": "s3cr3t-value"} and endpoint.name == "Renamed"


def test_test_connection_reports_the_real_answer(admin_client_logged, generic_endpoint, fake_ccaas):
    url = reverse("admin:bridge_ccaasendpoint_test", args=[generic_endpoint.pk])
    page = admin_client_logged.post(url, follow=True).content.decode()
    assert "connection OK" in page
    fake_ccaas.stop()
    page = admin_client_logged.post(url, follow=True).content.decode()
    assert "connection test failed" in page
    assert GENERIC_SECRET not in page


def test_operator_may_act_but_not_edit_endpoints(client, operator, generic_endpoint):
    client.force_login(operator)
    link = make_link(generic_endpoint, "conv-op")
    assert client.get(reverse("admin:bridge_conversationlink_change", args=[link.pk])).status_code == 200
    client.post(reverse("admin:bridge_conversationlink_operate", args=[link.pk, "close"]), {"reason": "done"})
    link.refresh_from_db()
    assert link.state == State.CLOSING
    assert client.get(reverse("admin:bridge_ccaasendpoint_add")).status_code == 403
    page = client.get(
        reverse("admin:bridge_ccaasendpoint_change", args=[generic_endpoint.pk])
    ).content.decode()
    assert GENERIC_SECRET not in page and 'name="cfg__generic__base_url"' not in page


def test_read_only_operator_sees_everything_and_changes_nothing(client, viewer, generic_endpoint):
    client.force_login(viewer)
    link = make_link(generic_endpoint, "conv-ro")
    customer_message(link, "x", external_id="m1", state=Delivery.Status.DEAD, error="e")
    for name in ("conversationlink", "message", "delivery", "inboundevent", "ccaasendpoint"):
        assert client.get(reverse(f"admin:bridge_{name}_changelist")).status_code == 200, name
    page = client.get(reverse("admin:bridge_conversationlink_change", args=[link.pk])).content.decode()
    assert 'id="btn-close"' not in page
    for op in ("close", "retry", "route"):
        assert (
            client.post(reverse("admin:bridge_conversationlink_operate", args=[link.pk, op])).status_code
            == 403
        )
    response = client.post(
        reverse("admin:bridge_conversationlink_changelist"),
        {"action": "close_selected", "_selected_action": [str(link.pk)]},
    )
    link.refresh_from_db()
    assert link.state == State.ACTIVE
    assert response.status_code == 403  # a forged action POST is refused, not ignored
    assert Delivery.objects.get(message__external_id="m1").state == Delivery.Status.DEAD


def test_operator_groups_command_is_idempotent():
    from django.core.management import call_command

    Group.objects.all().delete()
    call_command("bridge_operator_groups")
    call_command("bridge_operator_groups")
    read_only = set(
        Group.objects.get(name="Operators (read-only)").permissions.values_list("codename", flat=True)
    )
    operators = set(Group.objects.get(name="Operators").permissions.values_list("codename", flat=True))
    assert "view_conversationlink" in read_only and not any(c.startswith("change_") for c in read_only)
    assert {"change_conversationlink", "change_delivery", "change_message"} <= operators
    assert "change_ccaasendpoint" not in operators
