"""The context card's HTML in a real browser: what an Infobip agent sees, embedded as Infobip's agent
workspace would embed it, loading nothing from anywhere, and refused inside any other site's frame.
Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from bridge.models import CcaasEndpoint, ConversationLink, Delivery, Message, State

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

CARD_TOKEN = "card-token-for-browser-tests-0123456789"


class _FramingSite:
    """A page on its own loopback origin that frames a given URL (a stand-in for Infobip's agent
    workspace, or for any other site). Real sockets: Chromium refuses to let a page it cannot place
    on the loopback network frame a loopback one, whatever the headers say."""

    def __init__(self, src: str) -> None:
        body = (
            f'<html><body><h1>Workspace</h1><iframe id="card" src="{src}" width="420" height="520">'
            "</iframe></body></html>"
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def conversations(settings):
    settings.BRIDGE_CARD_TOKEN = CARD_TOKEN
    settings.BRIDGE_CARD_ORIGINS = ["https://portal.infobip.com"]
    settings.BRIDGE_STUCK_AFTER_SECONDS = 900
    now = timezone.now()
    zendesk = CcaasEndpoint.objects.create(
        slug="zendesk-support", name="Zendesk Support", kind="zendesk", config={"subdomain": "acme"}
    )
    active = ConversationLink.objects.create(
        conversation_id="ACTIVE-1",
        endpoint=zendesk,
        interaction_id="4711",
        state=State.ACTIVE,
        channel="WHATSAPP",
        escalated_at=now - timedelta(minutes=12),
        opened_at=now - timedelta(minutes=12),
    )
    lines = [
        ("INBOUND", "CUSTOMER", "", "My parcel never arrived", True),
        ("OUTBOUND", "BOT", "", "Let me get you an agent.", True),
        ("INBOUND", "CUSTOMER", "", "Order 77 <b>urgent</b>", False),
        ("OUTBOUND", "AGENT", "Ana Li", "I am on it, refund is on its way.", False),
    ]
    for n, (direction, author, name, text, history) in enumerate(lines):
        Message.objects.create(
            link=active,
            source="infobip" if direction == "INBOUND" else "ccaas",
            direction=direction,
            external_id=f"a-{n}",
            author_type=author,
            author_name=name,
            content={"text": text},
            created_at=active.escalated_at + timedelta(seconds=n * 30),
            in_history=history,
        )
    rt = CcaasEndpoint.objects.create(
        slug="rt", name="Request Tracker", kind="rt", config={"base_url": "https://rt.example.com"}
    )
    stuck = ConversationLink.objects.create(
        conversation_id="STUCK-1",
        endpoint=rt,
        interaction_id="99",
        state=State.ACTIVE,
        escalated_at=now - timedelta(hours=1),
    )
    row = Message.objects.create(
        link=stuck, direction="INBOUND", external_id="s-1", content={"text": "Hello?"}, created_at=now
    )
    Delivery.objects.create(
        link=stuck,
        message=row,
        kind=Delivery.Kind.MESSAGE,
        lane=Delivery.Lane.TO_CCAAS,
        attempts=6,
        failing_since=now - timedelta(minutes=40),
        last_error="endpoint rt (Request Tracker) answered 503: Service Unavailable",
    )
    return active, stuck


def _card_url(live_server, conversation_id: str) -> str:
    return f"{live_server.url}/api/context-card/?conversationId={conversation_id}&format=html"


def test_agent_sees_the_card_and_it_loads_nothing_else(live_server, page, shot, conversations):
    requests_made: list[str] = []
    page.on("request", lambda request: requests_made.append(request.url))
    page.set_extra_http_headers({"Authorization": f"Bearer {CARD_TOKEN}"})

    page.goto(_card_url(live_server, "ACTIVE-1"))

    assert page.inner_text("#summary") == "With Zendesk Support (agent Ana Li)."
    link = page.locator("a.deep-link")
    assert link.get_attribute("href") == "https://acme.zendesk.com/agent/tickets/4711"
    assert link.inner_text() == "4711"
    transcript = page.inner_text("#transcript")
    assert "Order 77 <b>urgent</b>" in transcript  # shown as text, not markup
    assert "I am on it, refund is on its way." in transcript
    assert requests_made == [_card_url(live_server, "ACTIVE-1")]
    shot(page, "context-card-active")

    page.goto(_card_url(live_server, "STUCK-1"))
    assert "STUCK" in page.inner_text(".handover.stuck")
    assert "503: Service Unavailable" in page.inner_text(".handover.stuck .error")
    shot(page, "context-card-stuck")

    page.goto(_card_url(live_server, "UNKNOWN-1"))
    assert page.inner_text("#summary") == "Never handed over to the external contact center."


def test_card_shows_inside_infobips_workspace_frame_and_nowhere_else(
    live_server, page, shot, conversations, settings
):
    src = f"{_card_url(live_server, 'ACTIVE-1')}&token={CARD_TOKEN}"
    workspace, elsewhere = _FramingSite(src), _FramingSite(src)
    try:
        settings.BRIDGE_CARD_ORIGINS = [workspace.origin]
        page.goto(f"{workspace.origin}/conversation")
        frame = page.frame_locator("#card")
        assert frame.locator("#summary").inner_text() == "With Zendesk Support (agent Ana Li)."
        shot(page, "context-card-in-workspace-frame")

        page.goto(f"{elsewhere.origin}/conversation")
        page.wait_for_load_state("load")
        card_frame = next(f for f in page.frames if f != page.main_frame)
        assert card_frame.query_selector("#summary") is None  # refused by frame-ancestors
    finally:
        workspace.close()
        elsewhere.close()
