"""The console tells the truth, in Chromium at a laptop's 1366 x 768 and at 1920 x 1080: an unreachable
endpoint stays unhealthy until a real call succeeds; a skipped open is shown as skipped; waiting
customers are visible and counted; each failure cause shows its own advice and actions; 50 stuck
handovers are retried from the filtered list; lists fit the screen. Screenshots of every step go to
artifacts/screenshots/<width>-<step>.png."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from bridge import delivery, periodic
from bridge.causes import Cause
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, Message
from tests.browser.conftest import login
from tests.conftest import GENERIC_SECRET

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

WIDTHS = {"1366": {"width": 1366, "height": 768}, "1920": {"width": 1920, "height": 1080}}
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused


@pytest.fixture(params=sorted(WIDTHS))
def screen(request, browser, live_server):
    """A logged-in superuser's tab at one of the two widths, and a screenshot helper for it."""
    context = browser.new_context(viewport=WIDTHS[request.param])
    context.set_default_timeout(15000)
    tab = context.new_page()
    User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    login(tab, live_server, "root", "pw-root-123")
    yield tab, request.param
    context.close()


@pytest.fixture
def endpoint(settings, fake_ccaas, fake_infobip):
    settings.BRIDGE_STUCK_AFTER_SECONDS = 60
    return CcaasEndpoint.objects.create(
        slug="acme",
        kind="generic",
        config={"base_url": UNREACHABLE, "mode": "webhook"},
        credentials={"secret": GENERIC_SECRET},
        is_default=True,
    )


def _fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def _right_edge(page, selector: str) -> float:
    return page.evaluate(f"document.querySelector({selector!r}).getBoundingClientRect().right")


def _requested(endpoint, conversation_id, *, age=3600, attempts=4, cause=Cause.UNREACHABLE):
    link = ConversationLink.objects.create(
        conversation_id=conversation_id,
        endpoint=endpoint,
        channel="WHATSAPP",
        customer_address="447700900123",
        escalated_at=timezone.now() - timedelta(seconds=age),
    )
    Delivery.objects.create(
        link=link,
        kind=Delivery.Kind.OPEN,
        lane=Delivery.Lane.TO_CCAAS,
        phase=0,
        sort_at=link.escalated_at,
        attempts=attempts,
        failing_since=link.escalated_at,
        next_attempt_at=timezone.now() + timedelta(minutes=5),
        last_error="endpoint acme (Generic protocol): connection failed (POST /interactions): ConnectionError",
        cause=cause,
    )
    return link


def test_an_unreachable_endpoint_stays_unhealthy_until_a_real_success(
    screen, live_server, shot, endpoint, fake_ccaas
):
    page, width = screen
    page.goto(f"{live_server.url}/admin/bridge/ccaasendpoint/{endpoint.pk}/change/")
    page.click("#btn-test-connection")
    page.wait_for_selector(".messagelist")
    assert "connection test failed" in page.inner_text(".messagelist")
    shot(page, f"{width}-10-endpoint-test-failed")

    periodic.tick(inline=True)  # a cycle that calls nobody proves nothing
    page.goto(f"{live_server.url}/admin/bridge/ccaasendpoint/")
    row = page.inner_text("#result_list")
    assert "unhealthy" in row and "healthy" not in row.replace("unhealthy", "")
    assert "cannot reach" in row
    assert _fits(page) and _right_edge(page, "th.column-error") <= WIDTHS[width]["width"]
    shot(page, f"{width}-11-endpoint-list-unhealthy")
    page.goto(f"{live_server.url}/admin/")
    assert "unhealthy" in page.inner_text("#overview")

    CcaasEndpoint.objects.filter(pk=endpoint.pk).update(
        config={"base_url": fake_ccaas.base_url, "mode": "webhook"}
    )
    page.goto(f"{live_server.url}/admin/bridge/ccaasendpoint/{endpoint.pk}/change/")
    page.click("#btn-test-connection")
    page.wait_for_selector(".messagelist")
    page.goto(f"{live_server.url}/admin/bridge/ccaasendpoint/")
    row = page.inner_text("#result_list")
    assert "healthy" in row and "unhealthy" not in row and "cannot reach" not in row
    shot(page, f"{width}-12-endpoint-list-recovered")


def test_a_skipped_open_and_waiting_customers_are_shown_for_what_they_are(
    screen, live_server, shot, endpoint
):
    page, width = screen
    link = _requested(endpoint, "conv-waiting")
    Message.objects.create(
        link=link,
        source=Message.Source.INFOBIP,
        direction=Message.Direction.INBOUND,
        external_id="m-1",
        content={"text": "Hello? Is anyone there?"},
        created_at=timezone.now() - timedelta(minutes=20),
    )
    Delivery.objects.create(
        link=link,
        message=Message.objects.get(external_id="m-1"),
        kind=Delivery.Kind.MESSAGE,
        lane=Delivery.Lane.TO_CCAAS,
        sort_at=timezone.now() - timedelta(minutes=20),
    )
    page.goto(f"{live_server.url}/admin/")
    assert page.inner_text("#card-customers-waiting .hb-num") == "1"
    assert "Every customer message has reached" not in page.inner_text("#overview")
    assert page.inner_text("#card-stuck .hb-lbl") == "stuck handover"
    for header in page.query_selector_all(".hb-endpoints th"):
        assert header.bounding_box()["height"] < 30, header.inner_text()  # never "OPE/N"
    assert _fits(page)
    shot(page, f"{width}-20-overview-customer-waiting")

    page.click("#oldest-waiting")
    page.wait_for_selector("#transcript")
    transcript = page.inner_text("#transcript")
    assert "Hello? Is anyone there?" in transcript and "waiting for the interaction to open" in transcript
    assert "No messages yet" not in transcript
    shot(page, f"{width}-21-transcript-waiting-for-open")

    page.fill("#close-reason", "customer went to the shop")
    page.click("#btn-close")
    page.wait_for_selector(".messagelist")
    delivery.drain()
    page.reload()
    deliveries = page.inner_text("#deliveries")
    assert "Skipped (not sent)" in deliveries
    timeline = page.inner_text("#timeline")
    assert "Skipped (not sent)" in timeline and "succeeded" not in timeline
    assert "Delivered after failing" not in timeline
    assert not page.query_selector("a.closelink")  # no grey "Close" link next to the red button
    shot(page, f"{width}-22-handover-open-skipped")
    endpoint.refresh_from_db()
    assert endpoint.last_success_at is None


@pytest.mark.parametrize(
    ("cause", "says", "retry"),
    [
        (Cause.UNREACHABLE, "Fix the endpoint", True),
        (Cause.INFOBIP_SETTINGS, "INFOBIP_API_KEY", True),
        (Cause.CONVERSATION_GONE, "Retrying cannot help", False),
        (Cause.RATE_LIMITED, "tries again by itself", False),
    ],
)
def test_each_cause_shows_its_own_advice_and_actions(screen, live_server, shot, endpoint, cause, says, retry):
    page, width = screen
    link = _requested(endpoint, f"conv-{cause}", cause=cause)
    page.goto(f"{live_server.url}/admin/bridge/conversationlink/{link.pk}/change/")
    advice = page.inner_text("#diagnosis")
    assert says in advice
    assert (page.query_selector("#btn-retry") is not None) is retry
    assert page.query_selector("#btn-close") is not None
    if page.query_selector("#reopen-endpoint"):
        assert page.input_value("#reopen-endpoint") == ""  # no endpoint pre-selected
    shot(page, f"{width}-3{list(Cause).index(cause)}-advice-{cause}")


def test_bulk_retry_of_fifty_stuck_handovers(screen, live_server, shot, endpoint):
    page, width = screen
    for i in range(50):
        _requested(endpoint, f"conv-bulk-{i:02d}")
    page.goto(f"{live_server.url}/admin/bridge/conversationlink/?attention=stuck")
    assert _fits(page)
    assert _right_edge(page, "th.column-stuck_badge") <= WIDTHS[width]["width"]
    assert _right_edge(page, "th.column-error") <= WIDTHS[width]["width"]
    shot(page, f"{width}-40-stuck-list")
    page.check("#action-toggle")
    if page.is_visible("a.question"):
        page.click("a.question")  # "Select all 50"
    page.select_option("select[name=action]", "retry_selected")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    assert "50 deliveries queued again" in page.inner_text(".messagelist")
    shot(page, f"{width}-41-bulk-retried")
    assert Delivery.objects.failing().count() == 0
    assert Delivery.objects.filter(kind=Delivery.Kind.OPEN, attempts=0, state="PENDING").count() == 50


def test_the_endpoint_form_has_no_null_and_complete_help_texts(screen, live_server, shot, endpoint):
    page, width = screen
    page.goto(f"{live_server.url}/admin/bridge/ccaasendpoint/add/")
    page.select_option("#id_kind", "zendesk")
    for area in page.query_selector_all("textarea"):
        assert area.input_value() != "null", area.get_attribute("name")
    assert "https://<subdomain>.zendesk.com" in page.inner_text("fieldset.kind-zendesk")
    assert "Base URL" in page.inner_text("fieldset.kind-zendesk")
    page.fill("#id_slug", "zd")
    page.fill("#id_cfg__zendesk__base_url", "ftp://nowhere")
    page.click("input[name=_save]")
    page.wait_for_selector(".errorlist")
    error = page.query_selector(".form-row.field-cfg__zendesk__base_url .errorlist")
    assert error is not None and "http(s) URL" in error.inner_text()
    shot(page, f"{width}-50-endpoint-form-error-at-field")


def test_an_operator_subscribes_to_alerts_and_a_stuck_handover_is_told_once(
    screen, live_server, shot, endpoint, mailoutbox
):
    from bridge import alerts

    page, width = screen
    page.goto(f"{live_server.url}/admin/bridge/alertchannel/add/")
    page.fill("#id_name", "ops mail")
    page.select_option("#id_kind", "email")
    page.fill("#id_recipients", "ops@example.com")
    page.check("input[name=events][value=stuck]")
    assert _fits(page)
    shot(page, f"{width}-60-alert-channel-add")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    assert "Stuck handover" in page.inner_text("#result_list")

    link = _requested(endpoint, "conv-alerted")
    for _ in range(3):
        alerts.run()
    assert len(mailoutbox) == 1 and str(link.pk) in mailoutbox[0].body
    page.goto(f"{live_server.url}/admin/bridge/alertnotification/")
    assert "Sent" in page.inner_text("#result_list")
    shot(page, f"{width}-61-alert-sent")

    ConversationLink.objects.filter(pk=link.pk).update(state="CLOSED", closed_at=timezone.now())
    alerts.run()
    assert len(mailoutbox) == 2 and mailoutbox[1].subject.startswith("[Handover Bridge] Resolved")
