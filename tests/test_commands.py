"""Management commands answer bad input with one clear line and a non-zero exit, and
`bridge_endpoint test` says what failed on the way to the contact center, without secrets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import responses
from django.core.management import CommandError, call_command

from bridge.models import CcaasEndpoint

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
SECRET = "endpoint-secret-not-to-be-shown"


def endpoint(base_url: str, slug: str = "acme") -> CcaasEndpoint:
    return CcaasEndpoint.objects.create(
        slug=slug,
        kind="generic",
        config={"base_url": base_url, "mode": "webhook"},
        credentials={"secret": SECRET},
    )


def failure(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        call_command(*args)
    message = str(caught.value)
    assert "\n" not in message
    assert SECRET not in message
    return message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- bad input -------------------------------------------------------------------------------------
def test_routing_rules_that_are_not_json_are_one_line():
    endpoint("https://ccaas.example.com/bridge")
    message = failure("bridge_endpoint", "update", "acme", "--routing-rules", "notjson")
    assert message.startswith(
        "--routing-rules is not valid JSON (Expecting value: line 1 column 1 (char 0));"
    )
    assert message.endswith('e.g. [{"tags_any": ["billing"]}]')
    assert CcaasEndpoint.objects.get(slug="acme").routing_rules in ([], None)


def test_routing_rules_must_be_a_list_of_objects():
    endpoint("https://ccaas.example.com/bridge")
    message = failure("bridge_endpoint", "update", "acme", "--routing-rules", '["billing"]')
    assert message == '--routing-rules must be a JSON list of objects, e.g. [{"tags_any": ["billing"]}]'


@pytest.mark.parametrize("slug", ["bad slug!", "ü-umlaut", "a/b", "x" * 65])
def test_a_slug_that_cannot_be_in_a_url_is_refused(slug):
    message = failure(
        "bridge_endpoint",
        "create",
        slug,
        "--kind",
        "generic",
        "--config",
        '{"base_url": "https://ccaas.example.com/bridge", "mode": "webhook"}',
    )
    assert message.startswith(f"slug {slug!r} is ")
    assert not CcaasEndpoint.objects.exists()


def test_a_good_slug_is_created_and_its_webhook_url_printed(capsys, monkeypatch):
    monkeypatch.setenv("ACME_CREDENTIALS", '{"secret": "s3cret-value"}')
    call_command(
        "bridge_endpoint",
        "create",
        "acme-support_2",
        "--kind",
        "generic",
        "--config",
        '{"base_url": "https://ccaas.example.com/bridge", "mode": "webhook"}',
        "--credentials-env",
        "ACME_CREDENTIALS",
    )
    assert "/webhooks/ccaas/acme-support_2/" in capsys.readouterr().out


def test_an_unexpected_error_in_any_command_is_one_line(tmp_path):
    """A database without the bridge's tables: the command fails with one line, not a traceback."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}", "BRIDGE_ENV_FILE": ""}
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "bridge_endpoint", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: OperationalError: no such table: bridge_ccaasendpoint (run again with --traceback for details)"
    ]


# --- bridge_endpoint test --------------------------------------------------------------------------
def test_connection_test_names_a_dns_failure():
    endpoint("http://ccaas.invalid/bridge")
    assert failure("bridge_endpoint", "test", "acme") == (
        "acme: connection test failed: endpoint acme: cannot reach http://ccaas.invalid/bridge: "
        "connection failed: DNS cannot resolve ccaas.invalid"
    )


def test_connection_test_names_a_refused_connection():
    port = free_port()
    endpoint(f"http://127.0.0.1:{port}/bridge")
    assert failure("bridge_endpoint", "test", "acme").endswith(
        f": connection failed: refused by 127.0.0.1:{port}"
    )


def test_connection_test_names_a_timeout(settings):
    settings.BRIDGE_HTTP_READ_TIMEOUT = 0.5
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)  # accepts connections (the kernel does) and never answers
    port = silent.getsockname()[1]
    try:
        endpoint(f"http://127.0.0.1:{port}/bridge")
        message = failure("bridge_endpoint", "test", "acme")
    finally:
        silent.close()
    assert message.endswith(f": timed out waiting for the answer from 127.0.0.1:{port}")


def test_connection_test_names_a_tls_failure():
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen(5)
    port = plain.getsockname()[1]

    def answer_in_plain_http() -> None:
        connection, _ = plain.accept()
        connection.recv(1024)
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        connection.close()

    threading.Thread(target=answer_in_plain_http, daemon=True).start()
    try:
        endpoint(f"https://127.0.0.1:{port}/bridge")
        message = failure("bridge_endpoint", "test", "acme")
    finally:
        plain.close()
    assert f": connection failed: TLS with 127.0.0.1:{port}: " in message
    assert "wrong version number" in message or "record layer failure" in message


@responses.activate
def test_connection_test_gives_the_http_status_and_the_vendors_error_text():
    endpoint("https://ccaas.example.com/bridge")
    responses.get(
        "https://ccaas.example.com/bridge",
        status=401,
        json={"error": "invalid signature", "detail": "X-Bridge-Signature does not match"},
    )
    message = failure("bridge_endpoint", "test", "acme")
    assert "HTTP 401" in message
    assert '"error": "invalid signature"' in message
