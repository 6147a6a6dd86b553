"""A person who has never seen the bridge, in a real browser: find a stuck handover, see why, fix it,
close it; configure a new contact center and test it; and a read-only operator who cannot change
anything. Screenshots of each main page go to artifacts/screenshots/."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from bridge import delivery, services
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, State
from tests.browser.conftest import login
from tests.conftest import GENERIC_SECRET

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture
def stuck_handover(settings, fake_infobip, fake_ccaas):
    """A real handover whose customer message the contact center keeps refusing with 503."""
    settings.BRIDGE_STUCK_AFTER_SECONDS = 0
    endpoint = CcaasEndpoint.objects.create(
        slug="acme",
        kind="generic",
        config={"base_url": fake_ccaas.base_url, "mode": "webhook"},
        credentials={"secret": GENERIC_SECRET},
        is_default=True,
    )
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "Hi, I need a human")
    link, _ = services.escalate(services.EscalationRequest(conversation_id=conv))
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.ACTIVE
    fault = fake_ccaas.fail("POST", r"/bridge/interactions/[^/]+/messages", count=1000, status=503)
    services.record_inbound([_customer_message(fake_infobip, conv, "Where is my parcel?")])
    delivery.drain(rounds=1)
    row = Delivery.objects.get(link=link, message__content__text="Where is my parcel?")
    assert row.failing_since is not None
    return link, endpoint, fault


def _customer_message(fake_infobip, conv, text):
    from bridge.infobip.events import parse_message

    return parse_message(fake_infobip.message(conv, text))


def test_find_understand_fix_and_close_a_stuck_handover(live_server, page, shot, stuck_handover, fake_ccaas):
    link, _endpoint, fault = stuck_handover
    User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    login(page, live_server, "root", "pw-root-123")
    shot(page, "01-overview")
    assert page.inner_text("#card-stuck .hb-num") == "1"

    page.click("#card-stuck")
    page.wait_for_selector("#result_list")
    assert link.conversation_id in page.inner_text("#result_list")
    assert "stuck" in page.inner_text("#result_list")
    shot(page, "02-stuck-handovers")

    page.click(f"#result_list a:has-text('{link.conversation_id[:20]}')")
    page.wait_for_selector("#transcript")
    transcript = page.inner_text("#transcript")
    assert "Hi, I need a human" in transcript and "Where is my parcel?" in transcript
    assert "503" in page.inner_text("#diagnosis")
    assert "Opened" in page.inner_text("#timeline")
    shot(page, "03-handover-stuck")

    # The contact center is back: retry, and the message arrives.
    fault.count = 0
    page.click("#btn-retry")
    page.wait_for_selector(".messagelist")
    assert "queued again" in page.inner_text(".messagelist")
    delivery.drain()
    page.reload()
    assert page.query_selector("#diagnosis") is None
    assert "Delivered" in page.inner_text("#transcript")
    sent = [m["content"]["text"] for m in fake_ccaas.interactions[link.interaction_id]["messages"]]
    assert sent == ["Where is my parcel?"]

    page.fill("#close-reason", "customer got the answer")
    page.click("#btn-close")
    page.wait_for_selector(".messagelist")
    assert page.inner_text("#handover-state") == "Closing"
    delivery.drain()
    page.reload()
    assert page.inner_text("#handover-state") == "Closed"
    timeline = page.inner_text("#timeline")
    assert "customer got the answer" in timeline and "admin:root" in timeline
    shot(page, "04-handover-closed")
    link.refresh_from_db()
    assert link.state == State.CLOSED


def test_configure_a_new_contact_center_and_test_its_connection(live_server, page, shot, fake_ccaas):
    User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    login(page, live_server, "root", "pw-root-123")
    page.goto(f"{live_server.url}/admin/bridge/ccaasendpoint/add/")
    page.fill("#id_slug", "new-center")
    page.fill("#id_name", "New center")
    page.select_option("#id_kind", "generic")
    assert page.is_visible("#id_cfg__generic__base_url")
    page.fill("#id_cfg__generic__base_url", fake_ccaas.base_url)
    page.fill("#id_cred__generic__secret", GENERIC_SECRET)
    shot(page, "05-endpoint-add")
    page.click("input[name=_continue]")
    page.wait_for_selector("#btn-test-connection")
    endpoint = CcaasEndpoint.objects.get(slug="new-center")
    assert endpoint.credentials == {"secret": GENERIC_SECRET}
    assert page.input_value("#hb-webhook-url") == endpoint.webhook_url()
    assert page.input_value("#id_cred__generic__secret") == ""
    assert GENERIC_SECRET not in page.content()

    page.click("#btn-test-connection")
    page.wait_for_selector(".messagelist")
    assert "connection OK" in page.inner_text(".messagelist")
    shot(page, "06-endpoint-tested")

    page.goto(f"{live_server.url}/admin/bridge/ccaasendpoint/")
    assert "healthy" in page.inner_text("#result_list")
    shot(page, "07-endpoints")


def test_read_only_operator_cannot_change_anything(live_server, page, shot, stuck_handover):
    link, endpoint, _fault = stuck_handover
    call_command("bridge_operator_groups")  # a transactional test starts from a flushed database
    user = User.objects.create_user("vera", password="pw-vera-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators (read-only)"))
    login(page, live_server, "vera", "pw-vera-123")
    assert page.inner_text("#card-stuck .hb-num") == "1"

    page.goto(f"{live_server.url}/admin/bridge/conversationlink/")
    assert link.conversation_id in page.inner_text("#result_list")
    assert page.query_selector("select[name=action]") is None
    page.goto(f"{live_server.url}/admin/bridge/conversationlink/{link.pk}/change/")
    assert "Where is my parcel?" in page.inner_text("#transcript")
    for button in ("#btn-close", "#btn-retry", "#btn-route", "input[name=_save]"):
        assert page.query_selector(button) is None, button
    shot(page, "08-read-only-handover")

    # Even a hand-made request is refused.
    status = page.evaluate(
        """async (url) => {
            const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken='))?.split('=')[1] || '';
            const r = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token}});
            return r.status;
        }""",
        f"/admin/bridge/conversationlink/{link.pk}/operate/close/",
    )
    assert status == 403
    page.goto(f"{live_server.url}/admin/bridge/ccaasendpoint/{endpoint.pk}/change/")
    assert page.query_selector("#id_cfg__generic__base_url") is None
    assert page.query_selector("input[name=_save]") is None
    assert GENERIC_SECRET not in page.content()
    link.refresh_from_db()
    assert link.state == State.ACTIVE
    assert ConversationLink.objects.count() == 1
