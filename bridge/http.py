"""Outbound HTTP in one place: sessions with timeouts, status -> exception, SSRF guard, redaction."""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings

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
# 4xx answers that mean "not now" rather than "never" (RELIABILITY.md).
TRANSIENT_4XX = frozenset({408, 409, 425, 429})
SENSITIVE_HEADERS = frozenset(
    {"authorization", "x-bridge-signature", "cookie", "x-api-key", "api_access_token"}
)


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
    session = requests.Session()
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
    check_url: bool = False,
    **kwargs: Any,
) -> requests.Response:
    """Send one request and map the outcome to success or a Transient/Permanent error."""
    if check_url:
        guard_url(url)
    kwargs.setdefault("timeout", timeout())
    counting = getattr(_counting, "current", None)
    if counting is not None:
        counting.sent += 1
    try:
        response = session.request(method, url, **kwargs)
    except requests.Timeout as exc:
        raise TransientError(f"{service}: timed out ({method} {_path(url)})", service=service) from exc
    except requests.ConnectionError as exc:
        raise TransientError(
            f"{service}: connection failed ({method} {_path(url)}): {type(exc).__name__}", service=service
        ) from exc
    except requests.RequestException as exc:
        raise PermanentError(
            f"{service}: invalid request ({method} {_path(url)}): {exc}", service=service
        ) from exc
    raise_for_response(response, service=service)
    return response


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
    """Refuse URLs that resolve to private, loopback or link-local addresses (SSRF guard).

    Off when DEBUG is on or BRIDGE_ALLOW_PRIVATE_URLS=1, for self-hosted contact centers.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"URL must be http(s) with a host: {redact_url(url)}")
    if settings.DEBUG or settings.BRIDGE_ALLOW_PRIVATE_URLS:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as exc:
        raise TransientError(f"cannot resolve {parts.hostname}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise ConfigurationError(
                f"{parts.hostname} resolves to a non-public address ({address}); set "
                "BRIDGE_ALLOW_PRIVATE_URLS=1 to allow self-hosted contact centers on a private network"
            )


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
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
