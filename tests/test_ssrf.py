"""The SSRF guard: the address checked is the address connected to, for every outbound request.

Real local HTTP servers stand for an internal service (127.0.0.1, which must never be reached) and,
where a test needs one, a "public" host (127.0.0.2, declared public by patching the address check).
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bridge import http
from bridge.connectors import get_connector
from bridge.exceptions import ConfigurationError, PermanentError
from bridge.models import CcaasEndpoint


class Server:
    """A loopback HTTP server that records every request and answers with `route(path)`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, route=None):
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.route = route or (lambda path: (200, {}, b"internal secret"))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append(
                    (self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                status, headers, body = outer.route(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def guard_on(settings):
    settings.DEBUG = False
    settings.BRIDGE_ALLOW_PRIVATE_URLS = False
    return settings


@pytest.fixture
def internal():
    server = Server()
    yield server
    server.stop()


@pytest.fixture
def public_host(monkeypatch, internal):
    """`public.test` and `rebind.test` resolve to 127.0.0.2, which the guard is told is public."""
    server = Server("127.0.0.2", internal.port)  # same port: only the address tells them apart
    real_getaddrinfo = socket.getaddrinfo
    answers = {"public.test": ["127.0.0.2"], "rebind.test": ["127.0.0.2", "127.0.0.1"]}
    calls: list[str] = []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            calls.append(host)
            # A rebinding DNS server: the first answer is public, every later one internal.
            addresses = answers[host]
            address = addresses[min(len([c for c in calls if c == host]), len(addresses)) - 1]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    real_refused = http._refused_address
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(
        http, "_refused_address", lambda address: None if address == "127.0.0.2" else real_refused(address)
    )
    server.resolutions = calls
    yield server
    server.stop()


def get(url, **kwargs):
    return http.request(http.make_session(), "GET", url, service="test", **kwargs)


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}\\@93.184.216.34/",  # backslash: one host to urlsplit, another to urllib3
        "http://93.184.216.34\\@127.0.0.1:{port}/",
        "http://user:pass@127.0.0.1:{port}/",
        "http://93.184.216.34@127.0.0.1:{port}/",
        "http://127.0.0.1:{port}/a b",
        "http://127.0.0.1:{port}/\r\nX-Injected: 1",
        "http://127.0.0.1:{port}\t/",
        "ftp://127.0.0.1:{port}/",
        "file:///etc/passwd",
        "http:///path-only",
    ],
)
def test_ambiguous_or_malformed_urls_are_refused_before_anything_is_sent(guard_on, internal, template):
    with pytest.raises(ConfigurationError):
        get(template.format(port=internal.port))
    assert internal.requests == []


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "2130706433", "0x7f.0.0.1", "127.1", "0.0.0.0", "[::ffff:127.0.0.1]", "[::1]"],
)
@pytest.mark.parametrize("check_url", [True, False])
def test_private_destinations_are_refused_when_connecting(guard_on, internal, host, check_url):
    """Every spelling of a loopback address is refused where the connection is made, whether or not
    the caller asked for the URL check."""
    with pytest.raises(ConfigurationError, match="non-public address"):
        get(f"http://{host}:{internal.port}/", check_url=check_url)
    assert internal.requests == []


def test_the_address_checked_is_the_address_connected_to(guard_on, internal, public_host):
    """A host whose DNS answers public first and internal next is resolved once: the request goes to
    the checked (public) address, never to the internal one."""
    response = get(f"http://rebind.test:{internal.port}/x")
    assert response.status_code == 200
    assert len(public_host.requests) == 1
    assert internal.requests == []
    assert public_host.resolutions == ["rebind.test"]


def test_a_redirect_to_a_private_address_is_refused(guard_on, internal, public_host):
    public_host.route = lambda path: (302, {"Location": f"http://127.0.0.1:{internal.port}/secret"}, b"")
    with pytest.raises(ConfigurationError, match="non-public address"):
        get(f"http://public.test:{internal.port}/start")
    assert len(public_host.requests) == 1
    assert internal.requests == []


def test_redirects_are_followed_hop_by_hop_and_credentials_stay_at_their_origin(settings):
    settings.BRIDGE_ALLOW_PRIVATE_URLS = True
    other = Server()
    origin = Server(
        route=lambda path: (
            (302, {"Location": "/same-origin"}, b"")
            if path == "/start"
            else (302, {"Location": f"{other.url}/elsewhere"}, b"")
            if path == "/same-origin"
            else (200, {}, b"?")
        )
    )
    try:
        session = http.make_session({"api_access_token": "chatwoot-token", "Authorization": "Bearer key"})
        response = http.request(session, "GET", f"{origin.url}/start", service="test")
        assert response.status_code == 200
        assert [path for _, path, _ in origin.requests] == ["/start", "/same-origin"]
        assert all(h["api_access_token"] == "chatwoot-token" for _, _, h in origin.requests)
        ((_, path, headers),) = other.requests
        assert path == "/elsewhere"
        assert "api_access_token" not in headers and "authorization" not in headers
        assert headers["user-agent"] == http.USER_AGENT
    finally:
        origin.stop()
        other.stop()


def test_a_request_body_is_never_resent_to_another_origin(settings):
    settings.BRIDGE_ALLOW_PRIVATE_URLS = True
    other = Server()
    origin = Server(route=lambda path: (307, {"Location": f"{other.url}/take"}, b""))
    try:
        with pytest.raises(PermanentError, match="another origin"):
            http.request(http.make_session(), "POST", f"{origin.url}/send", service="test", json={"a": 1})
        assert other.requests == []
    finally:
        origin.stop()
        other.stop()


def test_redirect_loops_end_with_a_clear_error(settings):
    settings.BRIDGE_ALLOW_PRIVATE_URLS = True
    loop = Server(route=lambda path: (302, {"Location": "/again"}, b""))
    try:
        with pytest.raises(PermanentError, match="redirects"):
            get(f"{loop.url}/start")
        assert len(loop.requests) == http.MAX_REDIRECTS + 1
    finally:
        loop.stop()


@pytest.mark.django_db
def test_a_customer_media_url_pointing_inside_is_never_fetched_into_a_ticket(guard_on, internal):
    """The RT connector attaches customer files it downloads; an internal URL is not downloaded, and
    the message keeps its link as text."""
    from tests.test_rt import msg

    endpoint = CcaasEndpoint.objects.create(
        slug="rt-ssrf",
        kind="rt",
        config={"base_url": "https://rt.example.test", "queue": "Support", "mode": "poll"},
        credentials={"token": "1-31-secret-token"},
    )
    image = msg("", content_type="IMAGE", content={"url": f"http://localhost:{internal.port}/admin.png"})
    assert get_connector(endpoint)._attachment(image) is None
    assert internal.requests == []
