"""The production guide's files: the container runs the commands the guide and the systemd units run, the
alert rules are valid and use metrics the bridge exports, and every file the guide names exists."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "deploy.md").read_text()
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

WEB = "gunicorn -c deploy/gunicorn.conf.py config.wsgi"
WORKER = "manage.py qcluster"
MIGRATE = "manage.py migrate --noinput"
STATIC = "manage.py collectstatic --noinput"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "deploy" / "systemd" / name)
    return parser


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def command_of(service: dict) -> str:
    command = service["command"]
    return command if isinstance(command, str) else shlex.join(command)


def test_the_guide_documents_the_commands_the_units_and_the_container_run():
    for command in (
        WEB,
        MIGRATE.replace("manage.py ", "handover-bridge "),
        STATIC.replace("manage.py ", "handover-bridge "),
    ):
        assert command in GUIDE, command
    assert "handover-bridge-worker@" in GUIDE and "manage.py qcluster" in GUIDE
    web = unit("handover-bridge-web.service")["Service"]
    worker = unit("handover-bridge-worker@.service")["Service"]
    assert web["ExecStart"].endswith(WEB)
    assert worker["ExecStart"].endswith(WORKER)
    for service in (web, worker):
        assert service["WorkingDirectory"] == "/opt/handover-bridge/current"
        assert service["EnvironmentFile"] == "/etc/handover-bridge/bridge.env"
        assert service["User"] == "handover-bridge"
    assert "/etc/handover-bridge/bridge.env" in GUIDE and "/opt/handover-bridge/current" in GUIDE

    services = compose()["services"]
    assert services["web"]["command"] == ["sh", "-c", f"python {STATIC} && exec {WEB}"]
    assert command_of(services["worker"]) == f"python {WORKER}"
    assert command_of(services["migrate"]) == f"python {MIGRATE}"
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert {"db", "redis"} <= set(services)
    assert services["db"]["image"].startswith("postgres:") and services["redis"]["image"].startswith("redis:")
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]  # published on loopback only, behind the proxy

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements/base.txt" in dockerfile and "requirements/base.txt" in GUIDE
    assert f"CMD {json_list(WEB)}" in dockerfile
    assert "USER handover-bridge" in dockerfile
    assert "WORKDIR /opt/handover-bridge/current" in dockerfile


def json_list(command: str) -> str:
    return "[" + ", ".join(f'"{part}"' for part in command.split()) + "]"


def test_the_container_settings_are_settings_the_bridge_reads():
    settings_source = (ROOT / "config" / "settings.py").read_text() + (
        ROOT / "deploy" / "gunicorn.conf.py"
    ).read_text()
    services = compose()["services"]
    for name in ("web", "worker", "migrate"):
        for variable in services[name]["environment"]:
            assert f'"{variable}"' in settings_source, variable
        assert services[name]["env_file"] == ".env.production"
    assert ".env.production" in GUIDE and "/.env.production" in (ROOT / ".gitignore").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    for variable in re.findall(
        r"\b([A-Z_]+)=", dockerfile.split("ENV BRIDGE_ENV_FILE", 1)[1].splitlines()[0]
    ):
        assert f'"{variable}"' in settings_source, variable
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored


def test_the_production_env_sets_every_security_setting_the_guide_lists():
    env = (ROOT / "deploy" / "bridge.env.example").read_text()
    names = set(re.findall(r"^([A-Z_]+)=", env, flags=re.M))
    table = GUIDE.split("| setting | value in the file | why |", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"`([A-Z_]+)`", table))
    assert listed and listed <= names, listed - names
    assert {
        "SECURE_PROXY_SSL_HEADER",
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "CSRF_TRUSTED_ORIGINS",
    } <= listed


def test_every_file_the_guide_names_exists():
    named = set(re.findall(r"(?<![\w/.])((?:deploy|docs)/[\w./@-]+\w|Dockerfile|compose\.yaml)", GUIDE))
    assert "deploy/gunicorn.conf.py" in named and "compose.yaml" in named
    for relative in named:
        assert (ROOT / relative).exists() or (ROOT / "docs" / relative).exists(), relative
    for link in re.findall(r"\]\(([\w.-]+\.md)(?:#[\w-]+)?\)", GUIDE):
        assert (ROOT / "docs" / link).exists(), link


def test_the_helper_script_and_the_gunicorn_settings_load():
    subprocess.run(["sh", "-n", str(ROOT / "deploy" / "handover-bridge")], check=True)
    namespace: dict = {}
    exec((ROOT / "deploy" / "gunicorn.conf.py").read_text(), namespace)
    assert namespace["logger_class"] == "bridge.logs.GunicornLogger"
    assert namespace["bind"] == "127.0.0.1:8000" and namespace["accesslog"] == "-"


# --- alert rules -----------------------------------------------------------------------------------------
def rules() -> list[dict]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_alert_rules_are_well_formed_and_cover_what_the_guide_promises():
    names = set()
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["alert"] and rule["expr"] and rule["labels"]["severity"] in ("warning", "critical")
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["annotations"]["summary"]
        names.add(rule["alert"])
        assert f"`{rule['alert']}`" in GUIDE, rule["alert"]
    assert {
        "HandoverBridgeStuckHandovers",
        "HandoverBridgeDeadLetters",
        "HandoverBridgeCustomerMessageWaiting",
    } <= names


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed"
)
def test_promtool_accepts_the_alert_rules():
    result = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@pytest.mark.django_db
def test_alert_rules_use_only_metrics_the_bridge_exports(client, settings):
    settings.BRIDGE_METRICS_PUBLIC = True
    exported = {
        line.split("{")[0].split(" ")[0]
        for line in client.get("/metrics").content.decode().splitlines()
        if line and not line.startswith("#")
    }
    exported |= {
        line.split()[2]
        for line in client.get("/metrics").content.decode().splitlines()
        if line.startswith("# TYPE")
    }
    for rule in rules():
        used = set(re.findall(r"\b(bridge_[a-z_]+)\b", rule["expr"]))
        assert used <= exported, (rule["alert"], used - exported)


@pytest.mark.django_db
def test_the_worker_heartbeat_metric_is_the_ticker_lease(client, settings):
    from datetime import timedelta

    from django.utils import timezone

    from bridge.models import Lease
    from bridge.periodic import TICKER_LEASE

    settings.BRIDGE_METRICS_PUBLIC = True

    def overdue() -> float | None:
        for line in client.get("/metrics").content.decode().splitlines():
            if line.startswith("bridge_worker_heartbeat_overdue_seconds "):
                return float(line.split()[1])
        return None

    assert overdue() is None  # no worker ever ran: no sample, so the alert's absent() fires
    Lease.objects.create(name=TICKER_LEASE, owner="w", expires_at=timezone.now() + timedelta(seconds=30))
    assert overdue() == 0.0
    Lease.objects.filter(name=TICKER_LEASE).update(expires_at=timezone.now() - timedelta(seconds=90))
    assert 90 <= overdue() < 150
