"""The ticker runs as soon as a cluster starts, and only one ticks at a time across clusters.

Real `qcluster` processes against the test database. The per-minute schedule is made not due, as
after a restart, so only the ticker threads the worker processes start can do the work."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from bridge.models import ConversationLink, Delivery, Lease, State
from bridge.periodic import TICKER_LEASE
from bridge.signals import TICKER_SCHEDULE
from tests import procs
from tests.test_faults import SECRET, WatchedCcaas
from tests.test_leases import endpoint_for

procs.use_file_sqlite()

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def clusters(tmp_path):
    started: list[procs.BridgeProcess] = []

    def start(**env: str) -> procs.BridgeProcess:
        process = procs.qcluster(tmp_path, name=f"qcluster-{len(started)}", **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
    for process in started:
        print(f"--- {process.log_path.name} (tail) ---\n{process.log_tail(2000)}")


def test_periodic_work_starts_with_the_cluster_and_one_ticker_ticks(clusters):
    Schedule.objects.filter(name=TICKER_SCHEDULE).update(next_run=timezone.now() + timedelta(minutes=5))
    ccaas = WatchedCcaas(SECRET).start()
    try:
        endpoint = endpoint_for(ccaas)
        ccaas.interactions["INT-1"] = {"open": {}, "messages": [], "closed": None, "duplicates": 0}
        link = ConversationLink.objects.create(
            conversation_id="conv-1", endpoint=endpoint, state=State.ACTIVE, interaction_id="INT-1"
        )
        # A retry that came due while no cluster ran: only the ticker's sweep queues it.
        retry = Delivery.objects.create(
            link=link,
            kind=Delivery.Kind.CLOSE_CCAAS,
            lane=Delivery.Lane.TO_CCAAS,
            phase=2,
            attempts=1,
            next_attempt_at=timezone.now(),
            payload={"reason": "OPERATOR"},
        )
        started = time.monotonic()
        clusters()
        clusters()
        owners: set[str] = set()

        def sample():
            owners.update(Lease.objects.filter(name=TICKER_LEASE).values_list("owner", flat=True))
            return Delivery.objects.get(pk=retry.pk).state == Delivery.Status.DONE

        procs.wait_until(sample, 60, interval=0.1, message="the due retry, driven by the ticker")
        seconds = time.monotonic() - started
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:  # both clusters' worker processes keep competing
            sample()
            time.sleep(0.1)
        assert ccaas.interactions["INT-1"]["closed"] == "OPERATOR"
        assert len(owners) == 1, owners  # four ticker threads, one lease holder, never handed around
        assert Lease.objects.get(name=TICKER_LEASE).expires_at > timezone.now()
        print(f"\ncluster start -> due retry driven by the ticker: {seconds:.1f}s (process start included)")
    finally:
        ccaas.stop()
