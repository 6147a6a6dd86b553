"""No text is ever cut: a message longer than its target takes is sent in parts, each within the
target's limit counted in the target's unit, in order, each part once even across retries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge import delivery, media
from bridge.connectors import connector_class, get_connector
from bridge.connectors import genesys as genesys_module
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, HandoverEvent, State
from bridge.types import Direction, InfobipMessage
from tests.genesys_fake import CLIENT_ID, CLIENT_SECRET, INTEGRATION_ID, WEBHOOK_SECRET, FakeGenesys

pytestmark = pytest.mark.django_db


def long_text(length: int, ending: str = "LAST-WORDS") -> str:
    words = []
    while sum(len(w) + 1 for w in words) < length:
        words.append(f"word{len(words):04d}")
    text = " ".join(words)
    return text[: length - len(ending) - 1].rstrip() + " " + ending


@pytest.fixture
def genesys():
    genesys_module.TOKENS.clear()
    genesys_module.RATE.clear()
    server = FakeGenesys().start()
    yield server
    server.stop()
    genesys_module.TOKENS.clear()


def genesys_endpoint(server, **config) -> CcaasEndpoint:
    return CcaasEndpoint.objects.create(
        slug="gc",
        kind="genesys",
        config={
            "base_url": server.url,
            "login_url": server.url,
            "integration_id": INTEGRATION_ID,
            "mode": "webhook",
            **config,
        },
        credentials={
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "webhook_secret": WEBHOOK_SECRET,
        },
        is_default=True,
    )


def escalate(api, fake_infobip) -> ConversationLink:
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "I want a human", created_at="2026-01-01T10:00:00.000+00:00")
    assert api.post("/api/escalations/", {"conversationId": conv}, format="json").status_code == 202
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    assert link.state == State.ACTIVE
    return link


# --- the input: 4,091 characters to Genesys (4,000 a message) -----------------------------
def test_a_long_customer_message_reaches_a_genesys_agent_whole_in_parts(
    genesys, fake_infobip, api, client, inbound_url
):
    genesys_endpoint(genesys)
    link = escalate(api, fake_infobip)
    text = long_text(4091)
    assert len(text) == 4091 and text.endswith("LAST-WORDS")
    body = fake_infobip.message(link.conversation_id, text)
    assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    delivery.drain()
    parts = genesys.inbound_texts(link.interaction_id)[1:]  # after the transcript
    assert len(parts) == 2 and all(len(p) <= 4000 for p in parts)
    assert " ".join(parts) == text and parts[-1].endswith("LAST-WORDS")
    row = Delivery.objects.get(link=link, message__external_id=body["id"])
    assert row.state == Delivery.Status.DONE and row.payload == {"parts_sent": 2, "parts": 2}
    assert HandoverEvent.objects.filter(link=link, kind="split", text__contains="2 parts").exists()
    sent_ids = [
        m["body"]["channel"]["messageId"]
        for m in genesys.conversation_of(link.interaction_id)["messages"][1:]
    ]
    assert sent_ids == [body["id"], f"{body['id']}:2"]


def test_each_part_is_sent_once_across_retries(genesys, fake_infobip, api, client, inbound_url, fast_retries):
    genesys_endpoint(genesys)
    link = escalate(api, fake_infobip)
    text = long_text(9000)
    body = fake_infobip.message(link.conversation_id, text)
    client.post(inbound_url, body, content_type="application/json")
    # the second part fails once with a 503, then goes through
    inbound = rf"/api/v2/conversations/messages/{INTEGRATION_ID}/inbound/open/message"
    real = genesys._inbound
    calls = {"n": 0}

    def flaky(req, integration_id):
        calls["n"] += 1
        if calls["n"] == 2:
            return 503, {"status": 503, "code": "service.unavailable", "message": "try later"}
        return real(req, integration_id)

    genesys.route("POST", r"/api/v2/conversations/messages/([^/]+)/inbound/open/message", flaky)
    genesys.routes.insert(0, genesys.routes.pop())  # ahead of the fake's own route
    for _ in range(30):
        delivery.drain()
        row = Delivery.objects.get(link=link, message__external_id=body["id"])
        if row.state == Delivery.Status.DONE:
            break
    assert row.state == Delivery.Status.DONE and row.attempts == 2
    parts = genesys.inbound_texts(link.interaction_id)[1:]
    assert len(parts) == 3 and " ".join(parts) == text
    assert len(genesys.calls("POST", inbound)) >= 4  # transcript, three parts, one failed attempt


def test_parts_are_counted_in_the_targets_unit():
    emoji = "😀" * 3000  # 3,000 characters, 6,000 UTF-16 code units, 12,000 UTF-8 bytes
    message = InfobipMessage(
        "ib-e", "c", "WHATSAPP", "1", "2", Direction.INBOUND, "TEXT", {"text": emoji}, datetime.now(UTC)
    )
    assert len(media.split_for_limit(message, 4000, "characters")) == 1
    utf16 = media.split_for_limit(message, 4000, "utf16")
    assert [media.measure(p.content["text"], "utf16") for p in utf16] == [4000, 2000]
    as_bytes = media.split_for_limit(message, 5000, "bytes")
    assert all(media.measure(p.content["text"], "bytes") <= 5000 for p in as_bytes)
    assert "".join(p.content["text"] for p in as_bytes) == emoji  # no character cut in two


@pytest.mark.parametrize(
    ("kind", "limit", "unit"),
    [
        ("genesys", 4000, "utf16"),
        ("zendesk", 64000, "bytes"),
        ("chatwoot", 150000, "characters"),
        ("rt", 0, "characters"),
        ("generic", 0, "characters"),
    ],
)
def test_every_connector_declares_its_limit_and_unit(kind, limit, unit):
    capabilities = connector_class(kind).capabilities
    assert (capabilities.text_limit, capabilities.text_unit) == (limit, unit)


def test_a_zendesk_comment_over_its_size_is_split_in_bytes():
    text = "é" * 40000  # 40,000 characters, 80,000 bytes
    message = InfobipMessage(
        "ib-z", "c", "WHATSAPP", "1", "2", Direction.INBOUND, "TEXT", {"text": text}, datetime.now(UTC)
    )
    parts = media.split_for_limit(message, 64000, "bytes")
    assert [p.id for p in parts] == ["ib-z", "ib-z:2"]
    assert all(len(p.content["text"].encode()) <= 64000 for p in parts)
    assert "".join(p.content["text"] for p in parts) == text


def test_a_configured_limit_splits_generic_messages_with_their_own_idempotency_keys(
    fake_infobip, fake_ccaas, api, client, inbound_url, generic_endpoint
):
    generic_endpoint.config = {**generic_endpoint.config, "max_text_length": 1000}
    generic_endpoint.save()
    link = escalate(api, fake_infobip)
    text = long_text(2500)
    body = fake_infobip.message(link.conversation_id, text)
    client.post(inbound_url, body, content_type="application/json")
    delivery.drain()
    sent = fake_ccaas.calls("POST", rf"/bridge/interactions/{link.interaction_id}/messages")
    assert [c.headers["Idempotency-Key"] for c in sent] == [body["id"], f"{body['id']}:2", f"{body['id']}:3"]
    assert " ".join(c.json["content"]["text"] for c in sent) == text


def test_genesys_history_messages_are_split_not_cut(genesys):
    from tests.test_genesys import context

    endpoint = genesys_endpoint(genesys, history="messages")
    long = long_text(5000)
    history = [
        InfobipMessage(
            "ib-1",
            "conv-1",
            "WHATSAPP",
            "1",
            "2",
            Direction.INBOUND,
            "TEXT",
            {"text": long},
            datetime(2026, 1, 1, tzinfo=UTC),
        )
    ]
    result = get_connector(endpoint).open_interaction(context("h-long", history=history))
    texts = genesys.inbound_texts(result.interaction_id)
    assert len(texts) == 2 and " ".join(texts) == long


# --- the other direction: agent text and captions to Infobip ---------------------------------------
def test_an_overlong_caption_follows_its_image_as_text():
    caption = long_text(5000, ending="END-OF-CAPTION")
    parts = media.outbound_parts("IMAGE", {"url": "https://m.example.com/a.png", "caption": caption})
    assert parts[0] == ("IMAGE", {"url": "https://m.example.com/a.png"})
    texts = [content["text"] for kind, content in parts[1:]]
    assert all(len(t) <= 4096 for t in texts) and " ".join(texts) == caption
    attachment = media.outbound_parts(
        "TEXT", {"text": "see", "attachments": [{"url": "https://m.example.com/b.pdf", "caption": caption}]}
    )
    assert [k for k, _ in attachment] == ["TEXT", "DOCUMENT", "TEXT", "TEXT"]
