"""bridge_demo runs beside a running bridge without sharing its work, and completes every time.

A real `qcluster` of the test database (the operator's bridge here) runs throughout: before the
demo had its own sandbox, that cluster took the demo's deliveries and dead-lettered them, and the
demo's endpoint and handover stayed in the operator's database.
"""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django_q.models import OrmQ, Task

from bridge.models import CcaasEndpoint, ConversationLink, Delivery, Lease, Message
from bridge.periodic import TICKER_LEASE
from tests import procs

procs.use_file_sqlite()

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def assert_whole_timeline(output: str) -> None:
    assert len(re.findall(r"contact center received: ", output)) == 3, output
    assert len(re.findall(r"customer +received on WHATSAPP: ", output)) == 3, output
    assert "Infobip        conversation status: CLOSED" in output, output
    assert re.search(r"Demo complete: handover \S+: CLOSED; 3 customer messages delivered, 3 agent", output)


def test_demo_beside_a_running_cluster_completes_and_leaves_nothing_behind(tmp_path):
    cluster = procs.qcluster(tmp_path)
    try:
        procs.kick_ticker()
        procs.wait_until(
            lambda: Lease.objects.filter(name=TICKER_LEASE).exists(), 90, message="the cluster's ticker"
        )
        for _ in range(2):
            out = io.StringIO()
            call_command("bridge_demo", stdout=out)
            assert_whole_timeline(out.getvalue())
        assert cluster.running, cluster.log_tail()
    finally:
        cluster.kill()
    # Nothing of the demo reached the operator's database or its queue.
    assert CcaasEndpoint.objects.count() == 0
    assert ConversationLink.objects.count() == 0
    assert Message.objects.count() == 0
    assert Delivery.objects.count() == 0
    handover_work = {"bridge.tasks.drive_lane", "bridge.tasks.send_typing"}  # the ticker's own work aside
    assert not Task.objects.filter(func__in=handover_work).exists()
    assert not [item for item in OrmQ.objects.all() if item.func() in handover_work]
