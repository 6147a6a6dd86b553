"""Outbound HTTP in one place: sessions with timeouts, status -> exception, SSRF guard, redaction."""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.util
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from bridge.exceptions import (
    ConfigurationError,
    NotFoundError,
    PermanentError,
    TransientError,
    UpstreamAuthError,
    UpstreamError,
)

logger = logging.getLogger(__name__)

USER_AGENT = "handover-bridge/0.1"
# 4xx answers that mean "not now" rather than "never" (docs/reliability.md, "Retries").
TRANSIENT_4XX = frozenset({408, 409, 425, 429})
SENSITIVE_HEADERS = frozenset(
    {"authorization", "x-bridge-signature", "cookie", "x-api-key", "api_access_token"}
)


# Headers that may follow a redirect to another origin; every other header (credentials in
# Authorization, api_access_token, signatures, cookies) is dropped there.
CROSS_ORIGIN_SAFE_HEADERS = frozenset({"user-agent", "accept", "accept-encoding", "accept-language", "range"})
MAX_REDIRECTS = 5

_sessions = threading.local()
_counting = threading.local()


class CallCount:
    """How many requests were sent (whatever their answer) inside `count_calls()`."""

    def __init__(self) -> None:
        self.sent = 0


@contextmanager
def count_calls() -> Iterator[CallCount]:
    """Count the requests this thread sends through `request()` in the block, so a caller can tell a
    real call from a cycle that had nothing to ask (endpoint health is written only after a call)."""
    outer = getattr(_counting, "current", None)
    count = _counting.current = CallCount()
    try:
        yield count
    finally:
        _counting.current = outer
        if outer is not None:
            outer.sent += count.sent


class DestinationRefused(Exception):
    """The SSRF guard refused to connect: the host resolved to a non-public address.

    Deliberately not an OSError, so urllib3 and requests let it through unwrapped and unretried."""


def _guard_active() -> bool:
    return not (settings.DEBUG or settings.BRIDGE_ALLOW_PRIVATE_URLS)


def _refused_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return None if ip.is_global else ip


def _open_checked_socket(host: str, port: int, timeout: Any, source_address: Any, socket_options: Any):
    """Resolve `host` once, refuse it if any address is not public, and connect to a checked address.

    The address that was checked is the address connected to: there is no second resolution that a
    rebinding DNS server could answer differently.
    """
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    if _guard_active():
        for info in infos:
            refused = _refused_address(info[4][0])
            if refused is not None:
                raise DestinationRefused(
                    f"{host} resolves to a non-public address ({refused}); set BRIDGE_ALLOW_PRIVATE_URLS=1 "
                    "to allow self-hosted contact centers on a private network"
                )
    error: OSError | None = None
    for info in infos:
        try:
            return urllib3_connection.create_connection(
                (info[4][0], port), timeout, source_address=source_address, socket_options=socket_options
            )
        except OSError as exc:
            error = exc
    raise error or OSError(f"no address for {host}")


class _CheckedConnectionMixin:
    def _new_conn(self):
        try:
            return _open_checked_socket(
                self._dns_host, self.port, self.timeout, self.source_address, self.socket_options
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc


class _CheckedHTTPConnection(_CheckedConnectionMixin, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_CheckedConnectionMixin, HTTPSConnection):
    pass


class _CheckedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class CheckedAdapter(HTTPAdapter):
    """Every connection resolves its host once and is refused when that is not a public address."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CheckedHTTPConnectionPool,
            "https": _CheckedHTTPSConnectionPool,
        }


class GuardedSession(requests.Session):
    """A Session whose connections pass the SSRF guard and which never follows a redirect by itself:
    `request()` follows them hop by hop, so each hop is checked and credentials stay at their origin."""

    def __init__(self) -> None:
        super().__init__()
        self.mount("http://", CheckedAdapter())
        self.mount("https://", CheckedAdapter())

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


def make_session(
    extra_headers: Mapping[str, str] | None = None, *, reuse_key: str | None = None
) -> requests.Session:
    """A requests.Session with our user agent; each request gets `timeout()` from `request()`.

    With `reuse_key`, the session (and its kept-alive connections) is reused by later calls with the
    same key in the same thread, so a worker does not pay a TLS handshake per message. The key must
    change whenever the headers would (callers include the endpoint's last change in it).
    """
    if reuse_key is not None:
        # The headers are part of the key too: credentials can change without the caller's key
        # changing (an unsaved endpoint, a queryset update), and a stale Authorization must never be sent.
        reuse_key = f"{reuse_key}:{hash(frozenset((extra_headers or {}).items()))}"
        cache = getattr(_sessions, "by_key", None)
        if cache is None:
            cache = _sessions.by_key = {}
        session = cache.get(reuse_key)
        if session is not None:
            if extra_headers:
                session.headers.update(extra_headers)
            return session
    session = GuardedSession()
    session.headers["User-Agent"] = USER_AGENT
    if extra_headers:
        session.headers.update(extra_headers)
    if reuse_key is not None:
        if len(cache) > 64:  # endpoints come and go; never grow without bound
            for old in cache.values():
                old.close()
            cache.clear()
        cache[reuse_key] = session
    return session


def timeout() -> tuple[float, float]:
    return (settings.BRIDGE_HTTP_CONNECT_TIMEOUT, settings.BRIDGE_HTTP_READ_TIMEOUT)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    service: str,
    check_url: bool = True,
    **kwargs: Any,
) -> requests.Response:
    """Send one request and map the outcome to success or a Transient/Permanent error.

    Redirects (at most MAX_REDIRECTS) are followed here, hop by hop: each new URL is checked like the
    first, the connection of every hop passes the SSRF guard, and on a hop to another origin only
    CROSS_ORIGIN_SAFE_HEADERS are sent and a request body is never re-sent. `check_url=False` skips
    only the URL-shape check of the first URL (`guard_url`), never the connection-level guard.
    """
    if check_url:
        guard_url(url)
    kwargs.setdefault("timeout", timeout())
    kwargs["allow_redirects"] = False
    for _hop in range(MAX_REDIRECTS + 1):
        response = _send(session, method, url, service=service, **kwargs)
        if not response.is_redirect:
            break
        target = urljoin(url, response.headers["location"])
        guard_url(target)
        response.close()
        if response.status_code in (301, 302, 303) and method.upper() not in ("GET", "HEAD"):
            method = "GET"
            for key in ("json", "data", "files"):
                kwargs.pop(key, None)
        if _origin(target) != _origin(url):
            if any(kwargs.get(key) is not None for key in ("json", "data", "files")):
                raise PermanentError(
                    f"{service}: refusing to re-send a request body to another origin "
                    f"({method} {_path(url)} redirected to {redact_url(target)})",
                    service=service,
                )
            kwargs.pop("auth", None)
            headers = {
                name: None for name in session.headers if name.lower() not in CROSS_ORIGIN_SAFE_HEADERS
            }
            for name, value in (kwargs.get("headers") or {}).items():
                if name.lower() in CROSS_ORIGIN_SAFE_HEADERS:
                    headers[name] = value
            kwargs["headers"] = headers
        url = target
    else:
        raise PermanentError(
            f"{service}: more than {MAX_REDIRECTS} redirects ({_path(url)})", service=service
        )
    raise_for_response(response, service=service)
    return response


def _send(
    session: requests.Session, method: str, url: str, *, service: str, **kwargs: Any
) -> requests.Response:
    counting = getattr(_counting, "current", None)
    if counting is not None:
        counting.sent += 1
    try:
        return session.request(method, url, **kwargs)
    except DestinationRefused as exc:
        raise ConfigurationError(f"{service}: {exc}") from exc
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise TransientError(
            f"{service}: {describe_failure(exc)} ({method} {_path(url)})", service=service
        ) from exc
    except requests.RequestException as exc:
        raise PermanentError(
            f"{service}: invalid request ({method} {_path(url)}): {exc}", service=service
        ) from exc


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """exc and everything it wraps: causes, contexts, urllib3's MaxRetryError.reason, args."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *current.args,
        ):
            if isinstance(inner, BaseException):
                todo.append(inner)


def describe_failure(exc: BaseException) -> str:
    """What went wrong on the way to the other side, in words an operator can act on:
    "connection failed: DNS cannot resolve <host>", "connection failed: refused by <host>:<port>",
    "connection failed: TLS with <host>:<port>: <reason>", "timed out connecting to <host>:<port>",
    "timed out waiting for the answer from <host>:<port>", else "connection failed with <host>:<port>:
    <exception type>". Names the host and port only, never a path, query or header."""
    chain = list(_causes(exc))
    connection = next((getattr(e, "conn", None) for e in chain if getattr(e, "conn", None) is not None), None)
    pool = next((getattr(e, "pool", None) for e in chain if getattr(e, "pool", None) is not None), None)
    origin = connection or pool
    host = getattr(origin, "host", "") or "the host"
    port = getattr(origin, "port", None)
    where = f"{host}:{port}" if port else host
    if any(isinstance(e, (requests.exceptions.SSLError, ssl.SSLError)) for e in chain):
        reason = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
        detail = (getattr(reason, "reason", None) or str(reason or "")).strip() or "handshake failed"
        return f"connection failed: TLS with {where}: {detail.lower().replace('_', ' ')}"
    if any(isinstance(e, (NameResolutionError, socket.gaierror)) for e in chain):
        return f"connection failed: DNS cannot resolve {host}"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in str(exc).lower():
        return f"connection failed: refused by {where}"
    if any(isinstance(e, requests.exceptions.ReadTimeout) for e in chain):
        return f"timed out waiting for the answer from {where}"
    if any(isinstance(e, (requests.Timeout, ConnectTimeoutError, TimeoutError)) for e in chain):
        return f"timed out connecting to {where}"
    return f"connection failed with {where}: {type(exc).__name__}"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return (parts.scheme, (parts.hostname or "").lower(), parts.port)


def raise_for_response(response: requests.Response, *, service: str) -> None:
    """Status code -> exception, in one place. 2xx (and 3xx, which requests follows) pass."""
    status = response.status_code
    if status < 400:
        return
    body = _body_start(response)
    where = f"{response.request.method} {_path(response.url)}" if response.request is not None else ""
    message = f"{service}: HTTP {status} on {where}: {body}"
    kwargs = {"status": status, "body": body, "service": service}
    if status in (401, 403):
        raise UpstreamAuthError(message, **kwargs)
    if status in TRANSIENT_4XX or status >= 500:
        raise TransientError(
            message, retry_after=parse_retry_after(response.headers.get("Retry-After")), **kwargs
        )
    if status == 404:
        raise NotFoundError(message, **kwargs)
    raise PermanentError(message, **kwargs)


def json_body(response: requests.Response, *, service: str, empty: Any = None) -> Any:
    """The answer's JSON, or `empty` when the answer has no body (204s, bare 200s)."""
    if not response.content:
        return empty
    return json_or_error(response, service=service)


def json_or_error(response: requests.Response, *, service: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise UpstreamError(
            f"{service}: answer is not JSON (HTTP {response.status_code}): {_body_start(response)}",
            status=response.status_code,
            service=service,
        ) from exc


def guard_url(url: str) -> None:
    """Refuse a URL that is not plainly `http(s)://host[:port]/...`, before anything is sent.

    Parsers disagree about URLs with user info, backslashes, whitespace or control characters
    (`http://127.0.0.1:18200\\@93.184.216.34/` is one host to one parser and another host to the
    next), so those are refused outright, and the host Python's parser sees must be the host
    urllib3 (which makes the connection) sees. Where the host resolves to is checked when the
    connection is made (`CheckedAdapter`), for every request.
    """
    if not isinstance(url, str) or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ConfigurationError("URL must not contain whitespace or control characters")
    if "\\" in url:
        raise ConfigurationError(f"URL must not contain a backslash: {redact_url(url)}")
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port
        parsed = urllib3.util.parse_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"URL cannot be parsed: {exc}") from exc
    if parts.scheme not in ("http", "https") or not hostname:
        raise ConfigurationError(f"URL must be http(s) with a host: {redact_url(url)}")
    if "@" in parts.netloc:
        raise ConfigurationError(f"URL must not carry user info (user:password@): {redact_url(url)}")
    try:
        expected = hostname.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ConfigurationError(f"URL host is not a valid name: {redact_url(url)}") from exc
    if (parsed.host or "").lower().strip("[]") != expected or parsed.port != port:
        raise ConfigurationError(
            f"URL is ambiguous (its host reads differently to different parsers): {redact_url(url)}"
        )


def redact_url(url: str) -> str:
    """scheme://host[:port]/path of `url`: no user info, query or fragment (which may carry secrets)."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:
        return "<unparseable URL>"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _path(url: str) -> str:
    return urlsplit(url).path or "/"


def _body_start(response: requests.Response, limit: int = 300) -> str:
    try:
        text = response.text
    except Exception:  # pragma: no cover - undecodable body
        return "<undecodable body>"
    text = " ".join(text.split())
    return text[:limit]
