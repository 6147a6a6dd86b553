"""Fill the database with many handovers and messages, then time the operator overview and lists.

    DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench python bench/admin_overview.py [--handovers N] [--messages M]

Defaults: 100,000 handovers and 1,000,000 messages (one delivery each). On 2 cores the fill takes
minutes; pass smaller numbers (e.g. --handovers 20000 --messages 200000) for a quick look. It prints
the query count and the time of each page; it asserts nothing about timings. It writes to the
database named by DATABASE_URL (migrating it first): point it at a scratch database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from bridge.models import CcaasEndpoint, ConversationLink, Delivery, Message, State  # noqa: E402

BATCH = 5000


def fill(handovers: int, messages: int) -> None:
    endpoints = [
        CcaasEndpoint.objects.get_or_create(slug=f"bench-{i}", defaults={"kind": "generic", "config": {}})[0]
        for i in range(3)
    ]
    have = ConversationLink.objects.count()
    now = timezone.now()
    states = (
        [State.CLOSED] * 90
        + [State.ACTIVE] * 6
        + [State.REQUESTED, State.CLOSING, State.FAILED, State.ACTIVE]
    )
    per_link = max(1, messages // max(1, handovers))
    started = time.monotonic()
    for start in range(have, handovers, BATCH):
        links = []
        for i in range(start, min(handovers, start + BATCH)):
            state = states[i % len(states)]
            escalated = now - timedelta(minutes=i % 20000)
            links.append(
                ConversationLink(
                    id=uuid.uuid4(),
                    conversation_id=f"bench-{i:08d}",
                    endpoint=endpoints[i % 3],
                    interaction_id=f"int-{i}",
                    state=state,
                    channel=("WHATSAPP", "SMS", "LIVE_CHAT")[i % 3],
                    customer_address=f"4477009{i:05d}",
                    escalated_at=escalated,
                    last_activity_at=escalated,
                    closed_at=escalated + timedelta(minutes=5)
                    if state in (State.CLOSED, State.FAILED)
                    else None,
                    closing_at=escalated if state == State.CLOSING else None,
                )
            )
        with transaction.atomic():
            ConversationLink.objects.bulk_create(links, batch_size=1000)
            rows = [
                Message(
                    link=link,
                    source=Message.Source.INFOBIP,
                    direction=Message.Direction.INBOUND,
                    external_id=f"m-{link.conversation_id}-{n}",
                    content={"text": f"message {n}"},
                    created_at=link.escalated_at + timedelta(seconds=n),
                )
                for link in links
                for n in range(per_link)
            ]
            Message.objects.bulk_create(rows, batch_size=2000)
            deliveries = []
            for index, row in enumerate(rows):
                open_link = row.link.state in (State.ACTIVE, State.REQUESTED)
                failing = open_link and index % 97 == 0
                dead = index % 5003 == 0
                deliveries.append(
                    Delivery(
                        link=row.link,
                        message=row,
                        kind=Delivery.Kind.MESSAGE,
                        lane=Delivery.Lane.TO_CCAAS,
                        state=Delivery.Status.DEAD
                        if dead
                        else Delivery.Status.PENDING
                        if failing
                        else Delivery.Status.DONE,
                        attempts=3 if failing or dead else 1,
                        failing_since=now - timedelta(hours=1) if failing else None,
                        last_error="HTTP 503" if failing or dead else "",
                        sort_at=row.created_at,
                    )
                )
            Delivery.objects.bulk_create(deliveries, batch_size=2000)
        done = min(handovers, start + BATCH)
        print(f"  filled {done:,} handovers ({time.monotonic() - started:.0f}s)", flush=True)


def measure(client: Client, label: str, url: str) -> None:
    with CaptureQueriesContext(connection) as ctx:
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
    slowest = max((float(q["time"]) for q in ctx.captured_queries), default=0.0)
    print(
        f"{label:<34} HTTP {response.status_code}  {len(ctx.captured_queries):>3} queries  "
        f"{elapsed * 1000:8.1f} ms  (slowest query {slowest * 1000:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--handovers", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    print(
        f"database: {connection.vendor}; filling to {args.handovers:,} handovers, {args.messages:,} messages"
    )
    fill(args.handovers, args.messages)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(
        f"rows: {ConversationLink.objects.count():,} handovers, {Message.objects.count():,} messages, "
        f"{Delivery.objects.count():,} deliveries"
    )
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "", "bench"
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    link = ConversationLink.objects.filter(state=State.ACTIVE).first()
    pages = [
        ("overview (admin index)", "/admin/"),
        ("handovers", "/admin/bridge/conversationlink/"),
        ("handovers: stuck", "/admin/bridge/conversationlink/?attention=stuck"),
        ("handovers: delivery failing", "/admin/bridge/conversationlink/?attention=failing"),
        ("handovers: closed today", "/admin/bridge/conversationlink/?attention=closed_today"),
        ("handovers: search customer", "/admin/bridge/conversationlink/?q=447700900042"),
        ("messages", "/admin/bridge/message/"),
        ("deliveries: dead letters", "/admin/bridge/delivery/?status=dead"),
        ("handover detail", f"/admin/bridge/conversationlink/{link.pk}/change/" if link else "/admin/"),
    ]
    for _ in range(2):  # the second round is the warm one
        print("---")
        for label, url in pages:
            measure(client, label, url)


if __name__ == "__main__":
    main()
