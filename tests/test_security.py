"""Production security: settings reachable from the environment, the console's lockout and second factor,
CSP, operator-only URLs, an API schema that tells the truth about authentication, and secrets masked in
every log the bridge configures (Django's, and gunicorn's in the documented set-up)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from bridge import delivery as engine
from bridge import handlers as bridge_handlers
from bridge.exceptions import PermanentError
from bridge.logs import JsonFormatter, log_context
from bridge.models import ConversationLink, Delivery, State

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION_ENV = ROOT / "deploy" / "bridge.env.example"
PASSWORD = "correct horse battery staple 42"


def production_env(**overrides: str) -> dict[str, str]:
    """The documented production .env with its <placeholders> filled in, as a process environment.

    The database is a local SQLite file and no Redis is named, so `check` needs nothing running; every
    security setting is the file's own."""
    values: dict[str, str] = {}
    for line in PRODUCTION_ENV.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, value = line.partition("=")
        if "<" in value:
            value = Fernet.generate_key().decode() if "Fernet" in value else secrets.token_urlsafe(48)
        values[name.strip()] = value.strip()
    values["DATABASE_URL"] = f"sqlite:///{Path(tempfile.gettempdir()) / 'bridge-deploy-check.sqlite3'}"
    values.pop("REDIS_URL", None)
    values["INFOBIP_BASE_URL"] = "https://example.api.infobip.com"
    # Nothing from the test run's own environment (pytest-env's test settings, other tests' variables).
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    env.update(values, BRIDGE_ENV_FILE="", **overrides)
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


# --- check --deploy ------------------------------------------------------------------------------------
def test_check_deploy_is_clean_with_the_documented_production_env():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_each_security_setting_is_read_from_the_environment():
    # Switching them off through the environment is what check --deploy then complains about.
    env = production_env(
        SECURE_SSL_REDIRECT="0",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        SECURE_HSTS_SECONDS="0",
    )
    result = manage("check", "--deploy", env=env)
    for code in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert code in result.stderr + result.stdout, code
    shown = manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.SECURE_PROXY_SSL_HEADER, s.CSRF_TRUSTED_ORIGINS,"
        " s.BRIDGE_ADMIN_LOCKOUT, s.BRIDGE_ADMIN_2FA, s.BRIDGE_CSP, s.BRIDGE_TRUSTED_PROXIES)",
        env=production_env(),
    )
    assert shown.stdout.split("\n")[-2] == (
        "('HTTP_X_FORWARDED_PROTO', 'https') ['https://bridge.example.com'] True True True 1"
    ), shown.stderr


def test_production_defaults_are_on_without_any_security_variable():
    env = production_env()
    for name in list(env):
        if (
            name.startswith("SECURE_")
            or name.endswith("_COOKIE_SECURE")
            or name
            in (
                "BRIDGE_CSP",
                "BRIDGE_ADMIN_LOCKOUT",
                "BRIDGE_ADMIN_2FA",
                "CSRF_TRUSTED_ORIGINS",
            )
        ):
            del env[name]
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE,"
        " s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.BRIDGE_CSP, s.BRIDGE_ADMIN_LOCKOUT,"
        " s.BRIDGE_ADMIN_2FA, s.CSRF_TRUSTED_ORIGINS)",
        env=env,
    )
    assert (
        shown.stdout.split("\n")[-2]
        == "True True True 31536000 True True True ['https://bridge.example.com']"
    )


def test_development_mode_keeps_them_off():
    env = production_env(DEBUG="1")
    for name in list(env):
        if name.startswith("SECURE_") or name.startswith("BRIDGE_ADMIN") or name in ("BRIDGE_CSP",):
            del env[name]
    env = {k: v for k, v in env.items() if not k.endswith("_COOKIE_SECURE")}
    shown = manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE,"
        " s.SECURE_HSTS_SECONDS, s.BRIDGE_CSP, s.BRIDGE_ADMIN_LOCKOUT, s.BRIDGE_ADMIN_2FA)",
        env=env,
    )
    assert shown.stdout.split("\n")[-2] == "False False 0 False False False", shown.stderr


# --- headers, cookies, redirect ------------------------------------------------------------------------
@pytest.mark.django_db
def test_https_answers_carry_hsts_and_the_session_cookie_is_secure(client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    page = client.get("/admin/login/", secure=True)
    assert page["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert page.cookies["csrftoken"]["secure"] is True
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "ops", "password": PASSWORD}, secure=True
    )
    assert response.status_code == 302
    assert (
        response.cookies["sessionid"]["secure"] is True and response.cookies["sessionid"]["httponly"] is True
    )


@pytest.mark.django_db
def test_plain_http_is_redirected_except_health_and_metrics(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.BRIDGE_METRICS_PUBLIC = True
    redirected = client.get("/admin/login/")
    assert redirected.status_code == 301 and redirected["Location"] == "https://testserver/admin/login/"
    assert client.get("/healthz").status_code in (200, 503)
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_behind_the_proxy_a_forwarded_https_request_is_not_redirected(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200


@pytest.mark.django_db
def test_csp_covers_the_console_and_leaves_the_context_cards_own_policy(client, settings):
    page = client.get("/admin/login/")
    policy = page["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    if settings.BRIDGE_CARD_TOKEN:
        card = client.get("/api/context-card/", HTTP_AUTHORIZATION=f"Bearer {settings.BRIDGE_CARD_TOKEN}")
        assert "frame-ancestors 'none'" not in card.get("Content-Security-Policy", "")


@pytest.mark.django_db
def test_csp_can_be_switched_off(client, settings):
    settings.CONTENT_SECURITY_POLICY = None
    assert "Content-Security-Policy" not in client.get("/admin/login/")


# --- lockout -------------------------------------------------------------------------------------------
@pytest.fixture
def lockout(settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 5
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    return settings


def log_in(client, password: str, ip: str = "203.0.113.7", **extra):
    return client.post(
        "/admin/login/?next=/admin/", {"username": "ops", "password": password}, REMOTE_ADDR=ip, **extra
    )


@pytest.mark.django_db
def test_forty_wrong_passwords_then_the_right_one_does_not_log_in(client, lockout):
    answers = [log_in(client, f"wrong-{n}").status_code for n in range(40)]
    assert answers[:4] == [200] * 4  # the form again, with its error
    assert set(answers[5:]) == {429}
    right = log_in(client, PASSWORD)
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still sent to the login page


@pytest.mark.django_db
def test_a_few_mistakes_do_not_lock_the_operator_out(client, lockout):
    for n in range(3):
        assert log_in(client, f"wrong-{n}").status_code == 200
    assert log_in(client, PASSWORD).status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_lockout_counts_the_client_behind_the_proxy_not_the_proxy(client, lockout):
    lockout.BRIDGE_TRUSTED_PROXIES = 1
    for n in range(6):
        log_in(client, f"wrong-{n}", ip="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.9")
    # The attacker behind the proxy is locked out; the operator behind the same proxy is not.
    assert log_in(client, PASSWORD, ip="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.9").status_code == 429
    assert log_in(client, PASSWORD, ip="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.44").status_code == 302


# --- second factor -------------------------------------------------------------------------------------
@pytest.fixture
def two_factor(settings):
    settings.BRIDGE_ADMIN_2FA = True
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    return user


def current_code(device: TOTPDevice, ahead: int = 0) -> str:
    """The code the user's app shows now (or `ahead` seconds from now)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + ahead
    return f"{totp.token():0{device.digits}d}"


@pytest.mark.django_db
def test_with_two_factor_the_password_alone_does_not_open_the_console(client, two_factor):
    TOTPDevice.objects.create(user=two_factor, name="phone", confirmed=True)
    page = client.get("/admin/login/")
    assert b'name="otp_token"' in page.content
    response = client.post("/admin/login/?next=/admin/", {"username": "ops", "password": PASSWORD})
    assert response.status_code == 200  # the form again, asking for the code
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_with_two_factor_the_password_and_a_current_code_open_it(client, two_factor):
    device = TOTPDevice.objects.create(user=two_factor, name="phone", confirmed=True)
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "ops", "password": PASSWORD, "otp_token": current_code(device)},
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_with_two_factor_a_wrong_code_does_not_open_it(client, two_factor):
    device = TOTPDevice.objects.create(user=two_factor, name="phone", confirmed=True)
    wrong = f"{(int(current_code(device)) + 500000) % 1000000:06d}"
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "ops", "password": PASSWORD, "otp_token": wrong}
    )
    assert response.status_code == 200
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_with_two_factor_a_session_without_the_second_factor_is_not_staff(client, two_factor):
    client.force_login(two_factor)
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_without_two_factor_development_logins_stay_as_they_were(client, settings):
    settings.BRIDGE_ADMIN_2FA = False
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    page = client.get("/admin/login/")
    assert b'name="otp_token"' not in page.content
    assert (
        client.post("/admin/login/?next=/admin/", {"username": "ops", "password": PASSWORD}).status_code
        == 302
    )


# --- operator-only URLs --------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "token_setting", "public_setting"),
    [
        ("/metrics", "BRIDGE_METRICS_TOKEN", "BRIDGE_METRICS_PUBLIC"),
        ("/api/schema/", "BRIDGE_API_TOKEN", "BRIDGE_SCHEMA_PUBLIC"),
    ],
)
def test_metrics_and_schema_need_a_token_or_a_staff_login(
    client, settings, url, token_setting, public_setting
):
    setattr(settings, token_setting, "operator-token-" + "x" * 32)
    anonymous = client.get(url)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")
    assert token_setting in anonymous.json()["error"]
    assert client.get(url, HTTP_AUTHORIZATION="Bearer operator-token-" + "y" * 32).status_code == 401
    assert client.get(url, HTTP_AUTHORIZATION="Bearer operator-token-" + "x" * 32).status_code == 200
    user = get_user_model().objects.create_user("viewer", password=PASSWORD)
    client.force_login(user)
    assert client.get(url).status_code == 401  # signed in, but not staff
    user.is_staff = True
    user.save()
    assert client.get(url).status_code == 200
    client.logout()
    setattr(settings, public_setting, True)
    assert client.get(url).status_code == 200


@pytest.mark.django_db
def test_metrics_without_a_configured_token_need_a_staff_login(client, settings):
    settings.BRIDGE_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


@pytest.mark.django_db
def test_the_schema_does_not_claim_the_webhooks_use_bearer_authentication(client, settings):
    schema = client.get(
        "/api/schema/",
        HTTP_ACCEPT="application/vnd.oai.openapi+json",
        HTTP_AUTHORIZATION=f"Bearer {settings.BRIDGE_API_TOKEN}",
    ).json()
    assert "security" not in schema
    operations = {(m, p): op for p, item in schema["paths"].items() for m, op in item.items()}
    for (method, path), operation in operations.items():
        if path.startswith("/webhooks/"):
            assert not operation.get("security"), f"{method} {path} claims {operation.get('security')}"
    assert operations[("post", "/api/escalations/")]["security"] == [{"bearer": []}]
    assert operations[("get", "/api/handovers/{id}/")]["security"] == [{"bearer": []}]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


# --- logs ----------------------------------------------------------------------------------------------
@pytest.fixture
def console_log(settings):
    """What the LOGGING handler the bridge configures writes, during the test."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    stream = io.StringIO()
    old = handler.setStream(stream)
    yield stream
    handler.setStream(old)


@pytest.mark.django_db
def test_djangos_log_lines_never_show_the_infobip_path_token(client, settings, console_log, inbound_url):
    token = settings.BRIDGE_INBOUND_TOKEN
    response = client.post(inbound_url, b"{not json", content_type="application/json")
    assert response.status_code == 400
    logging.getLogger("bridge.api").warning("received on %s with %s", inbound_url, token)
    text = console_log.getvalue()
    assert "/webhooks/infobip/***/" in text
    assert token not in text
    assert "Bad Request" in text  # Django's own line is there, masked


def test_json_lines_mask_the_request_django_attaches_and_carry_the_bound_ids(settings):
    token = settings.BRIDGE_INBOUND_TOKEN

    class Request:
        method = "POST"
        path = f"/webhooks/infobip/{token}/"

        def __str__(self) -> str:
            return f"<WSGIRequest: POST '{self.path}'>"

    record = logging.LogRecord(
        "django.request", logging.ERROR, __file__, 1, "Internal Server Error: %s", (Request.path,), None
    )
    record.request = Request()
    record.status_code = 500
    with log_context(handover_id="h-1", delivery_id=42):
        line = JsonFormatter().format(record)
    data = json.loads(line)
    assert token not in line
    assert data["message"] == "Internal Server Error: /webhooks/infobip/***/"
    assert data["path"] == "/webhooks/infobip/***/" and data["method"] == "POST"
    assert (data["handover_id"], data["delivery_id"], data["level"], data["logger"]) == (
        "h-1",
        "42",
        "ERROR",
        "django.request",
    )


@pytest.mark.django_db
def test_every_line_of_a_deliverys_work_carries_its_handover_and_delivery(monkeypatch):
    link = ConversationLink.objects.create(
        conversation_id="conv-log", state=State.ACTIVE, interaction_id="i-1"
    )
    doomed = Delivery.objects.create(
        link=link, kind=Delivery.Kind.MESSAGE, lane=Delivery.Lane.TO_CCAAS, phase=1
    )

    def handler(delivery):
        logging.getLogger("bridge.connectors.generic").warning("the contact center refused the message")
        raise PermanentError("HTTP 422 invalid content", status=422)

    monkeypatch.setitem(bridge_handlers.HANDLERS, Delivery.Kind.MESSAGE, handler)
    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        engine.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
    finally:
        root.removeHandler(capture)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) >= 2, lines  # the connector's line and the engine's dead-letter line
    assert any(line["logger"] == "bridge.delivery" for line in lines)
    for line in lines:
        assert (line["handover_id"], line["delivery_id"]) == (str(link.pk), str(doomed.pk)), line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_gunicorn_in_the_documented_set_up_masks_the_token_in_its_access_log(tmp_path, log_format):
    port = free_port()
    token = secrets.token_urlsafe(32)
    env = production_env(
        BRIDGE_INBOUND_TOKEN=token,
        BRIDGE_LOG_FORMAT=log_format,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_WORKERS="1",
        SECURE_SSL_REDIRECT="0",
        ALLOWED_HOSTS="127.0.0.1",
    )
    out = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "-c", "deploy/gunicorn.conf.py", "config.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(200):
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/webhooks/infobip/{token}/?x=1", timeout=60)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not start: " + (tmp_path / "gunicorn.log").read_text())
        assert answer.status_code == 405
        for _ in range(50):
            text = (tmp_path / "gunicorn.log").read_text()
            if "/webhooks/infobip/***/" in text:
                break
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=30)
        out.close()
    text = (tmp_path / "gunicorn.log").read_text()
    assert token not in text
    lines = [line for line in text.splitlines() if "/webhooks/infobip/" in line]
    assert len(lines) >= 2, text  # Django's warning and gunicorn's access line
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        (access,) = [e for e in entries if e["logger"] == "gunicorn.access"]
        assert (access["method"], access["path"], access["status"]) == ("GET", "/webhooks/infobip/***/", 405)
        (warning,) = [e for e in entries if e["logger"] == "django.request"]
        assert warning["message"] == "Method Not Allowed: /webhooks/infobip/***/"
    else:
        assert any(
            re.search(r'"GET /webhooks/infobip/\*\*\*/\?x=1 HTTP/1\.1" 405', line) for line in lines
        ), lines


# --- bridge_totp -----------------------------------------------------------------------------------------
class CodeOnStdin:
    """Standard input that answers the prompt with the current code of the user's newest device."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def readline(self) -> str:
        device = TOTPDevice.objects.order_by("-id").first()
        return f"{(int(current_code(device)) + self.offset) % 1000000:06d}\n"


@pytest.mark.django_db
def test_bridge_totp_confirms_a_device_that_then_opens_the_console(client, settings, monkeypatch):
    from django.core.management import call_command

    settings.BRIDGE_ADMIN_2FA = True
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    monkeypatch.setattr(sys, "stdin", CodeOnStdin())
    out = io.StringIO()
    call_command("bridge_totp", "ops", stdout=out)
    text = out.getvalue()
    device = TOTPDevice.objects.get(user=user)
    assert device.confirmed and "device 'authenticator' confirmed for ops" in text
    assert "otpauth://totp/" in text and "█" in text  # the URI and its QR code
    # The code used to confirm cannot be used again (replay); the app's next one can.
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "ops", "password": PASSWORD, "otp_token": current_code(device, ahead=device.step)},
    )
    assert response.status_code == 302 and client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_bridge_totp_keeps_nothing_when_the_code_is_wrong(monkeypatch):
    from django.core.management import CommandError, call_command

    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    monkeypatch.setattr(sys, "stdin", CodeOnStdin(offset=500000))
    with pytest.raises(CommandError, match="not right"):
        call_command("bridge_totp", "ops", stdout=io.StringIO())
    assert not TOTPDevice.objects.exists()
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("bridge_totp", "nobody", stdout=io.StringIO())


# --- credentials never on the command line ---------------------------------------------------------------
SECRET_JSON = '{"secret": "s3cr3t-from-a-safe-place-0123456789"}'


@pytest.mark.django_db
@pytest.mark.parametrize("source", ["file", "stdin", "env"])
def test_bridge_endpoint_takes_credentials_from_a_file_stdin_or_the_environment(
    tmp_path, monkeypatch, source
):
    from django.core.management import call_command

    from bridge.models import CcaasEndpoint

    if source == "file":
        path = tmp_path / "credentials.json"
        path.write_text(SECRET_JSON)
        args = ["--credentials-file", str(path)]
    elif source == "stdin":
        monkeypatch.setattr(sys, "stdin", io.StringIO(SECRET_JSON))
        args = ["--credentials-file", "-"]
    else:
        monkeypatch.setenv("ACME_CREDENTIALS", SECRET_JSON)
        args = ["--credentials-env", "ACME_CREDENTIALS"]
    out = io.StringIO()
    call_command(
        "bridge_endpoint", "create", "acme", "--kind", "generic",
        "--config", '{"base_url": "https://ccaas.example.com/bridge", "mode": "webhook"}',
        *args, stdout=out,
    )  # fmt: skip
    assert CcaasEndpoint.objects.get(slug="acme").credentials == json.loads(SECRET_JSON)
    assert "s3cr3t" not in out.getvalue()


@pytest.mark.django_db
def test_bridge_endpoint_says_clearly_when_the_credentials_source_is_missing(tmp_path, monkeypatch):
    from django.core.management import CommandError, call_command

    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(CommandError, match="NOT_SET_ANYWHERE is not set"):
        call_command(
            "bridge_endpoint", "create", "acme", "--kind", "generic", "--credentials-env", "NOT_SET_ANYWHERE"
        )
    with pytest.raises(CommandError, match="cannot read"):
        call_command(
            "bridge_endpoint",
            "create",
            "acme",
            "--kind",
            "generic",
            "--credentials-file",
            str(tmp_path / "none"),
        )


def test_credentials_from_standard_input_are_not_in_the_process_list(tmp_path):
    """The command reads them from a pipe while `ps` shows its arguments: no secret there."""
    env = production_env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'ps.sqlite3'}")
    manage("migrate", "--noinput", env=env)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "bridge_endpoint", "create", "acme", "--kind", "generic",
         "--config", '{"base_url": "https://ccaas.example.com/bridge", "mode": "webhook"}',
         "--credentials-file", "-"],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.5)  # the command waits for its standard input
        listing = subprocess.run(
            ["ps", "-ww", "-o", "args=", "-p", str(process.pid)], capture_output=True, text=True
        )
        assert "--credentials-file -" in listing.stdout
        assert "s3cr3t" not in listing.stdout
        out, err = process.communicate(SECRET_JSON, timeout=120)
    finally:
        process.kill() if process.poll() is None else None
    assert process.returncode == 0, err
    assert "created acme" in out and "s3cr3t" not in out + err
