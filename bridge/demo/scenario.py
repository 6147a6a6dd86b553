"""The demo's handover, played against the fakes in bridge.demo.fakes and this process's own web app.

Runs inside the sandbox bridge.demo.sandbox prepares (a temporary database and queue nobody else
reads), so no running bridge can take its work and nothing is left in the operator's database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

from bridge import delivery
from bridge.demo.fakes import FakeGenericCcaas, FakeInfobip
from bridge.infobip.client import InfobipClient
from bridge.models import CcaasEndpoint, ConversationLink, HandoverEvent, Message, State

DEMO_SLUG = "demo"
DEMO_SECRET = "demo-shared-secret"  # shared only between the demo's own fake and its bridge


class DemoFailed(Exception):
    """The handover did not reach the expected step; the message says which."""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request, client_address) -> None:
        thread = threading.Thread(target=self._serve, args=(request, client_address), daemon=True)
        thread.start()

    def _serve(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


def play(write: Callable[[str], None]) -> str:
    """Play one whole handover and write its timeline line by line; return the summary line.

    Raises DemoFailed when a step does not happen (the timeline up to there is already written).
    """
    logging.getLogger("django-q").setLevel(logging.WARNING)  # the timeline is the output here
    started = time.monotonic()
    infobip = FakeInfobip().start()
    bridge = make_server(
        "127.0.0.1", 0, WSGIHandler(), server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    threading.Thread(target=bridge.serve_forever, daemon=True).start()
    bridge_url = f"http://127.0.0.1:{bridge.server_port}"
    ccaas = FakeGenericCcaas(DEMO_SECRET, webhook_url=f"{bridge_url}/webhooks/ccaas/{DEMO_SLUG}/").start()
    settings.INFOBIP_BASE_URL, settings.INFOBIP_API_KEY = infobip.url, "demo-api-key"
    try:
        return _Timeline(write, started).run(infobip, ccaas, bridge_url)
    finally:
        ccaas.stop()
        infobip.stop()
        bridge.shutdown()


class _Timeline:
    def __init__(self, write: Callable[[str], None], started: float) -> None:
        self.write = write
        self.t0 = started

    def say(self, who: str, text: str) -> None:
        self.write(f"  {time.monotonic() - self.t0:6.2f}s  {who:<14} {text}")

    def run(self, infobip: FakeInfobip, ccaas: FakeGenericCcaas, bridge_url: str) -> str:
        CcaasEndpoint.objects.create(
            slug=DEMO_SLUG,
            kind="generic",
            name="Simulated contact center (bridge_demo)",
            config={"base_url": ccaas.base_url, "mode": "webhook"},
            credentials={"secret": DEMO_SECRET},
        )
        self.write(
            f"Simulated Infobip at {infobip.url}, contact center at {ccaas.base_url}, bridge at {bridge_url}"
        )
        self.write("Timeline:")
        InfobipClient().update_account_configuration(
            f"{bridge_url}/webhooks/infobip/{settings.BRIDGE_INBOUND_TOKEN}/"
        )
        self.say("bridge", "subscribed to Infobip's inbound messages (Update Account Configuration)")

        conv = infobip.add_conversation(tags=["demo", "billing"], metadata={"customerTier": "gold"})
        infobip.message(conv, "Hi! My invoice looks wrong.")
        infobip.message(
            conv, "I can help with invoices. What is the number?", direction="OUTBOUND", author="BOT"
        )
        infobip.message(conv, "I want to talk to a person, please.")
        self.say("customer", f"chats with the bot in conversation {conv} (3 messages)")

        answer = requests.post(
            f"{bridge_url}/api/escalations/",
            json={
                "conversationId": conv,
                "endpoint": DEMO_SLUG,
                "priority": "HIGH",
                "context": {"displayName": "Ana"},
            },
            headers={"Authorization": f"Bearer {settings.BRIDGE_API_TOKEN}"},
            timeout=10,
        )
        if answer.status_code != 202:
            raise DemoFailed(f"escalation answered {answer.status_code}: {answer.text}")
        link = ConversationLink.objects.get(pk=answer.json()["id"])
        self.say("chatbot", f"API element escalates; To Agent ends the bot session -> handover {link.pk}")

        delivery.drain()
        link.refresh_from_db()
        if link.state != State.ACTIVE:
            raise DemoFailed(f"the interaction did not open: {link.state} {link.last_error}")
        history = ccaas.interactions[link.interaction_id]["open"]["history"]
        self.say(
            "contact center",
            f"interaction {link.interaction_id} opened with {len(history)} messages of history",
        )

        ccaas.agent_accepts(link.interaction_id)
        self.say("agent", "accepts the interaction")
        for text in ("It's invoice 2024-117.", "It charges me twice.", "Can you fix it?"):
            infobip.customer_says(conv, text)
            self.say("customer", text)
        delivery.drain()
        for item in ccaas.interactions[link.interaction_id]["messages"]:
            self.say("contact center", f"received: {item['content']['text']}")

        for text in (
            "Hello Ana, I'm Alice.",
            "I see the double charge.",
            "I have refunded it. Anything else?",
        ):
            ccaas.agent_says(link.interaction_id, text)
            self.say("agent", text)
        delivery.drain()
        for item in infobip.sent_to_customer(conv):
            self.say("customer", f"received on {item['channel']}: {item['content']['text']}")

        ccaas.agent_closes(link.interaction_id)
        self.say("agent", "closes the interaction")
        delivery.drain()
        link.refresh_from_db()
        self.say("Infobip", f"conversation status: {infobip.conversations[conv]['status']}")

        self.write("Handover timeline (as operators see it in the admin):")
        for event in HandoverEvent.objects.filter(link=link):
            self.write(f"  {event.at:%H:%M:%S}  {event.kind:<11} {event.text}")
        customer_in = len(ccaas.interactions[link.interaction_id]["messages"])
        agent_out = len(infobip.sent_to_customer(conv))
        recorded = Message.objects.filter(link=link).count()
        summary = (
            f"handover {link.pk}: {link.state}; {customer_in} customer messages delivered, {agent_out} agent "
            f"replies delivered, {recorded} messages recorded, {time.monotonic() - self.t0:.1f}s"
        )
        if not (link.state == State.CLOSED and customer_in == 3 and agent_out == 3):
            raise DemoFailed(f"demo did not complete: {summary}")
        return summary
