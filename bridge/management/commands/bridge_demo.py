"""manage.py bridge_demo: a whole handover against simulated Infobip and contact-center servers.

Starts both simulators and the bridge's own web app on loopback, then plays the five steps: the
chatbot escalates, the interaction opens with the history, three customer messages go to the agent,
three agent replies go to the customer, the agent closes. Prints the timeline; needs no account.
"""

from __future__ import annotations

import logging
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.management.base import BaseCommand, CommandError

from bridge import delivery
from bridge.demo.fakes import FakeGenericCcaas, FakeInfobip
from bridge.infobip.client import InfobipClient
from bridge.models import CcaasEndpoint, ConversationLink, HandoverEvent, Message, State

DEMO_SLUG = "demo"
DEMO_SECRET = "demo-shared-secret"


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


class Command(BaseCommand):
    help = "Run a complete handover against built-in simulated Infobip and contact-center servers."

    def handle(self, *args, **options) -> None:
        logging.getLogger("django-q").setLevel(logging.WARNING)  # the timeline is the output here
        started = time.monotonic()
        infobip = FakeInfobip().start()
        bridge = make_server(
            "127.0.0.1", 0, WSGIHandler(), server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        threading.Thread(target=bridge.serve_forever, daemon=True).start()
        bridge_url = f"http://127.0.0.1:{bridge.server_port}"
        ccaas = FakeGenericCcaas(DEMO_SECRET, webhook_url=f"{bridge_url}/webhooks/ccaas/{DEMO_SLUG}/").start()
        # Point the bridge at the simulators for this run only.
        settings.INFOBIP_BASE_URL, settings.INFOBIP_API_KEY = infobip.url, "demo-api-key"
        settings.BRIDGE_ALLOW_PRIVATE_URLS = True
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]
        try:
            self._run(infobip, ccaas, bridge_url, started)
        finally:
            CcaasEndpoint.objects.filter(slug=DEMO_SLUG).update(enabled=False)
            ccaas.stop()
            infobip.stop()
            bridge.shutdown()

    def say(self, started: float, who: str, text: str) -> None:
        self.stdout.write(f"  {time.monotonic() - started:6.2f}s  {who:<14} {text}")

    def _run(self, infobip: FakeInfobip, ccaas: FakeGenericCcaas, bridge_url: str, t0: float) -> None:
        CcaasEndpoint.objects.update_or_create(
            slug=DEMO_SLUG,
            defaults={
                "kind": "generic",
                "name": "Simulated contact center (bridge_demo)",
                "config": {"base_url": ccaas.base_url, "mode": "webhook"},
                "credentials": {"secret": DEMO_SECRET},
                "enabled": True,
                "is_default": False,
            },
        )
        self.stdout.write(
            f"Simulated Infobip at {infobip.url}, contact center at {ccaas.base_url}, bridge at {bridge_url}"
        )
        self.stdout.write("Timeline:")
        inbound = f"{bridge_url}/webhooks/infobip/{settings.BRIDGE_INBOUND_TOKEN}/"
        InfobipClient().update_account_configuration(inbound)
        self.say(t0, "bridge", "subscribed to Infobip's inbound messages (Update Account Configuration)")

        conv = infobip.add_conversation(tags=["demo", "billing"], metadata={"customerTier": "gold"})
        infobip.message(conv, "Hi! My invoice looks wrong.")
        infobip.message(
            conv, "I can help with invoices. What is the number?", direction="OUTBOUND", author="BOT"
        )
        infobip.message(conv, "I want to talk to a person, please.")
        self.say(t0, "customer", f"chats with the bot in conversation {conv} (3 messages)")

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
            raise CommandError(f"escalation answered {answer.status_code}: {answer.text}")
        link = ConversationLink.objects.get(pk=answer.json()["id"])
        self.say(t0, "chatbot", f"API element escalates; To Agent ends the bot session -> handover {link.pk}")

        delivery.drain()
        link.refresh_from_db()
        if link.state != State.ACTIVE:
            raise CommandError(f"the interaction did not open: {link.state} {link.last_error}")
        history = ccaas.interactions[link.interaction_id]["open"]["history"]
        self.say(
            t0,
            "contact center",
            f"interaction {link.interaction_id} opened with {len(history)} messages of history",
        )

        ccaas.agent_accepts(link.interaction_id)
        self.say(t0, "agent", "accepts the interaction")
        for text in ("It's invoice 2024-117.", "It charges me twice.", "Can you fix it?"):
            infobip.customer_says(conv, text)
            self.say(t0, "customer", text)
        delivery.drain()
        for item in ccaas.interactions[link.interaction_id]["messages"]:
            self.say(t0, "contact center", f"received: {item['content']['text']}")

        for text in (
            "Hello Ana, I'm Alice.",
            "I see the double charge.",
            "I have refunded it. Anything else?",
        ):
            ccaas.agent_says(link.interaction_id, text)
            self.say(t0, "agent", text)
        delivery.drain()
        for item in infobip.sent_to_customer(conv):
            self.say(t0, "customer", f"received on {item['channel']}: {item['content']['text']}")

        ccaas.agent_closes(link.interaction_id)
        self.say(t0, "agent", "closes the interaction")
        delivery.drain()
        link.refresh_from_db()
        self.say(t0, "Infobip", f"conversation status: {infobip.conversations[conv]['status']}")

        self.stdout.write("Handover timeline (as operators see it in the admin):")
        for event in HandoverEvent.objects.filter(link=link):
            self.stdout.write(f"  {event.at:%H:%M:%S}  {event.kind:<11} {event.text}")
        customer_in = len(ccaas.interactions[link.interaction_id]["messages"])
        agent_out = len(infobip.sent_to_customer(conv))
        ok = link.state == State.CLOSED and customer_in == 3 and agent_out == 3
        recorded = Message.objects.filter(link=link).count()
        summary = (
            f"handover {link.pk}: {link.state}; {customer_in} customer messages delivered, {agent_out} agent replies "
            f"delivered, {recorded} messages recorded, {time.monotonic() - t0:.1f}s"
        )
        if not ok:
            raise CommandError(f"demo did not complete: {summary}")
        self.stdout.write(self.style.SUCCESS(f"Demo complete: {summary}"))
