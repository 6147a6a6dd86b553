"""Benchmark: webhook ingest and delivery throughput, SQLite and PostgreSQL side by side.

    .venv/bin/python bench/delivery_throughput.py [--handovers 20] [--messages 25]

Each database runs in its own subprocess against a fresh database and real loopback fakes of Infobip
and a generic contact center: customer messages are posted to the real webhook view (Django test
client), then delivered by the engine (delivery.drain); agent replies likewise. Prints messages per
second for each phase and the PostgreSQL/SQLite ratio. Figures, not assertions: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    "SECRET_KEY": "bench-only-secret-key-not-for-production-2b7e9c41d0a85f36e19c4d7b08a2f5e3",
    "BRIDGE_INBOUND_TOKEN": "bench-inbound-token-0123456789abcdefghij",
    "BRIDGE_API_TOKEN": "bench-api-token-8f3a1c9e5b7d2046af1e",
    "BRIDGE_ENCRYPTION_KEYS": "8PV1hM0Qm1n5nB0-jIVuG0xDVh0ADZKh3yXbDw1sAJM=",
    "BRIDGE_ALLOW_PRIVATE_URLS": "1",
    "INFOBIP_API_KEY": "bench-key",
    "ALLOWED_HOSTS": "testserver,localhost",
    "LOG_LEVEL": "ERROR",
}


def worker(handovers: int, messages: int) -> dict:
    import django

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    from bridge import delivery
    from bridge.demo.fakes import FakeGenericCcaas, FakeInfobip
    from bridge.models import CcaasEndpoint, ConversationLink, Delivery, State
    from bridge.signing import sign

    call_command("migrate", verbosity=0)
    infobip, ccaas = FakeInfobip().start(), FakeGenericCcaas("bench-secret").start()
    settings.INFOBIP_BASE_URL = infobip.url
    endpoint = CcaasEndpoint.objects.create(
        slug="bench",
        kind="generic",
        config={"base_url": ccaas.base_url},
        credentials={"secret": "bench-secret"},
    )
    links = []
    for i in range(handovers):
        conv = infobip.add_conversation(f"CONV{i:05d}")
        links.append(
            ConversationLink.objects.create(
                conversation_id=conv,
                endpoint=endpoint,
                interaction_id=f"INT-{i}",
                state=State.ACTIVE,
                channel="WHATSAPP",
                customer_address="447700900123",
                business_sender=FakeInfobip.SENDER,
            )
        )
        ccaas.interactions[f"INT-{i}"] = {"open": {}, "messages": [], "closed": None, "duplicates": 0}
    client = Client()
    url = f"/webhooks/infobip/{settings.BRIDGE_INBOUND_TOKEN}/"
    bodies = [
        infobip.message(link.conversation_id, f"m{j}", store=False) for j in range(messages) for link in links
    ]
    started = time.perf_counter()
    for body in bodies:
        assert client.post(url, json.dumps(body), content_type="application/json").status_code == 200
    ingest = time.perf_counter() - started
    started = time.perf_counter()
    delivered = delivery.drain(rounds=1000)
    to_ccaas = time.perf_counter() - started

    events = []
    for link in links:
        for j in range(messages):
            events.append(
                {
                    "id": f"e-{link.pk}-{j}",
                    "type": "agent_message",
                    "interactionId": link.interaction_id,
                    "message": {
                        "id": f"m-{link.pk}-{j}",
                        "contentType": "TEXT",
                        "content": {"text": f"r{j}"},
                    },
                }
            )
    started = time.perf_counter()
    for k in range(0, len(events), 10):
        raw = json.dumps({"events": events[k : k + 10]}).encode()
        headers = {f"HTTP_{h.upper().replace('-', '_')}": v for h, v in sign("bench-secret", raw).items()}
        assert (
            client.post("/webhooks/ccaas/bench/", raw, content_type="application/json", **headers).status_code
            == 200
        )
    agent_ingest = time.perf_counter() - started
    started = time.perf_counter()
    delivered += delivery.drain(rounds=1000)
    to_infobip = time.perf_counter() - started
    ok = Delivery.objects.filter(state=Delivery.Status.DONE).count()
    infobip.stop()
    ccaas.stop()
    n = handovers * messages
    return {
        "messages_each_way": n,
        "delivered": ok,
        "webhook_ingest_per_s": n / ingest,
        "to_ccaas_per_s": n / to_ccaas,
        "agent_webhook_ingest_per_s": n / agent_ingest,
        "to_infobip_per_s": n / to_infobip,
    }


def run_on(database_url: str, handovers: int, messages: int) -> dict:
    env = {**os.environ, **ENV, "DATABASE_URL": database_url}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", "--handovers", str(handovers), "--messages", str(messages)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark failed on {database_url.split(':')[0]}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--handovers", type=int, default=20)
    parser.add_argument("--messages", type=int, default=25)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/bench_bridge")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.handovers, args.messages)))
        return
    import psycopg

    admin = args.postgres.rsplit("/", 1)[0] + "/postgres"
    name = args.postgres.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = run_on(f"sqlite:///{tmp}/bench.sqlite3", args.handovers, args.messages)
    postgres = run_on(args.postgres, args.handovers, args.messages)
    print(
        f"{args.handovers} handovers x {args.messages} messages each way ({sqlite['messages_each_way']} per direction)"
    )
    print(f"{'phase':<28}{'SQLite msg/s':>14}{'PostgreSQL msg/s':>18}{'PG/SQLite':>11}")
    for key, label in (
        ("webhook_ingest_per_s", "Infobip webhook ingest"),
        ("to_ccaas_per_s", "delivery to contact center"),
        ("agent_webhook_ingest_per_s", "agent webhook ingest"),
        ("to_infobip_per_s", "delivery to Infobip"),
    ):
        print(f"{label:<28}{sqlite[key]:>14.0f}{postgres[key]:>18.0f}{postgres[key] / sqlite[key]:>11.2f}")
    print(
        f"delivered: SQLite {sqlite['delivered']}, PostgreSQL {postgres['delivered']} (expected {2 * sqlite['messages_each_way']})"
    )


if __name__ == "__main__":
    main()
