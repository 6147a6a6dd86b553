"""Benchmark: what one delivered message costs the database, and broker tasks per delivery.

    .venv/bin/python bench/claim_cost.py [--handovers 10] [--messages 50] [--postgres URL]

SQLite and PostgreSQL each run in their own subprocess against a fresh database and real loopback
fakes of Infobip and a generic contact center. For each database: customer messages are recorded
as the webhook records them (queuing broker tasks on the ORM broker), the tasks queued are counted,
then every lane is delivered twice over, in two modes on separate handovers:

- batched: `delivery.drive_lane`, the way a worker drives a lane (claims several due messages at
  once and hands the claim on in the outcome's transaction);
- one by one: `claim_next` + `run` per message, the way every message was claimed before.

Prints statements and commits per message (statements counted on the connection, transaction
control excluded; commits = committed transactions plus writes in autocommit), CPU milliseconds
per message of this process, and broker tasks per delivery. Counts, not assertions: the CPU figure
moves with machine load, the counts do not.
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
    "SECRET_KEY": "bench-secret-key",
    "BRIDGE_INBOUND_TOKEN": "bench-inbound-token-0123456789abcdefghij",
    "BRIDGE_API_TOKEN": "bench-api-token",
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
    from django_q.models import OrmQ

    from bridge import delivery, services
    from bridge.demo.fakes import FakeGenericCcaas, FakeInfobip
    from bridge.handlers import HANDLERS
    from bridge.infobip.events import parse_message
    from bridge.models import CcaasEndpoint, ConversationLink, Delivery, State
    from tests.costs import counting

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
    for i in range(2 * handovers):
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
    OrmQ.objects.all().delete()
    for link in links:
        for j in range(messages):
            body = infobip.message(link.conversation_id, f"m{j}", store=False)
            services.record_inbound([parse_message(body)])  # as the webhook records one message
    tasks = sum(1 for row in OrmQ.objects.all() if row.task.get("func") == "bridge.tasks.drive_lane")
    saved = sum(1 for row in OrmQ.objects.all() if row.task.get("save") is not False)
    OrmQ.objects.all().delete()

    lane = Delivery.Lane.TO_CCAAS
    figures = {}
    for mode, group in (("batched", links[:handovers]), ("one by one", links[handovers:])):
        cpu = time.process_time()
        with counting() as cost:
            if mode == "batched":
                for link in group:
                    delivery.drive_lane(link.pk, lane)
            else:
                for link in group:
                    while (claimed := delivery.claim_next(link.pk, lane)) is not None:
                        delivery.run(claimed, HANDLERS[claimed.kind])
        cpu = time.process_time() - cpu
        n = handovers * messages
        done = Delivery.objects.filter(link__in=group, state=Delivery.Status.DONE).count()
        figures[mode] = {
            "delivered": done,
            "statements_per_message": cost.statements / n,
            "commits_per_message": cost.commits / n,
            "cpu_ms_per_message": 1000 * cpu / n,
        }
    infobip.stop()
    ccaas.stop()
    return {
        "deliveries": 2 * handovers * messages,
        "tasks_queued": tasks,
        "tasks_with_stored_result": saved,
        **figures,
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
    parser.add_argument("--handovers", type=int, default=10)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/bench_claim_cost")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.handovers, args.messages)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = run_on(f"sqlite:///{tmp}/bench.sqlite3", args.handovers, args.messages)
    if not args.sqlite_only:
        import psycopg

        admin = args.postgres.rsplit("/", 1)[0] + "/postgres"
        name = args.postgres.rsplit("/", 1)[1]
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        results["PostgreSQL"] = run_on(args.postgres, args.handovers, args.messages)
    print(
        f"{args.handovers} handovers x {args.messages} customer messages per mode; load {os.getloadavg()[0]:.1f}"
    )
    for db, r in results.items():
        print(
            f"{db}: {r['tasks_queued']} broker tasks for {r['deliveries']} deliveries "
            f"({r['tasks_queued'] / r['deliveries']:.3f} per delivery), {r['tasks_with_stored_result']} storing a result"
        )
        print(f"  {'mode':<12}{'delivered':>10}{'statements/msg':>16}{'commits/msg':>13}{'CPU ms/msg':>12}")
        for mode in ("batched", "one by one"):
            m = r[mode]
            print(
                f"  {mode:<12}{m['delivered']:>10}{m['statements_per_message']:>16.2f}"
                f"{m['commits_per_message']:>13.2f}{m['cpu_ms_per_message']:>12.1f}"
            )
        b, o = r["batched"], r["one by one"]
        print(
            f"  one by one / batched: statements {o['statements_per_message'] / b['statements_per_message']:.1f}x, "
            f"commits {o['commits_per_message'] / b['commits_per_message']:.1f}x, "
            f"CPU {o['cpu_ms_per_message'] / b['cpu_ms_per_message']:.1f}x"
        )


if __name__ == "__main__":
    main()
