"""/healthz tells the truth: a database that refuses writes, a worker that is not running, Infobip not
configured; and it answers load-balancer probes that send an IP address as Host."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bridge import heartbeat
from bridge.models import Heartbeat
from tests import procs

procs.use_file_sqlite()  # a second connection must be able to lock the same database

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_reports_a_missing_worker(client):
    body = client.get("/healthz").json()
    assert body["status"] == "degraded"
    assert body["worker"] == "missing: no worker has ever beaten (is qcluster running?)"
    assert (body["database"], body["broker"]) == ("ok", "ok")


def test_healthz_reports_a_stale_heartbeat(client, settings):
    settings.BRIDGE_HEARTBEAT_STALE_SECONDS = 60
    Heartbeat.objects.create(name=heartbeat.WORKER, beat_at=timezone.now() - timedelta(seconds=300))
    body = client.get("/healthz").json()
    assert body["status"] == "degraded"
    assert body["worker"].startswith("missing: last heartbeat 30")


def test_healthz_is_ok_with_a_fresh_heartbeat_and_no_probe_row_is_left(client):
    assert heartbeat.beat(force=True)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert list(Heartbeat.objects.values_list("name", flat=True)) == [heartbeat.WORKER]


def test_healthz_reports_infobip_not_configured(client, settings):
    heartbeat.beat(force=True)
    settings.INFOBIP_BASE_URL = ""
    body = client.get("/healthz").json()
    assert (body["status"], body["infobip"]) == ("degraded", "not configured")


def test_healthz_fails_while_the_database_refuses_writes(client):
    heartbeat.beat(force=True)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA query_only = ON")
        else:
            cursor.execute("SET default_transaction_read_only = on")
    try:
        response = client.get("/healthz")
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA query_only = OFF")
            else:
                cursor.execute("SET default_transaction_read_only = off")
    assert response.status_code == 503
    assert response.json()["status"] == "error"
    assert response.json()["database"].startswith("error: the database refused a write")


def test_healthz_fails_within_its_timeout_while_another_writer_holds_the_database(client, settings):
    settings.BRIDGE_HEALTHZ_WRITE_TIMEOUT_SECONDS = 0.5
    heartbeat.beat(force=True)
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        other = sqlite3.connect(db["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock, as a stuck writer would
    else:
        import psycopg

        other = psycopg.connect(procs.database_url(), autocommit=False)
        other.execute(f"LOCK TABLE {Heartbeat._meta.db_table} IN ACCESS EXCLUSIVE MODE")
    try:
        response = client.get("/healthz")
    finally:
        other.rollback()
        other.close()
    assert response.status_code == 503
    assert "did not answer in 0.5s" in response.json()["database"]
    # the write lock was waited for only within the health timeout: the usual busy timeout is back
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout")
            assert cursor.fetchone()[0] == int(db["OPTIONS"]["timeout"] * 1000)


@pytest.mark.parametrize("host", ["10.0.0.5", "10.0.0.5:8000", "[fd00::5]:8000", "probe.internal"])
def test_healthz_answers_probes_by_ip_or_probe_host(client, settings, host):
    settings.BRIDGE_PROBE_HOSTS = ["probe.internal"]
    heartbeat.beat(force=True)
    response = client.get("/healthz", HTTP_HOST=host)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_other_paths_and_hosts_still_need_allowed_hosts(client):
    assert client.get("/healthz", HTTP_HOST="evil.example").status_code == 400
    assert client.get("/api/handovers/", HTTP_HOST="10.0.0.5").status_code == 400
