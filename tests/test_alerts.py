"""Alerts to people: a stuck handover is told exactly once by e-mail and once by webhook, with one
recovery message when it is fixed; a failing channel is retried through the alert outbox and visible;
texts carry no message content or credentials; operators subscribe in the console."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from bridge import alerts, delivery, services
from bridge.models import (
    AlertChannel,
    AlertIncident,
    AlertNotification,
    ConversationLink,
    Delivery,
    Lease,
    Message,
    State,
)

pytestmark = pytest.mark.django_db


class Receiver:
    """A local webhook receiver (127.0.0.1) that records JSON bodies and answers `status`."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                receiver.bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def channels(receiver):
    every = list(AlertIncident.Kind.values)
    return (
        AlertChannel.objects.create(
            name="ops mail", kind="email", target={"to": ["ops@example.com"]}, events=every
        ),
        AlertChannel.objects.create(name="ops json", kind="json", target={"url": receiver.url}, events=every),
    )


@pytest.fixture
def stuck(generic_endpoint, settings):
    settings.BRIDGE_STUCK_AFTER_SECONDS = 60
    settings.BRIDGE_ALERT_WAITING_SECONDS = 10**6  # this test is about the stuck handover only
    link = ConversationLink.objects.create(
        conversation_id="conv-alert",
        endpoint=generic_endpoint,
        state=State.ACTIVE,
        interaction_id="INT-A",
        accepted_at=timezone.now(),
    )
    row = Message.objects.create(
        link=link,
        source=Message.Source.INFOBIP,
        direction=Message.Direction.INBOUND,
        external_id="m-secret",
        content={"text": "my card number is 4111"},
        created_at=timezone.now() - timedelta(hours=1),
    )
    Delivery.objects.create(
        link=link,
        message=row,
        kind=Delivery.Kind.MESSAGE,
        lane=Delivery.Lane.TO_CCAAS,
        sort_at=row.created_at,
        attempts=5,
        failing_since=timezone.now() - timedelta(hours=1),
        next_attempt_at=timezone.now() + timedelta(hours=1),
        last_error="endpoint acme: HTTP 503 on POST /interactions/INT-A/messages: my card number is 4111",
        cause="unreachable",
    )
    return link


def test_a_stuck_handover_is_told_once_by_mail_and_webhook_and_once_when_fixed(
    channels, receiver, stuck, fake_ccaas, fake_infobip
):
    for _ in range(3):  # every tick looks again; the incident is told once
        alerts.run()
    assert len(mail.outbox) == 1 and len(receiver.bodies) == 1
    message, body = mail.outbox[0], receiver.bodies[0]
    assert message.to == ["ops@example.com"] and "Stuck handover" in message.subject
    assert str(stuck.pk) in message.body and "conv-alert" in message.body
    assert body["event"] == "stuck" and body["status"] == "opened" and body["key"] == str(stuck.pk)
    everything = message.subject + message.body + json.dumps(body)
    assert "4111" not in everything and "HTTP 503" not in everything  # no content, no error bodies
    assert AlertIncident.objects.filter(resolved_at__isnull=True).count() == 1

    # Fixed: the contact center takes the message; the recovery is told once.
    fake_ccaas.interactions["INT-A"] = {"open": {}, "messages": [], "closed": None, "duplicates": 0}
    assert services.retry_failed(stuck, actor="admin:root") == 1
    delivery.drain()
    for _ in range(3):
        alerts.run()
    assert len(mail.outbox) == 2 and len(receiver.bodies) == 2
    assert mail.outbox[1].subject.startswith("[Handover Bridge] Resolved: Stuck handover")
    assert receiver.bodies[1]["status"] == "resolved" and receiver.bodies[1]["resolvedAt"]
    assert AlertIncident.objects.filter(resolved_at__isnull=True).count() == 0


def test_a_failing_channel_is_retried_through_the_outbox_and_visible(channels, receiver, stuck, settings):
    receiver.status = 500
    alerts.run()
    note = AlertNotification.objects.get(channel__name="ops json")
    assert note.state == "PENDING" and note.attempts == 1 and "HTTP 500" in note.last_error
    assert "HTTP 500" in AlertChannel.objects.get(name="ops json").last_error
    assert len(mail.outbox) == 1  # one failing channel does not hold the others

    receiver.status = 200
    AlertNotification.objects.filter(pk=note.pk).update(next_attempt_at=timezone.now())
    assert alerts.send_due() == 1
    note.refresh_from_db()
    assert note.state == "DONE" and len(receiver.bodies) == 2
    assert AlertChannel.objects.get(name="ops json").last_error == ""


def test_slack_and_teams_formats_and_the_rate_limit(receiver, generic_endpoint, settings):
    settings.BRIDGE_STUCK_AFTER_SECONDS = 60
    slack = AlertChannel.objects.create(
        name="slack", kind="slack", target={"url": receiver.url}, events=["stuck"]
    )
    AlertChannel.objects.create(
        name="teams", kind="teams", target={"url": receiver.url}, events=["stuck"], max_per_hour=2
    )
    old = timezone.now() - timedelta(hours=1)
    for i in range(3):
        ConversationLink.objects.create(
            conversation_id=f"conv-r{i}", endpoint=generic_endpoint, escalated_at=old
        )
    alerts.run()
    slack_bodies = [b for b in receiver.bodies if "text" in b and "@type" not in b]
    teams_bodies = [b for b in receiver.bodies if b.get("@type") == "MessageCard"]
    assert len(slack_bodies) == 3 and slack_bodies[0]["text"].startswith("*[Handover Bridge] Stuck handover*")
    assert len(teams_bodies) == 2  # the third is over the channel's two an hour
    assert AlertNotification.objects.filter(state="SKIPPED", channel__name="teams").count() == 1
    assert slack.notifications.count() == 3


def test_endpoint_unhealthy_and_recovered_and_a_missing_worker(channels, receiver, generic_endpoint):
    from bridge.exceptions import TransientError

    generic_endpoint.record_failure(
        TransientError("endpoint acme: connection failed", service="endpoint acme")
    )
    alerts.run()
    assert [b["event"] for b in receiver.bodies] == ["endpoint"]
    generic_endpoint.record_success()
    alerts.run()
    assert [(b["event"], b["status"]) for b in receiver.bodies] == [
        ("endpoint", "opened"),
        ("endpoint", "resolved"),
    ]

    call_command("bridge_alerts", "--check-worker")  # no ticker has run: the worker is missing
    assert receiver.bodies[-1]["event"] == "worker"
    Lease.objects.create(name="ticker", owner="w", expires_at=timezone.now() + timedelta(seconds=30))
    call_command("bridge_alerts", "--check-worker")
    assert (receiver.bodies[-1]["event"], receiver.bodies[-1]["status"]) == ("worker", "resolved")


def test_operators_subscribe_in_the_console_and_read_only_users_cannot(client, receiver):
    operator = User.objects.create_user("olga", password="pw-olga-123", is_staff=True)
    operator.groups.add(Group.objects.get(name="Operators"))
    client.force_login(operator)
    add = reverse("admin:bridge_alertchannel_add")
    response = client.post(
        add,
        {
            "name": "team chat",
            "kind": "slack",
            "url": receiver.url,
            "events": ["stuck", "endpoint"],
            "enabled": "on",
            "max_per_hour": 30,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    channel = AlertChannel.objects.get(name="team chat")
    assert channel.target == {"url": receiver.url} and channel.events == ["stuck", "endpoint"]
    page = client.get(reverse("admin:bridge_alertchannel_change", args=[channel.pk])).content.decode()
    assert receiver.url not in page  # the webhook URL is a secret: never shown again

    viewer = User.objects.create_user("vera", password="pw-vera-123", is_staff=True)
    viewer.groups.add(Group.objects.get(name="Operators (read-only)"))
    client.force_login(viewer)
    assert client.get(reverse("admin:bridge_alertchannel_changelist")).status_code == 200
    assert client.post(add, {"name": "x", "kind": "email", "recipients": "a@example.com"}).status_code == 403
