"""External-bot mode end to end: the fake Infobip forwards a bot number's customer messages to the
bridge's bot webhook (as Infobip documents for external chatbots), the bridge opens a handover with
the history, carries messages both ways (replies with the bot's x-agent-id) and releases the
conversation on the agent's close per the endpoint's policy. Every request the bridge made to the
fake is checked against Infobip's Conversations spec."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client

from bridge import bots, delivery
from bridge.models import CcaasEndpoint, ConversationLink, InboundEvent, InfobipBot, Message, State
from bridge.signing import sign
from tests.conftest import GENERIC_SECRET
from tests.openapi import validate_request

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = "infobip-conversations-openapi.json"
NUMBER = "447860011111"
CUSTOMER = "447700900555"


@pytest.fixture
def endpoint(fake_ccaas):
    return CcaasEndpoint.objects.create(
        slug="acme",
        kind="generic",
        config={"base_url": fake_ccaas.base_url, "mode": "webhook"},
        credentials={"secret": GENERIC_SECRET},
    )


@pytest.fixture
def bot(settings, live_server, fake_infobip, endpoint):
    settings.BRIDGE_PUBLIC_URL = live_server.url
    settings.INFOBIP_AGENT_ID = "AGENT-NOT-FOR-BOTS"  # must not be used in external-bot mode
    row, outcome = bots.register(
        bots.BotSpec(display_name="Acme support", channel="WHATSAPP", destination=NUMBER, endpoint=endpoint)
    )
    assert outcome == "created"
    return row


def post_ccaas(events):
    body = json.dumps({"events": events}).encode()
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign(GENERIC_SECRET, body).items()}
    answer = Client().post("/webhooks/ccaas/acme/", data=body, content_type="application/json", **headers)
    assert answer.status_code == 200, answer.content


def writes(fake_infobip, text):
    item, answer = fake_infobip.customer_writes_to(NUMBER, text, customer=CUSTOMER)
    return item, answer


def assert_all_requests_follow_the_spec(fake_infobip):
    for call in fake_infobip.requests:
        validate_request(
            SPEC, call.method, call.path, query=call.query, body=call.json if call.body else None
        )


def test_a_bot_conversation_crosses_both_ways_once_in_order_and_routes_back_on_close(
    settings, fake_infobip, fake_ccaas, endpoint, bot
):
    endpoint.config = {**endpoint.config, "bot_on_close": "route"}
    endpoint.save()

    # The first message opens a handover on the bot's endpoint, with the history.
    item, answer = writes(fake_infobip, "Hello, I need help with my bill")
    assert answer.status_code == 200 and answer.json()["stored"] == 1
    conv = item["conversationId"]
    assert fake_infobip.conversations[conv]["agentId"] == bot.bot_id
    link = ConversationLink.objects.get(conversation_id=conv)
    assert (link.state, link.bot_id, link.endpoint_id) == (State.REQUESTED, bot.pk, endpoint.pk)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {settings.BRIDGE_API_TOKEN}")
    assert api.get(f"/api/handovers/{link.pk}/").json()["bot"] == bot.bot_id
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.ACTIVE
    interaction = fake_ccaas.interactions[link.interaction_id]
    assert [m["content"]["text"] for m in interaction["open"]["history"]] == [
        "Hello, I need help with my bill"
    ]
    assert interaction["open"]["customer"]["address"] == CUSTOMER
    assert fake_infobip.calls("PUT", rf"/ccaas/1/conversations/{conv}/assignee") == []  # stays the bot's

    # Three customer messages, one of them forwarded twice, reach the interaction once each, in order.
    for text in ("one", "two", "three"):
        item, answer = writes(fake_infobip, text)
        assert answer.status_code == 200
    again = Client().post(
        f"/webhooks/infobip-bot/{bot.webhook_token}/",
        item,
        content_type="application/json",
        HTTP_X_BRIDGE_BOT_SECRET=bot.secret,
    )
    assert again.json()["duplicates"] == 1
    delivery.drain()
    assert [m["content"]["text"] for m in interaction["messages"]] == ["one", "two", "three"]

    # Three agent replies reach the customer once each, in order, as the bot.
    events = [fake_ccaas.agent_says(link.interaction_id, t) for t in ("Hi!", "Looking at it", "Done")]
    post_ccaas(events)
    post_ccaas(events)  # redelivered
    delivery.drain()
    sent = fake_infobip.sent_to_customer(conv)
    assert [m["content"]["text"] for m in sent] == ["Hi!", "Looking at it", "Done"]
    assert {(m["from"], m["to"]) for m in sent} == {(NUMBER, CUSTOMER)}
    creates = fake_infobip.calls("POST", rf"/ccaas/1/conversations/{conv}/messages")
    assert [c.headers.get("x-agent-id") for c in creates] == [bot.bot_id] * 3

    # The agent closes: the conversation goes to Infobip's routing, and the bot no longer gets it.
    post_ccaas([fake_ccaas.agent_closes(link.interaction_id)])
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.CLOSED and link.close_reason == "AGENT"
    assert fake_infobip.conversations[conv]["routed"] is True
    assert fake_infobip.conversations[conv]["agentId"] is None
    assert fake_infobip.conversations[conv]["status"] == "OPEN"
    assert len(fake_infobip.calls("POST", rf"/ccaas/1/conversations/{conv}/route")) == 1
    _, answer = writes(fake_infobip, "thanks!")
    assert answer is None  # Infobip's agents have it now
    assert ConversationLink.objects.filter(conversation_id=conv).count() == 1
    bot.refresh_from_db()
    assert bot.last_message_at is not None

    # Infobip's agents, who have it now, see in the context card what happened and through which bot.
    settings.BRIDGE_CARD_TOKEN = "card-token-for-bot-tests-0123456789abc"
    card = Client(HTTP_AUTHORIZATION=f"Bearer {settings.BRIDGE_CARD_TOKEN}").get(
        "/api/context-card/", {"conversationId": conv}
    )
    (handover,) = card.json()["handovers"]
    assert handover["bot"] == {"id": bot.bot_id, "name": "Acme support"}
    assert (handover["messagesFromCustomer"], handover["messagesToCustomer"]) == (3, 3)
    assert bot.secret not in card.content.decode()

    assert_all_requests_follow_the_spec(fake_infobip)


def test_default_policy_closes_the_conversation_and_the_next_message_opens_a_new_handover(
    fake_infobip, fake_ccaas, bot
):
    item, _ = writes(fake_infobip, "hi")
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=item["conversationId"])
    post_ccaas([fake_ccaas.agent_closes(link.interaction_id)])
    delivery.drain()
    assert fake_infobip.conversations[link.conversation_id]["status"] == "CLOSED"
    item2, answer = writes(fake_infobip, "me again")
    assert answer.status_code == 200 and item2["conversationId"] != link.conversation_id
    assert ConversationLink.objects.get(conversation_id=item2["conversationId"]).state == State.REQUESTED
    assert_all_requests_follow_the_spec(fake_infobip)


@pytest.mark.parametrize(
    ("policy", "target", "expected"),
    [
        ("assign", "AGENT-7", {"agentId": "AGENT-7"}),
        ("queue", "QUEUE-3", {"queueId": "QUEUE-3", "agentId": None}),
    ],
)
def test_close_can_hand_the_conversation_to_an_infobip_agent_or_queue(
    fake_infobip, fake_ccaas, endpoint, bot, policy, target, expected
):
    endpoint.config = {**endpoint.config, "bot_on_close": policy, "bot_on_close_target": target}
    endpoint.save()
    item, _ = writes(fake_infobip, "hi")
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=item["conversationId"])
    post_ccaas([fake_ccaas.agent_closes(link.interaction_id)])
    delivery.drain()
    conv = fake_infobip.conversations[link.conversation_id]
    assert {k: conv[k] for k in expected} == expected and conv["status"] == "OPEN"
    link.refresh_from_db()
    assert link.state == State.CLOSED
    assert_all_requests_follow_the_spec(fake_infobip)


@pytest.mark.parametrize(("header", "status"), [(None, 401), ("wrong-secret-value", 403)])
def test_a_wrong_secret_header_is_refused_and_nothing_is_stored(fake_infobip, bot, header, status):
    conv = fake_infobip.add_conversation(sender=NUMBER)
    body = fake_infobip.message(conv, "let me in")
    extra = {"HTTP_X_BRIDGE_BOT_SECRET": header} if header else {}
    answer = Client().post(
        f"/webhooks/infobip-bot/{bot.webhook_token}/", body, content_type="application/json", **extra
    )
    assert answer.status_code == status
    assert bot.secret not in answer.content.decode()
    assert not ConversationLink.objects.exists() and not Message.objects.exists()
    assert not InboundEvent.objects.exists()
    unknown = Client().post(
        "/webhooks/infobip-bot/not-a-token/",
        body,
        content_type="application/json",
        HTTP_X_BRIDGE_BOT_SECRET=bot.secret,
    )
    assert unknown.status_code == 404 and not ConversationLink.objects.exists()


def test_routing_rules_choose_the_endpoint_of_a_bot_without_one(
    settings, live_server, fake_infobip, fake_ccaas
):
    settings.BRIDGE_PUBLIC_URL = live_server.url
    CcaasEndpoint.objects.create(
        slug="billing",
        kind="generic",
        config={"base_url": fake_ccaas.base_url, "mode": "webhook"},
        credentials={"secret": GENERIC_SECRET},
        routing_rules=[{"tags_any": ["billing"]}],
    )
    bot, _ = bots.register(bots.BotSpec(display_name="Routed", channel="WHATSAPP", destination=NUMBER))
    conv = fake_infobip.add_conversation(customer=CUSTOMER, sender=NUMBER, tags=["billing"])
    fake_infobip.conversations[conv]["agentId"] = bot.bot_id
    item, answer = writes(fake_infobip, "invoice question")
    assert item["conversationId"] == conv and answer.status_code == 200
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    assert link.state == State.ACTIVE and link.endpoint.slug == "billing" and link.bot_id == bot.pk


# --- bridge_bot ---------------------------------------------------------------------------------------
def run(*args, stdin: str | None = None) -> str:
    out = io.StringIO()
    if stdin is not None:
        import sys

        old, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            call_command("bridge_bot", *args, stdout=out)
        finally:
            sys.stdin = old
    else:
        call_command("bridge_bot", *args, stdout=out)
    return out.getvalue()


def test_register_is_idempotent_and_the_secret_never_goes_on_the_command_line(
    settings, live_server, fake_infobip, endpoint, monkeypatch
):
    settings.BRIDGE_PUBLIC_URL = live_server.url
    monkeypatch.setenv("ACME_BOT_SECRET", "s3cret-value-from-the-environment-0123")
    args = (
        "register",
        "--name",
        "Acme",
        "--channel",
        "WHATSAPP",
        "--destination",
        NUMBER,
        "--endpoint",
        "acme",
    )

    first = run(*args, "--secret-env", "ACME_BOT_SECRET")
    assert first.startswith("created: bot ")
    (remote,) = fake_infobip.bots.values()
    row = InfobipBot.objects.get()
    assert remote["webhookUrl"] == f"{live_server.url}/webhooks/infobip-bot/{row.webhook_token}/"
    assert remote["webhookHeaders"] == {"X-Bridge-Bot-Secret": "s3cret-value-from-the-environment-0123"}
    assert (remote["destination"], remote["channel"], remote["enabled"]) == (NUMBER, "WHATSAPP", True)
    assert "s3cret" not in first

    writes_before = [c for c in fake_infobip.requests if c.method in ("POST", "PUT", "DELETE")]
    second = run(*args, "--secret-env", "ACME_BOT_SECRET")
    third = run(*args)  # no secret given: the stored one is kept
    assert second.startswith("unchanged: ") and third.startswith("unchanged: ")
    assert [c for c in fake_infobip.requests if c.method in ("POST", "PUT", "DELETE")] == writes_before
    assert len(fake_infobip.bots) == 1 and InfobipBot.objects.count() == 1

    changed = run(
        *args[:2], "Acme Support", *args[3:], "--secret-stdin", stdin="another-secret-from-stdin-456789\n"
    )
    puts = [c for c in fake_infobip.requests if c.method == "PUT"]
    assert changed.startswith("updated: ") and len(puts) == 1
    assert fake_infobip.bots[row.bot_id]["displayName"] == "Acme Support"
    assert (
        fake_infobip.bots[row.bot_id]["webhookHeaders"]["X-Bridge-Bot-Secret"]
        == "another-secret-from-stdin-456789"
    )

    listing = run("list")
    assert row.bot_id in listing and "endpoint=acme" in listing and "enabled" in listing
    assert "another-secret" not in listing and "s3cret" not in listing

    for call in fake_infobip.requests:
        validate_request(
            SPEC, call.method, call.path, query=call.query, body=call.json if call.body else None
        )


def test_register_adopts_a_bot_made_in_infobips_web_interface(settings, live_server, fake_infobip):
    settings.BRIDGE_PUBLIC_URL = live_server.url
    existing = {"displayName": "Made by hand", "destination": NUMBER, "channel": "WHATSAPP", "webhookUrl": ""}
    bot_id = fake_infobip._create_bot(type("R", (), {"json": existing})())[1]["id"]
    out = run("register", "--name", "Acme", "--channel", "WHATSAPP", "--destination", NUMBER)
    assert out.startswith(f"adopted: bot {bot_id} ")
    assert len(fake_infobip.bots) == 1 and fake_infobip.bots[bot_id]["webhookUrl"].startswith(live_server.url)


def test_a_bot_disabled_on_infobip_is_noticed_and_its_handovers_end_visibly(fake_infobip, fake_ccaas, bot):
    item, _ = writes(fake_infobip, "hi")
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=item["conversationId"])
    assert link.state == State.ACTIVE
    fake_infobip.bots[bot.bot_id]["enabled"] = False  # switched off in Infobip's web interface

    out = run("check")

    assert "disabled: the bot is disabled on Infobip; 1 open handovers closed" in out
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.CLOSED
    assert fake_ccaas.interactions[link.interaction_id]["closed"]
    assert link.timeline.filter(kind="bot_gone").exists()
    bot.refresh_from_db()
    assert bot.enabled is False and bot.last_error == "the bot is disabled on Infobip"
    # Infobip re-routes the conversation on the customer's next message; the bridge is not asked.
    _, answer = writes(fake_infobip, "hello?")
    assert answer is None and fake_infobip.conversations[link.conversation_id]["routed"] is True


def test_remove_deletes_the_bot_on_infobip(fake_infobip, bot):
    out = run("remove", NUMBER)
    assert out.startswith(f"removed bot {bot.bot_id}")
    assert fake_infobip.bots == {} and not InfobipBot.objects.exists()


def test_console_lists_bots_and_shows_which_bot_a_handover_came_through(fake_infobip, fake_ccaas, bot):
    from django.contrib.auth.models import User

    item, _ = writes(fake_infobip, "hi")
    link = ConversationLink.objects.get(conversation_id=item["conversationId"])
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))

    listing = admin.get("/admin/bridge/infobipbot/").content.decode()
    for text in ("Acme support", NUMBER, "WHATSAPP", "acme", f'?bot__id__exact={bot.pk}">1<'):
        assert text in listing
    assert bot.secret not in listing
    page = admin.get(f"/admin/bridge/infobipbot/{bot.pk}/change/").content.decode()
    assert bot.webhook_url() in page and bot.secret not in page
    handover = admin.get(f"/admin/bridge/conversationlink/{link.pk}/change/").content.decode()
    assert 'id="handover-bot">Acme support</strong>' in handover
    filtered = admin.get(f"/admin/bridge/conversationlink/?bot__id__exact={bot.pk}").content.decode()
    assert link.conversation_id[:20] in filtered


def test_a_bot_conversation_the_contact_center_refuses_goes_to_infobips_agents(fake_infobip, fake_ccaas, bot):
    fake_ccaas.fail("POST", r"/bridge/interactions", count=1, status=422)
    item, _ = writes(fake_infobip, "hi")
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=item["conversationId"])
    assert link.state == State.FAILED
    conv = fake_infobip.conversations[link.conversation_id]
    assert conv["routed"] is True and conv["agentId"] is None  # no longer the bot's
    _, answer = writes(fake_infobip, "hello?")
    assert (
        answer is None and ConversationLink.objects.filter(conversation_id=link.conversation_id).count() == 1
    )
    assert_all_requests_follow_the_spec(fake_infobip)


def test_routing_rules_can_choose_by_the_number_and_channel_a_bot_conversation_came_to(
    settings, live_server, fake_infobip, fake_ccaas
):
    settings.BRIDGE_PUBLIC_URL = live_server.url
    for slug, rule in (
        ("viber-desk", {"channels": ["VIBER"]}),
        ("uk-desk", {"destinations": [NUMBER], "channels": ["whatsapp"]}),
    ):
        CcaasEndpoint.objects.create(
            slug=slug,
            kind="generic",
            config={"base_url": fake_ccaas.base_url, "mode": "webhook"},
            credentials={"secret": GENERIC_SECRET},
            routing_rules=[rule],
        )
    bots.register(bots.BotSpec(display_name="UK", channel="WHATSAPP", destination=NUMBER))
    item, answer = writes(fake_infobip, "hello")
    assert answer.status_code == 200
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=item["conversationId"])
    assert link.state == State.ACTIVE and link.endpoint.slug == "uk-desk"


def test_the_ticker_notices_a_bot_deleted_on_infobip_once(fake_infobip, fake_ccaas, bot):
    from bridge import periodic

    item, _ = writes(fake_infobip, "hi")
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=item["conversationId"])
    del fake_infobip.bots[bot.bot_id]  # deleted in Infobip's web interface
    listed = len(fake_infobip.calls("GET", r"/ccaas/1/bots"))

    periodic.tick(inline=True)

    link.refresh_from_db()
    bot.refresh_from_db()
    assert link.state == State.CLOSED and fake_ccaas.interactions[link.interaction_id]["closed"]
    assert (bot.enabled, bot.last_error) == (False, "the bot no longer exists on Infobip")
    assert len(fake_infobip.calls("GET", r"/ccaas/1/bots")) == listed + 1
    periodic.tick(inline=True)  # within BRIDGE_BOT_CHECK_SECONDS: not asked again
    assert len(fake_infobip.calls("GET", r"/ccaas/1/bots")) == listed + 1
    assert bots.check(bot).endswith("(already noticed)")


def test_the_bot_secret_is_read_from_a_file_and_never_accepted_as_an_argument(
    settings, live_server, fake_infobip, tmp_path
):
    from django.core.management.base import CommandError

    settings.BRIDGE_PUBLIC_URL = live_server.url
    base = ("register", "--name", "Acme", "--channel", "WHATSAPP", "--destination", NUMBER)
    with pytest.raises(CommandError):
        run(*base, "--secret", "on-the-command-line-0123456789")
    short = tmp_path / "short"
    short.write_text("too-short\n")
    with pytest.raises(CommandError, match="at least 24 characters"):
        run(*base, "--secret-file", str(short))
    good = tmp_path / "secret"
    good.write_text("a-secret-from-a-file-0123456789\n")
    assert run(*base, "--secret-file", str(good)).startswith("created: ")
    (remote,) = fake_infobip.bots.values()
    assert remote["webhookHeaders"] == {"X-Bridge-Bot-Secret": "a-secret-from-a-file-0123456789"}
    assert InfobipBot.objects.get().secret == "a-secret-from-a-file-0123456789"
