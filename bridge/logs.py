"""Logging the bridge configures: secrets masked on every line, plain text or JSON, and the handover and
delivery a line belongs to.

- `RedactingFormatter` / `JsonFormatter` (settings.LOGGING, chosen by `BRIDGE_LOG_FORMAT=plain|json`) mask
  the Infobip webhook's path token (`/webhooks/infobip/<token>/` becomes `/webhooks/infobip/***/`) and the
  exact value of every configured secret, wherever it appears in the finished line: message, arguments,
  tracebacks, and the request Django attaches to its own error lines.
- `log_context(handover_id=..., delivery_id=...)` binds ids to everything logged inside it (a context
  variable, so threads and tasks do not mix); the JSON format writes them as `handover_id` and
  `delivery_id` on every line, the plain format appends them as `[handover=… delivery=…]`.
- `GunicornLogger` is gunicorn's logger with the same masking (access and error log) and, with
  `BRIDGE_LOG_FORMAT=json`, JSON lines; the documented gunicorn set-up (deploy/gunicorn.conf.py) uses it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

MASK = "***"
# The Infobip webhook's only secret is its path segment; any value there is masked (wrong guesses too).
_INFOBIP_PATH = re.compile(r"(/webhooks/infobip/)[^/\s?\"']+")
# Settings whose values must never appear in a log line.
SECRET_SETTINGS = (
    "SECRET_KEY",
    "BRIDGE_INBOUND_TOKEN",
    "BRIDGE_API_TOKEN",
    "BRIDGE_CARD_TOKEN",
    "BRIDGE_METRICS_TOKEN",
    "INFOBIP_API_KEY",
)

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "bridge_log_context", default=None
)


@contextlib.contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Attach ids (e.g. handover_id, delivery_id) to every line logged inside the block."""
    merged = {**(_context.get() or {}), **{k: str(v) for k, v in ids.items() if v not in (None, "")}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    return dict(_context.get() or {})


def _secrets() -> list[str]:
    values: list[str] = []
    try:
        from django.conf import settings

        if settings.configured:
            values = [str(getattr(settings, name, "") or "") for name in SECRET_SETTINGS]
    except Exception:  # logging must work before and without Django settings
        values = []
    if not values:
        values = [os.environ.get(name, "") for name in SECRET_SETTINGS]
    # Short values would mask ordinary words; secrets the bridge accepts are long.
    return sorted({v for v in values if len(v) >= 8}, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with the Infobip path token and every configured secret replaced by ***."""
    text = _INFOBIP_PATH.sub(r"\1" + MASK, text)
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFormatter(logging.Formatter):
    """A plain-text formatter that appends the bound ids and masks secrets in the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = _context.get() or {}
        if ids:
            line += " [" + " ".join(f"{k.removesuffix('_id')}={v}" for k, v in ids.items()) + "]"
        return redact(line)


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time, level, logger, message, the bound ids, extras; secrets masked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", False)
        kwargs.setdefault("json_default", str)
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", *args, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict) -> None:
        super().add_fields(log_data, record, message_dict)
        for key, value in (_context.get() or {}).items():
            log_data.setdefault(key, value)
        # Django attaches the request object to its error lines; its path is all a reader needs.
        request = log_data.pop("request", None)
        if request is not None and hasattr(request, "path"):
            log_data["path"] = request.path
            log_data["method"] = getattr(request, "method", None)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def formatter_for(kind: str) -> logging.Formatter:
    if kind == "json":
        return JsonFormatter()
    return RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")


try:  # gunicorn is a runtime dependency, but this module must import without it (e.g. in tools)
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:  # pragma: no cover
    _GunicornLogger = None


if _GunicornLogger is not None:

    class GunicornLogger(_GunicornLogger):
        """gunicorn's logger with every line masked; JSON lines when BRIDGE_LOG_FORMAT=json.

        Access lines in JSON carry the request's fields (`method`, `path`, `status`, `bytes`, `duration_ms`,
        `remote`, `user_agent`) instead of the combined-log string.
        """

        def setup(self, cfg) -> None:
            super().setup(cfg)
            kind = os.environ.get("BRIDGE_LOG_FORMAT", "plain").strip().lower()
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    if kind == "json":
                        handler.setFormatter(JsonFormatter())
                    else:
                        handler.setFormatter(_RedactingPassThrough(handler.formatter))

        def atoms(self, resp, req, environ, request_time) -> dict[str, Any]:
            atoms = super().atoms(resp, req, environ, request_time)
            return {key: redact(value) if isinstance(value, str) else value for key, value in atoms.items()}

        def access(self, resp, req, environ, request_time) -> None:
            if os.environ.get("BRIDGE_LOG_FORMAT", "plain").strip().lower() != "json":
                return super().access(resp, req, environ, request_time)
            if not self.access_log_enabled:
                return None
            atoms = self.atoms(resp, req, environ, request_time)
            self.access_log.info(
                "%s %s %s",
                atoms.get("m"),
                atoms.get("U"),
                atoms.get("s"),
                extra={
                    "method": atoms.get("m"),
                    "path": atoms.get("U"),
                    "query": atoms.get("q"),
                    "status": int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else atoms.get("s"),
                    "bytes": atoms.get("B"),
                    "duration_ms": round(request_time.total_seconds() * 1000, 1),
                    "remote": atoms.get("h"),
                    "user_agent": atoms.get("a"),
                },
            )
            return None

    class _RedactingPassThrough(logging.Formatter):
        def __init__(self, inner: logging.Formatter | None) -> None:
            super().__init__()
            self.inner = inner or logging.Formatter()

        def format(self, record: logging.LogRecord) -> str:
            return redact(self.inner.format(record))


def for_delivery(func):
    """Decorator: everything `func(delivery, ...)` logs carries the delivery's handover id and id."""

    @functools.wraps(func)
    def wrapper(delivery, *args, **kwargs):
        with log_context(handover_id=delivery.link_id, delivery_id=delivery.pk):
            return func(delivery, *args, **kwargs)

    return wrapper


def for_handover(func):
    """Decorator: everything `func(link, ...)` logs carries the handover's id."""

    @functools.wraps(func)
    def wrapper(link, *args, **kwargs):
        with log_context(handover_id=link.pk):
            return func(link, *args, **kwargs)

    return wrapper
