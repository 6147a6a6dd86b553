"""Time Infobip's context card (GET /api/context-card/) over a filled database; print percentiles.

    DEBUG=1 DATABASE_URL=sqlite:////tmp/card-bench.sqlite3 python bench/context_card.py [--handovers N] [--messages M] [--requests R]

Fills the database like bench/admin_overview.py (defaults: 20,000 handovers, 200,000 messages; it
writes to the database named by DATABASE_URL, migrating it first: point it at a scratch database),
then asks for the card of R random conversations (plus unknown ones), JSON and HTML, and prints the
queries per request and the p50/p95/max times. The card's target is 300 ms p95; this asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("BRIDGE_CARD_TOKEN", "bench-card-token-0123456789abcdefghij")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from bench.admin_overview import fill  # noqa: E402
from bridge.models import ConversationLink, Message  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--handovers", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    fill(args.handovers, args.messages)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(
        f"database: {connection.vendor}; {ConversationLink.objects.count():,} handovers, "
        f"{Message.objects.count():,} messages"
    )
    ids = list(ConversationLink.objects.values_list("conversation_id", flat=True)[: args.handovers])
    rng = random.Random(7)
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {settings.BRIDGE_CARD_TOKEN}")
    for fmt in ("json", "html"):
        times, queries = [], []
        for n in range(args.requests):
            conversation = rng.choice(ids) if n % 10 else f"unknown-{n}"
            with CaptureQueriesContext(connection) as ctx:
                started = time.perf_counter()
                response = client.get("/api/context-card/", {"conversationId": conversation, "format": fmt})
                times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.content[:200]
            queries.append(len(ctx.captured_queries))
        print(
            f"{fmt:<5} {args.requests} requests: queries/request max {max(queries)}, "
            f"median {statistics.median(queries):.0f}; p50 {percentile(times, 0.5):.1f} ms, "
            f"p95 {percentile(times, 0.95):.1f} ms, max {max(times):.1f} ms"
        )


if __name__ == "__main__":
    main()
