"""The console tells the truth: endpoint health only from real calls, skipped work never shown as
delivered, every waiting customer visible and counted, the overview, the lists and /metrics agreeing,
advice that fits each cause, and operator actions that are hard to misuse."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import requests
import responses
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from bridge import dashboard, delivery, periodic, services
from bridge.causes import Cause
from bridge.exceptions import TransientError
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, HandoverEvent, Message, State

pytestmark = pytest.mark.django_db

ZENDESK = "https://acme.zendesk.com"


@pytest.fixture
def root(client):
    user = User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(user)
    return client


@pytest.fixture
def zendesk(db):
    return CcaasEndpoint.objects.create(
        slug="zd",
        kind="zendesk",
        config={"subdomain": "acme", "mode": "poll"},
        credentials={"email": "bot@example.com", "api_token": "zd-token-123"},
    )


def link(endpoint, conversation_id, *, state=State.ACTIVE, age=60, **extra):
    now = timezone.now()
    values = {
        "channel": "WHATSAPP",
        "customer_address": "447700900123",
        "interaction_id": "" if state in (State.REQUESTED, State.FAILED) else f"int-{conversation_id}",
        "escalated_at": now - timedelta(seconds=age),
        "opened_at": None if state in (State.REQUESTED, State.FAILED) else now,
    }
    values.update(extra)
    return ConversationLink.objects.create(
        conversation_id=conversation_id, endpoint=endpoint, state=state, **values
    )


def customer_message(
    handover, text, external_id, *, state=Delivery.Status.PENDING, failing_for=None, **extra
):
    row = Message.objects.create(
        link=handover,
        source=Message.Source.INFOBIP,
        direction=Message.Direction.INBOUND,
        external_id=external_id,
        content={"text": text},
        created_at=timezone.now() - timedelta(seconds=30),
    )
    Delivery.objects.create(
        link=handover,
        message=row,
        kind=Delivery.Kind.MESSAGE,
        lane=Delivery.Lane.TO_CCAAS,
        state=state,
        sort_at=row.created_at,
        failing_since=timezone.now() - failing_for if failing_for else None,
        attempts=3 if failing_for else 0,
        last_error="HTTP 503" if failing_for or state == Delivery.Status.DEAD else "",
        **extra,
    )
    return row


def opening(handover, *, attempts=0, failing_for=None, cause="", state=Delivery.Status.PENDING, error=""):
    return Delivery.objects.create(
        link=handover,
        kind=Delivery.Kind.OPEN,
        lane=Delivery.Lane.TO_CCAAS,
        phase=0,
        state=state,
        sort_at=handover.escalated_at,
        attempts=attempts,
        failing_since=timezone.now() - failing_for if failing_for else None,
        last_error=error,
        cause=cause,
    )


# --- health from evidence only -------------------------------------------------------------------
@responses.activate
def test_an_unreachable_endpoint_stays_unhealthy_until_a_real_call_succeeds(root, zendesk):
    responses.add(responses.GET, f"{ZENDESK}/api/v2/users/me", body=requests.ConnectionError("refused"))
    test = reverse("admin:bridge_ccaasendpoint_test", args=[zendesk.pk])
    page = root.post(test, follow=True).content.decode()
    assert "connection test failed" in page
    zendesk.refresh_from_db()
    assert zendesk.health == ("unhealthy", "bad") and zendesk.last_success_at is None
    assert "connection failed" in zendesk.last_error

    # A poll cycle with no open ticket makes no call: it proves nothing and changes nothing.
    periodic.poll_endpoint(zendesk.pk)
    zendesk.refresh_from_db()
    assert len(responses.calls) == 1
    assert zendesk.health == ("unhealthy", "bad") and zendesk.last_success_at is None
    assert CcaasEndpoint.objects.unhealthy().get() == zendesk

    # A real successful call heals it, and the error text goes.
    responses.replace(
        responses.GET, f"{ZENDESK}/api/v2/users/me", json={"user": {"id": 7, "name": "Bot", "role": "agent"}}
    )
    root.post(test)
    zendesk.refresh_from_db()
    assert zendesk.health == ("healthy", "ok") and zendesk.last_error == ""
    assert zendesk.last_error_at is not None and zendesk.last_success_at > zendesk.last_error_at
    assert list(CcaasEndpoint.objects.healthy()) == [zendesk]


@responses.activate
def test_a_poll_that_calls_records_its_outcome(zendesk):
    handover = link(zendesk, "conv-zd", interaction_id="42")
    responses.add(responses.GET, f"{ZENDESK}/api/v2/tickets/show_many", status=503, body="down")
    periodic.poll_endpoint(zendesk.pk)
    zendesk.refresh_from_db()
    assert zendesk.health == ("unhealthy", "bad") and "HTTP 503" in zendesk.last_error
    responses.replace(
        responses.GET, f"{ZENDESK}/api/v2/tickets/show_many", json={"tickets": [{"id": 42, "status": "open"}]}
    )
    responses.add(responses.GET, f"{ZENDESK}/api/v2/tickets/42/comments", json={"comments": []})
    periodic.poll_endpoint(zendesk.pk)
    zendesk.refresh_from_db()
    assert zendesk.health == ("healthy", "ok") and handover.pk


def test_an_infobip_failure_is_not_held_against_the_contact_center(generic_endpoint):
    error = TransientError("Infobip: HTTP 503 on GET /ccaas/1/conversations", status=503, service="Infobip")
    assert generic_endpoint.record_failure(error) is False
    generic_endpoint.refresh_from_db()
    assert generic_endpoint.last_error == "" and generic_endpoint.health == ("no call yet", "muted")


# --- skipped work is never shown as delivered ------------------------------------------------------
def test_closing_a_handover_whose_open_kept_failing_skips_the_open_and_claims_no_success(
    root, generic_endpoint, fake_infobip
):
    generic_endpoint.record_failure(
        TransientError("endpoint acme: connection failed", service="endpoint acme")
    )
    handover = link(generic_endpoint, fake_infobip.add_conversation(), state=State.REQUESTED, age=3600)
    opening(handover, attempts=7, failing_for=timedelta(minutes=50), cause=Cause.UNREACHABLE, error="refused")
    assert services.close_handover(handover, actor="admin:root", note="customer gave up")
    delivery.drain()

    row = Delivery.objects.get(link=handover, kind=Delivery.Kind.OPEN)
    assert row.state == Delivery.Status.SKIPPED and row.attempts == 7
    assert not Delivery.objects.filter(link=handover, kind=Delivery.Kind.CLOSE_CCAAS).exists()
    texts = " ".join(HandoverEvent.objects.filter(link=handover).values_list("text", flat=True))
    assert "succeeded" not in texts and "delivered after" not in texts
    generic_endpoint.refresh_from_db()
    assert generic_endpoint.health == ("unhealthy", "bad") and generic_endpoint.last_success_at is None
    page = root.get(reverse("admin:bridge_conversationlink_change", args=[handover.pk])).content.decode()
    assert re.search(
        r"<td>Open interaction</td><td>To contact center</td><td><span[^>]*>Skipped \(not sent\)", page
    )
    assert "Delivered after failing" not in page


def test_a_handler_that_skips_is_on_the_timeline_as_skipped(generic_endpoint, fake_infobip):
    handover = link(generic_endpoint, "conv-skip", state=State.CLOSING, closing_at=timezone.now())
    row = opening(handover, attempts=2, error="refused")
    delivery.drive_lane(handover.pk, Delivery.Lane.TO_CCAAS)
    row.refresh_from_db()
    assert row.state == Delivery.Status.SKIPPED
    event = HandoverEvent.objects.get(link=handover, kind="skipped")
    assert "not sent" in event.text and "CLOSING" in event.text
    assert not HandoverEvent.objects.filter(link=handover, kind="delivered").exists()
    generic_endpoint.refresh_from_db()
    assert generic_endpoint.last_success_at is None


def test_a_retried_dead_letter_that_gets_through_is_a_recovery_and_clears_the_errors(
    generic_endpoint, fake_ccaas, fake_infobip
):
    handover = link(generic_endpoint, "conv-rec", interaction_id="INT-R", last_error="HTTP 503")
    fake_ccaas.interactions["INT-R"] = {"open": {}, "messages": [], "closed": None, "duplicates": 0}
    customer_message(handover, "hello?", "m-rec", state=Delivery.Status.DEAD, cause=Cause.UNREACHABLE)
    generic_endpoint.record_failure(TransientError("endpoint acme: HTTP 503", service="endpoint acme"))
    assert services.retry_failed(handover, actor="admin:root") == 1
    delivery.drain()
    event = HandoverEvent.objects.get(link=handover, kind="delivered")
    assert "delivered after 1 attempt;" in event.text and "HTTP 503" in event.text
    handover.refresh_from_db()
    generic_endpoint.refresh_from_db()
    assert handover.last_error == "" and generic_endpoint.health == ("healthy", "ok")
    assert Delivery.objects.get(message__external_id="m-rec").cause == ""


# --- every waiting customer is visible and counted ------------------------------------------------
def test_messages_waiting_behind_a_pending_open_are_shown_and_counted(root, generic_endpoint):
    handover = link(generic_endpoint, "conv-wait", state=State.REQUESTED, age=600)
    opening(handover, attempts=3, failing_for=timedelta(minutes=9), cause=Cause.UNREACHABLE, error="refused")
    customer_message(handover, "Is anyone there?", "m-w1")
    page = root.get(reverse("admin:bridge_conversationlink_change", args=[handover.pk])).content.decode()
    assert "Is anyone there?" in page and "waiting for the interaction to open" in page
    assert "No messages yet" not in page

    oldest = Delivery.objects.oldest_waiting_customer()
    assert oldest.kind == Delivery.Kind.OPEN and oldest.link == handover  # waiting since the escalation
    overview = dashboard.overview()
    assert overview.waiting_customers == 1 and overview.oldest_waiting["url"].endswith(
        f"{handover.pk}/change/"
    )
    metrics = root.get("/metrics").content.decode()
    assert "bridge_customers_waiting 1.0" in metrics
    age = float(re.search(r"^bridge_oldest_pending_customer_message_seconds (\S+)$", metrics, re.M).group(1))
    assert 590 <= age < 3600
    index = root.get(reverse("admin:index")).content.decode()
    assert "Every customer message has reached" not in index


def test_overview_lists_and_metrics_agree_on_every_count(root, generic_endpoint):
    long_ago = timedelta(hours=1)
    stuck = link(generic_endpoint, "c-stuck", state=State.REQUESTED, age=7200)
    opening(stuck, attempts=3, failing_for=long_ago, cause=Cause.UNREACHABLE, error="refused")
    link(generic_endpoint, "c-waiting")  # active, nobody accepted or wrote yet
    replied = link(generic_endpoint, "c-replied")
    Message.objects.create(
        link=replied,
        source=Message.Source.CCAAS,
        direction=Message.Direction.OUTBOUND,
        external_id="a1",
        author_type="AGENT",
        content={"text": "Hi"},
        created_at=timezone.now(),
    )
    dead = link(generic_endpoint, "c-dead", accepted_at=timezone.now())
    customer_message(dead, "lost", "m-dead", state=Delivery.Status.DEAD)
    failing = link(generic_endpoint, "c-failing", accepted_at=timezone.now())
    customer_message(failing, "slow", "m-failing", failing_for=timedelta(minutes=1))
    link(generic_endpoint, "c-closed", state=State.CLOSED, closed_at=timezone.now())

    overview = dashboard.overview()
    metrics = root.get("/metrics").content.decode()

    def metric(name):
        return int(float(re.search(rf"^{name} (\S+)$", metrics, re.M).group(1)))

    def listed(model, query):
        response = root.get(reverse(f"admin:bridge_{model}_changelist") + "?" + query)
        return response.context["cl"].result_count

    # Stuck: the handover not opened for two hours, and the one with a dead letter (at once).
    expected = {"stuck": 2, "failing": 2, "dead": 1, "waiting_for_agent": 2, "waiting_customers": 3}
    assert {name: getattr(overview, name) for name in expected} == expected
    assert listed("conversationlink", "attention=stuck") == metric("bridge_handovers_stuck") == 2
    assert listed("delivery", "status=failing") == metric("bridge_deliveries_failing") == 2
    assert listed("delivery", "status=dead") == metric("bridge_dead_letters") == 1
    assert (
        listed("conversationlink", "attention=waiting") == metric("bridge_handovers_waiting_for_agent") == 2
    )
    assert listed("conversationlink", "attention=customer_waiting") == metric("bridge_customers_waiting") == 3
    assert listed("conversationlink", "attention=failing") == 2
    assert sum(e.failing for e in overview.endpoints) == 2
    endpoint_list = root.get(reverse("admin:bridge_ccaasendpoint_changelist")).content.decode()
    assert re.search(r'status=failing&amp;link__endpoint__id__exact=\d+">2</a>', endpoint_list)


# --- advice that fits the cause ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cause", "advice", "retry_offered"),
    [
        (Cause.UNREACHABLE, "Fix the endpoint", True),
        (Cause.CREDENTIALS, "credentials, press Test connection", True),
        (Cause.INFOBIP_SETTINGS, "INFOBIP_API_KEY", True),
        (Cause.CONVERSATION_GONE, "Retrying cannot help", False),
        (Cause.INTERACTION_OVER, "the interaction is over", False),
        (Cause.RATE_LIMITED, "tries again by itself", False),
    ],
)
def test_each_cause_has_its_own_advice_and_matching_actions(
    root, generic_endpoint, cause, advice, retry_offered
):
    handover = link(generic_endpoint, f"conv-{cause}", accepted_at=timezone.now())
    customer_message(handover, "help", f"m-{cause}", failing_for=timedelta(hours=1), cause=cause)
    page = root.get(reverse("admin:bridge_conversationlink_change", args=[handover.pk])).content.decode()
    assert f'data-cause="{cause}"' in page and advice in page
    assert ('id="btn-retry"' in page) is retry_offered
    assert 'id="btn-close"' in page


def test_a_conversation_gone_from_infobip_is_closed_not_retried(root, generic_endpoint):
    handover = link(generic_endpoint, "conv-gone", state=State.FAILED, last_error="does not exist on Infobip")
    opening(handover, attempts=1, state=Delivery.Status.DEAD, cause=Cause.CONVERSATION_GONE, error="404")
    page = root.get(reverse("admin:bridge_conversationlink_change", args=[handover.pk])).content.decode()
    assert "Retrying cannot help" in page and 'id="btn-retry"' not in page and 'id="btn-close"' in page
    root.post(
        reverse("admin:bridge_conversationlink_operate", args=[handover.pk, "close"]), {"reason": "gone"}
    )
    handover.refresh_from_db()
    assert handover.state == State.CLOSED and handover.closed_by == "admin:root"
    assert not Delivery.objects.dead().filter(link=handover).exists()
    assert Delivery.objects.oldest_waiting_customer() is None


# --- actions that are hard to misuse ----------------------------------------------------------------
def test_reopen_needs_an_explicit_endpoint_and_resend_to_the_customer_needs_confirmation(
    root, generic_endpoint
):
    other = CcaasEndpoint.objects.create(slug="beta", kind="generic", config={"base_url": "http://x"})
    handover = link(generic_endpoint, "conv-misuse", state=State.REQUESTED, age=3600)
    opening(handover, attempts=2, failing_for=timedelta(hours=1), cause=Cause.UNREACHABLE, error="refused")
    page = root.get(reverse("admin:bridge_conversationlink_change", args=[handover.pk])).content.decode()
    assert '<label for="reopen-endpoint">' in page and '<option value="" selected disabled>' in page
    assert "Django" not in page or 'class="closelink"' not in page  # no grey "Close" next to the red button
    reopen = reverse("admin:bridge_conversationlink_operate", args=[handover.pk, "reopen"])
    page = root.post(reopen, {}, follow=True).content.decode()
    assert "choose the endpoint" in page
    handover.refresh_from_db()
    assert handover.endpoint == generic_endpoint
    root.post(reopen, {"endpoint": other.pk})
    handover.refresh_from_db()
    assert handover.endpoint == other

    active = link(generic_endpoint, "conv-resend")
    agent = Message.objects.create(
        link=active,
        source=Message.Source.CCAAS,
        direction=Message.Direction.OUTBOUND,
        external_id="a-1",
        author_type="AGENT",
        content={"text": "Your refund is on its way"},
        created_at=timezone.now(),
    )
    Delivery.objects.create(
        link=active, message=agent, kind=Delivery.Kind.MESSAGE, lane=Delivery.Lane.TO_INFOBIP, state="DONE"
    )
    resend = reverse("admin:bridge_conversationlink_resend", args=[active.pk, agent.pk])
    page = root.get(reverse("admin:bridge_conversationlink_change", args=[active.pk])).content.decode()
    assert 'data-confirm="Send this agent message to the customer again?' in page
    assert "needs confirmation" in root.post(resend, follow=True).content.decode()
    assert Delivery.objects.get(message=agent).state == Delivery.Status.DONE
    root.post(resend, {"confirm": "yes"})
    assert Delivery.objects.get(message=agent).state == Delivery.Status.PENDING


def test_bulk_retry_of_fifty_stuck_handovers_from_the_filtered_list(root, generic_endpoint):
    for i in range(50):
        handover = link(generic_endpoint, f"conv-bulk-{i}", accepted_at=timezone.now())
        customer_message(
            handover, "x", f"m-bulk-{i}", state=Delivery.Status.PENDING, failing_for=timedelta(hours=1)
        )
    link(generic_endpoint, "conv-fine")
    changelist = reverse("admin:bridge_conversationlink_changelist")
    assert root.get(changelist + "?attention=stuck").context["cl"].result_count == 50
    response = root.post(
        changelist + "?attention=stuck",
        {"action": "retry_selected", "select_across": "1", "index": "0", "_selected_action": ["x"]},
        follow=True,
    )
    assert "50 deliveries queued again" in response.content.decode()
    assert Delivery.objects.failing().count() == 0
    assert HandoverEvent.objects.filter(kind="retry", actor="admin:root").count() == 50


def test_bulk_close_needs_a_reason_and_route_back_is_recorded(root, generic_endpoint, fake_infobip):
    handovers = [link(generic_endpoint, fake_infobip.add_conversation()) for _ in range(3)]
    changelist = reverse("admin:bridge_conversationlink_changelist")
    selected = [str(h.pk) for h in handovers]
    page = root.post(changelist, {"action": "close_selected", "_selected_action": selected}, follow=True)
    assert "give a reason" in page.content.decode()
    assert ConversationLink.objects.filter(state=State.CLOSING).count() == 0
    root.post(changelist, {"action": "route_selected", "_selected_action": selected[:2]})
    assert HandoverEvent.objects.filter(kind="routed_to_infobip", actor="admin:root").count() == 2
    root.post(changelist, {"action": "close_selected", "_selected_action": selected[2:], "reason": "spam"})
    assert HandoverEvent.objects.get(kind="operator_note").text == "spam"
