"""Infobip's custom context card: GET/POST /api/context-card/ answers from the database only, for an
active, a closed, a stuck and an unknown conversation, with deep links per connector kind, its own
token, and never a credential."""

from __future__ import annotations

from datetime import timedelta

import pytest
import responses
from django.test import Client
from django.utils import timezone

from bridge.models import CcaasEndpoint, ConversationLink, Delivery, Message, State

pytestmark = pytest.mark.django_db

URL = "/api/context-card/"
CARD_TOKEN = "card-token-for-tests-0123456789abcdef"
CREDENTIAL = "CREDENTIAL-MUST-NEVER-SHOW-7f3a"

ENDPOINTS = {
    "zendesk": {"subdomain": "acme", "mode": "webhook"},
    "chatwoot": {"base_url": "https://chat.example.com/", "account_id": 7, "inbox_id": 3},
    "rt": {"base_url": "https://rt.example.com", "queue": "Support"},
    "genesys": {"region": "mypurecloud.de", "integration_id": "c6b0e62f-8487-44fd-a218-c16e006a7a23"},
    "generic": {
        "base_url": "https://ccaas.example.com/bridge",
        "interaction_url_template": "https://desk.example.com/cases/{interaction_id}?from={conversation_id}",
    },
}


@pytest.fixture(autouse=True)
def card_token(settings):
    settings.BRIDGE_CARD_TOKEN = CARD_TOKEN
    settings.BRIDGE_CARD_ORIGINS = ["https://portal.infobip.com"]
    settings.BRIDGE_STUCK_AFTER_SECONDS = 900


@pytest.fixture
def web():
    return Client(HTTP_AUTHORIZATION=f"Bearer {CARD_TOKEN}")


def endpoint(kind: str, **config) -> CcaasEndpoint:
    return CcaasEndpoint.objects.create(
        slug=f"{kind}-desk",
        name=f"{kind.title()} desk",
        kind=kind,
        config={**ENDPOINTS[kind], **config},
        credentials={"secret": CREDENTIAL, "api_token": CREDENTIAL, "client_secret": CREDENTIAL},
    )


def handover(ep, conversation_id="CONV-1", *, state=State.ACTIVE, interaction_id="1234", ago=60, **fields):
    now = timezone.now()
    link = ConversationLink.objects.create(
        conversation_id=conversation_id,
        endpoint=ep,
        interaction_id=interaction_id,
        state=state,
        channel="WHATSAPP",
        customer_address="447700900123",
        escalated_at=now - timedelta(seconds=ago),
        opened_at=None if state == State.REQUESTED else now - timedelta(seconds=ago - 5),
        **fields,
    )
    return link


def message(link, text, *, direction="INBOUND", author_type="CUSTOMER", author_name="", at=0, history=False):
    return Message.objects.create(
        link=link,
        source="infobip" if direction == "INBOUND" else "ccaas",
        direction=direction,
        external_id=f"m-{Message.objects.count() + 1}",
        author_type=author_type,
        author_name=author_name,
        content_type="TEXT",
        content={"text": text},
        created_at=link.escalated_at + timedelta(seconds=at),
        in_history=history,
    )


def card(web, conversation_id="CONV-1", **params):
    answer = web.get(URL, {"conversationId": conversation_id, **params})
    assert answer.status_code == 200, answer.content
    return answer


# --- the four situations ---------------------------------------------------------------------------
def test_active_conversation_shows_the_interaction_the_agent_and_the_last_messages(web):
    link = handover(endpoint("zendesk"), interaction_id="4711")
    message(link, "I want a refund", at=1, history=True)
    message(link, "Which order?", direction="OUTBOUND", author_type="BOT", at=2, history=True)
    message(link, "Order 77, please hurry", at=10)
    message(link, "Looking at it now", direction="OUTBOUND", author_type="AGENT", author_name="Ana", at=20)

    data = card(web, channel="WHATSAPP", customerNumber="447700900123", queueId="Q1").json()

    assert data["conversationId"] == "CONV-1"
    assert data["variables"] == {"channel": "WHATSAPP", "customerNumber": "447700900123", "queueId": "Q1"}
    assert data["handedOver"] is True and data["open"] is True
    assert data["summary"] == "With Zendesk desk (agent Ana)."
    (only,) = data["handovers"]
    assert only["state"] == "ACTIVE" and only["stuck"] is False and only["stuckReason"] is None
    assert only["endpoint"] == {"slug": "zendesk-desk", "name": "Zendesk desk", "kind": "zendesk"}
    assert only["interactionId"] == "4711"
    assert only["interactionUrl"] == "https://acme.zendesk.com/agent/tickets/4711"
    assert only["agentName"] == "Ana"
    assert (only["messagesFromCustomer"], only["messagesToCustomer"]) == (1, 1)
    assert [(m["author"], m["text"], m["beforeHandover"]) for m in data["transcript"]] == [
        ("Customer", "I want a refund", True),
        ("Bot", "Which order?", True),
        ("Customer", "Order 77, please hurry", False),
        ("Ana", "Looking at it now", False),
    ]


def test_closed_conversation_shows_how_it_ended_newest_handover_first(web):
    ep = endpoint("chatwoot")
    older = handover(ep, state=State.CLOSED, interaction_id="41", ago=7200)
    ConversationLink.objects.filter(pk=older.pk).update(
        closed_at=timezone.now() - timedelta(hours=1), close_reason="AGENT", closed_by="contact center"
    )
    newer = handover(ep, state=State.CLOSED, interaction_id="42", ago=600)
    ConversationLink.objects.filter(pk=newer.pk).update(
        closed_at=timezone.now() - timedelta(seconds=60),
        close_reason="IDLE_TIMEOUT",
        closed_by="idle timeout",
    )
    message(newer, "Thanks, bye", at=5)

    data = card(web).json()

    assert data["open"] is False and data["handoverCount"] == 2
    assert [h["interactionId"] for h in data["handovers"]] == ["42", "41"]
    newest = data["handovers"][0]
    assert newest["state"] == "CLOSED" and newest["closeReason"] == "IDLE_TIMEOUT"
    assert newest["closedAt"] is not None and newest["closedBy"] == "idle timeout"
    assert newest["interactionUrl"] == "https://chat.example.com/app/accounts/7/conversations/42"
    assert data["summary"] == "Handled in Chatwoot desk; closed (idle_timeout)."
    assert [m["text"] for m in data["transcript"]] == ["Thanks, bye"]


def test_stuck_conversation_says_why_in_operator_words(web):
    link = handover(endpoint("rt"), interaction_id="99", ago=3600)
    row = message(link, "Hello?", at=10)
    Delivery.objects.create(
        link=link,
        message=row,
        kind=Delivery.Kind.MESSAGE,
        lane=Delivery.Lane.TO_CCAAS,
        attempts=6,
        failing_since=timezone.now() - timedelta(minutes=30),
        last_error="endpoint rt-desk (Request Tracker) answered 503: Service Unavailable",
    )

    data = card(web).json()

    (only,) = data["handovers"]
    assert only["stuck"] is True
    assert only["stuckReason"] == (
        "message failing for 30 min (6 attempts): "
        "endpoint rt-desk (Request Tracker) answered 503: Service Unavailable"
    )
    assert only["lastError"] == "endpoint rt-desk (Request Tracker) answered 503: Service Unavailable"
    assert only["interactionUrl"] == "https://rt.example.com/Ticket/Display.html?id=99"
    assert data["summary"].startswith("With Rt desk. Stuck: message failing for 30 min")


def test_a_handover_never_opened_is_stuck_after_the_stuck_delay(web):
    handover(endpoint("generic"), state=State.REQUESTED, interaction_id="", ago=3600)
    (only,) = card(web).json()["handovers"]
    assert only["stuck"] is True
    assert only["stuckReason"] == "not opened in the contact center after more than 15 min"
    assert only["interactionId"] is None and only["interactionUrl"] is None


def test_unknown_conversation_answers_that_it_was_never_handed_over(web):
    data = card(web, "NEVER-SEEN").json()
    assert data["handedOver"] is False and data["open"] is False
    assert data["handovers"] == [] and data["transcript"] == []
    assert data["summary"] == "Never handed over to the external contact center."
    html = card(web, "NEVER-SEEN", format="html").content.decode()
    assert "Never handed over to the external contact center." in html


# --- deep links per connector kind -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "config", "interaction_id", "data", "expected"),
    [
        ("zendesk", {}, "4711", {}, "https://acme.zendesk.com/agent/tickets/4711"),
        ("zendesk", {"base_url": "https://help.acme.com/"}, "5", {}, "https://help.acme.com/agent/tickets/5"),
        ("chatwoot", {}, "42", {}, "https://chat.example.com/app/accounts/7/conversations/42"),
        ("rt", {}, "99", {}, "https://rt.example.com/Ticket/Display.html?id=99"),
        (
            "genesys",
            {},
            "handover-id",
            {"conversation_id": "5f0e-aa"},
            "https://apps.mypurecloud.de/directory/#/analytics/interactions/5f0e-aa/admin",
        ),
        ("genesys", {}, "handover-id", {}, None),  # Genesys has not told its conversation id yet
        ("generic", {}, "A B/1", {}, "https://desk.example.com/cases/A%20B%2F1?from=CONV-1"),
        ("generic", {"interaction_url_template": ""}, "7", {}, None),
        ("generic", {"interaction_url_template": "javascript:alert(1)//{interaction_id}"}, "7", {}, None),
        ("generic", {"interaction_url_template": "https://x.example/{secret}"}, "7", {}, None),
        (
            "rt",
            {"base_url": "https://root:pw@rt.example.com"},
            "3",
            {},
            "https://rt.example.com/Ticket/Display.html?id=3",
        ),
    ],
)
def test_deep_link_per_connector_kind(web, kind, config, interaction_id, data, expected):
    handover(endpoint(kind, **config), interaction_id=interaction_id, interaction_data=data)
    (only,) = card(web).json()["handovers"]
    assert only["interactionUrl"] == expected
    html = card(web, format="html").content.decode()
    if expected:
        assert f'href="{expected.replace("&", "&amp;")}"' in html
    else:
        assert "deep-link" not in html


# --- authorization ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong-token"},
        {"HTTP_AUTHORIZATION": "Bearer test-api-token"},  # the escalation API's token is not the card's
        {"HTTP_AUTHORIZATION": "Basic " + CARD_TOKEN},
    ],
)
def test_without_the_card_token_the_answer_is_401_and_shows_nothing(headers):
    link = handover(endpoint("zendesk"))
    for params in ({"conversationId": "CONV-1"}, {"conversationId": "CONV-1", "format": "html"}):
        answer = Client(**headers).get(URL, params)
        assert answer.status_code == 401
        assert answer.json() == {"error": "a valid card token is required (Authorization: Bearer <token>)"}
        assert link.interaction_id not in answer.content.decode()


def test_the_token_may_be_bare_or_in_the_url_for_embedded_pages():
    handover(endpoint("zendesk"))
    assert Client(HTTP_AUTHORIZATION=CARD_TOKEN).get(URL, {"conversationId": "CONV-1"}).status_code == 200
    answer = Client().get(URL, {"conversationId": "CONV-1", "format": "html", "token": CARD_TOKEN})
    assert answer.status_code == 200 and answer["Referrer-Policy"] == "no-referrer"


def test_card_is_off_without_its_token(settings):
    settings.BRIDGE_CARD_TOKEN = ""
    answer = Client(HTTP_AUTHORIZATION="Bearer ").get(URL, {"conversationId": "CONV-1"})
    assert answer.status_code == 404


def test_missing_conversation_id_is_400(web):
    answer = web.get(URL)
    assert answer.status_code == 400 and answer.json() == {"error": "conversationId is required"}


def test_post_with_a_json_body_or_a_form_answers_the_same(web):
    handover(endpoint("zendesk"), interaction_id="8")
    by_json = web.post(
        URL,
        {"conversation": {"conversationId": "CONV-1", "priority": "HIGH"}},
        content_type="application/json",
    )
    by_form = web.post(URL, {"conversationId": "CONV-1", "priority": "HIGH"})
    by_query = web.post(f"{URL}?conversationId=CONV-1&priority=HIGH")
    for answer in (by_json, by_form, by_query):
        assert answer.status_code == 200
        assert answer.json()["variables"] == {"priority": "HIGH"}
        assert answer.json()["handovers"][0]["interactionId"] == "8"


# --- never a credential, never a call, safe HTML ---------------------------------------------------
@responses.activate(assert_all_requests_are_fired=False)
def test_card_never_shows_a_credential_and_makes_no_outbound_call(web, django_assert_max_num_queries):
    for kind in ENDPOINTS:
        ep = endpoint(kind)
        link = handover(ep, f"CONV-{kind}", interaction_id="12", interaction_data={"conversation_id": "g-1"})
        message(link, "hi", at=1)
    for kind in ENDPOINTS:
        with django_assert_max_num_queries(12):
            body = card(web, f"CONV-{kind}").content.decode()
        html = card(web, f"CONV-{kind}", format="html").content.decode()
        for text in (body, html):
            assert CREDENTIAL not in text
            assert "test-api-token" not in text and CARD_TOKEN not in text
    assert len(responses.calls) == 0


def test_html_is_escaped_self_contained_and_frameable_only_by_infobip(web, settings):
    settings.BRIDGE_CARD_ORIGINS = ["https://portal.infobip.com", "https://eu.portal.infobip.com"]
    link = handover(endpoint("zendesk"))
    message(link, '<script>alert("x")</script><img src=x onerror=alert(1)>', at=1)
    message(link, "ok", direction="OUTBOUND", author_type="AGENT", author_name="<b>Eve</b>", at=2)

    answer = card(web, format="html")

    html = answer.content.decode()
    assert answer["Content-Type"] == "text/html; charset=utf-8"
    assert "<script" not in html and "<img" not in html and "<b>Eve" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html and "&lt;b&gt;Eve&lt;/b&gt;" in html
    csp = answer["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert csp.endswith("frame-ancestors https://portal.infobip.com https://eu.portal.infobip.com")
    assert not answer.has_header("X-Frame-Options")
    for external in ("http://", "https://", "//"):
        assert f'src="{external}' not in html and f"url({external}" not in html
    assert 'rel="stylesheet"' not in html


def test_browser_callers_from_infobip_get_cors_headers_others_do_not(web):
    handover(endpoint("zendesk"))
    preflight = Client().options(URL, HTTP_ORIGIN="https://portal.infobip.com")
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "https://portal.infobip.com"
    assert "Authorization" in preflight["Access-Control-Allow-Headers"]
    other = web.get(URL, {"conversationId": "CONV-1"}, HTTP_ORIGIN="https://evil.example")
    assert other.status_code == 200 and not other.has_header("Access-Control-Allow-Origin")
