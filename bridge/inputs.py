"""What the bridge accepts from outside, checked before anything is stored.

A value is accepted only if both supported databases (SQLite and PostgreSQL) can store it *and*
give it back to Python. The rules, applied at every edge (both webhooks, the escalation API,
contact-center polls, Infobip's Get Messages):

- JSON bodies: strict RFC 8259 (`NaN`, `Infinity` and numbers beyond a double, such as `1e400`, are
  refused), nested at most MAX_DEPTH levels. Refused with 400.
- Ids and types: non-empty text of at most the column's size, without NUL or lone surrogates.
  A message or event whose id or type does not fit is refused (400 at a webhook; skipped and recorded
  as a refused event when polled), never truncated: truncating an id could merge two messages.
- Everything else (message content, raw payloads, names): stored with the offending value normalised
  (NUL and lone surrogates become U+FFFD, a non-finite number becomes null, an over-long name is
  shortened, a time outside EARLIEST..now+FUTURE_SLACK becomes the time it was received), and the
  change is written where the operator sees it (the handover's timeline, the event's note, the log).

Why: PostgreSQL refuses NUL in text and `\\u0000` in jsonb; neither database's driver can encode a lone
surrogate; SQLite's JSON functions turn NaN into a value the read-back cannot parse; a timestamp
whose UTC form falls outside years 1..9999 is stored by PostgreSQL and then cannot be read by Python.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from bridge.exceptions import WebhookError
from bridge.types import CcaasEvent

MAX_DEPTH = 64  # JSON nesting accepted at the edge; real payloads of every vendor stay below 15
ID_MAX = 255  # every id column (external_id, conversation_id, interaction_id, event_id)
TYPE_MAX = 64  # content_type, InboundEvent.type
NAME_MAX = 255  # author_name, customer names
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)  # clocks differ; a message "from tomorrow" is still plausible
REPLACEMENT = "\ufffd"

_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")


class InputError(WebhookError):
    """A value that cannot be stored and cannot be normalised (an id, a type, a JSON body): 400."""


# --- JSON bodies -----------------------------------------------------------------------------------
def _refuse_constant(name: str) -> Any:
    raise InputError(f"body is not valid JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"body is not valid JSON: the number {text[:40]} is beyond the range of a double")
    return value


def nesting_depth_exceeds(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects deeper than `limit` (strings are skipped).

    Runs in C-speed passes (one per level, at most `limit + 1`), so a 10,000-level body costs no
    recursion and little time; Python's own parser would raise RecursionError on it.
    """
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = _INNERMOST_PAIR.sub(b"", brackets)
    return bool(brackets)


def load_json(body: bytes | str) -> Any:
    """Parse a request body strictly; InputError (400) for anything the bridge cannot store.

    Refuses invalid UTF-8, invalid JSON, `NaN`/`Infinity`, numbers that overflow a double and
    nesting deeper than MAX_DEPTH.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    if nesting_depth_exceeds(raw):
        raise InputError(f"body is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except InputError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError("body is not valid JSON") from exc


# --- values ----------------------------------------------------------------------------------------
def unstorable_text(value: str) -> str:
    """Why this text cannot be stored ("" when it can): NUL or a lone surrogate."""
    match = _UNSTORABLE_TEXT.search(value)
    if match is None:
        return ""
    return "contains NUL" if match.group() == "\x00" else "contains a lone surrogate"


def clean_text(value: str) -> str:
    return _UNSTORABLE_TEXT.sub(REPLACEMENT, value)


def check_id(value: Any, what: str, *, max_length: int = ID_MAX, required: bool = True) -> str:
    """An id as text, or InputError: ids are never normalised (that could merge two messages)."""
    if value is None or value == "":
        if required:
            raise InputError(f"{what} is missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError(f"{what} must be a string, not {type(value).__name__}")
    text = str(value)
    if len(text) > max_length:
        raise InputError(f"{what} is longer than {max_length} characters ({len(text)})")
    problem = unstorable_text(text)
    if problem:
        raise InputError(f"{what} {problem}")
    return text


@dataclass
class Changes:
    """What normalisation changed, as short sentences for the operator (no content quoted)."""

    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        if len(self.items) < 20:
            self.items.append(text)
        elif len(self.items) == 20:
            self.items.append("and more")

    def __bool__(self) -> bool:
        return bool(self.items)

    def text(self) -> str:
        return "; ".join(self.items)


def clean_json(value: Any, changes: Changes, where: str = "", depth: int = 0) -> Any:
    """`value` with everything neither database can store or give back replaced, noting each change.

    Strings and keys: NUL and lone surrogates become U+FFFD. Floats: NaN and infinities become
    null. Anything nested deeper than MAX_DEPTH becomes null. Other JSON values pass unchanged.
    """
    if isinstance(value, str):
        problem = unstorable_text(value)
        if problem:
            changes.add(f"{where or 'value'} {problem} (replaced by U+FFFD)")
            return clean_text(value)
        return value
    if isinstance(value, float) and not math.isfinite(value):
        changes.add(f"{where or 'value'} is {value} (replaced by null)")
        return None
    if isinstance(value, dict | list) and depth >= MAX_DEPTH:
        changes.add(f"{where or 'value'} is nested deeper than {MAX_DEPTH} levels (replaced by null)")
        return None
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            name = str(key)
            if unstorable_text(name):
                changes.add(f"a key of {where or 'the object'} {unstorable_text(name)} (replaced by U+FFFD)")
                name = clean_text(name)
            cleaned[name] = clean_json(item, changes, f"{where}.{name}" if where else name, depth + 1)
        return cleaned
    if isinstance(value, list | tuple):
        return [clean_json(item, changes, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    return value


def clean_name(value: Any, what: str, changes: Changes, max_length: int = NAME_MAX) -> str:
    """Display text (names, labels): normalised and shortened to the column, never refused."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if unstorable_text(text):
        changes.add(f"{what} {unstorable_text(text)} (replaced by U+FFFD)")
        text = clean_text(text)
    if len(text) > max_length:
        changes.add(f"{what} was longer than {max_length} characters (shortened)")
        text = text[:max_length]
    return text


def sane_time(value: datetime, what: str, changes: Changes, *, now: datetime | None = None) -> datetime:
    """`value` if it lies between EARLIEST and now + FUTURE_SLACK (in UTC), else the time received.

    Outside that range PostgreSQL may store a timestamp Python cannot read back (year 10000 after
    conversion to UTC), and a time far ahead would hold back reconciliation and ordering.
    """
    now = now or timezone.now()
    try:
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is not None and EARLIEST <= utc <= now + FUTURE_SLACK:
        return utc
    changes.add(f"{what} {_time_text(value)} is outside the accepted range (replaced by the time received)")
    return now


def _time_text(value: datetime) -> str:
    try:
        return value.isoformat()
    except (OverflowError, ValueError):
        return repr(value)


# --- shapes ----------------------------------------------------------------------------------------
def describe_errors(errors: Any, prefix: str = "") -> str:
    """DRF serializer errors as one line: `message.agent: Expected a dictionary ...; id: ...`."""
    parts: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, sub in node.items():
                name = "" if key == "non_field_errors" else str(key)
                walk(sub, f"{path}.{name}" if path and name else (path or name))
        elif isinstance(node, list) and node and all(isinstance(x, str) for x in node):
            parts.append(f"{path}: {' '.join(str(x) for x in node)}" if path else " ".join(map(str, node)))
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                if sub:
                    walk(sub, f"{path}[{i}]")
        else:
            parts.append(f"{path}: {node}" if path else str(node))

    walk(errors, prefix)
    return "; ".join(parts)[:1000] or "invalid"


def validated(serializer_class: type, data: Any, what: str) -> dict[str, Any]:
    """`data` checked by a DRF serializer (types and sizes of every field); InputError (400) if not."""
    if not isinstance(data, dict):
        raise InputError(f"{what} must be a JSON object, not {type(data).__name__}")
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise InputError(f"{what}: {describe_errors(serializer.errors)}")
    return serializer.validated_data


class DisplayText(serializers.CharField):
    """Text shown to people (names, statuses): must be text, is never refused for its characters.

    NUL and lone surrogates are replaced and the text shortened to `max_length` (instead of DRF's
    refusal), since losing a customer's message over an agent's display name would be worse.
    """

    def __init__(self, *, max_length: int = NAME_MAX, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("allow_blank", True)
        super().__init__(trim_whitespace=False, **kwargs)
        self.display_max = max_length
        self.validators = []

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, bool) or not isinstance(data, str | int | float):
            self.fail("invalid")
        return clean_text(str(data))[: self.display_max]


# --- contact-center events -------------------------------------------------------------------------
def normalise_event(event: CcaasEvent) -> tuple[CcaasEvent, Changes]:
    """A contact-center event made storable: InputError if an id or type cannot be stored, else the
    event with its content, names and raw payload normalised, and what was changed."""
    if event.refusal:
        raise InputError(event.refusal)
    check_id(event.id, "event id")
    check_id(event.original_type or event.type.value, "event type", max_length=TYPE_MAX)
    check_id(event.interaction_id, "interactionId", required=False)
    changes = Changes()
    message = event.message
    if message is not None:
        check_id(message.id, "message id")
        check_id(message.content_type, "message contentType", max_length=TYPE_MAX)
        message = replace(
            message,
            content=clean_json(
                message.content if isinstance(message.content, dict) else {}, changes, "content"
            ),
            agent_name=clean_name(message.agent_name, "agent name", changes) or None,
            agent_id=clean_name(message.agent_id, "agent id", changes, ID_MAX) or None,
        )
    raw = clean_json(event.raw, changes, "payload")
    return replace(event, message=message, raw=raw if isinstance(raw, dict) else {"value": raw}), changes


class StrictJSONParser(JSONParser):
    """DRF's JSON parser with the edge's rules (load_json): depth, finite numbers, valid UTF-8."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        body = stream.read() if stream is not None else b""
        try:
            return load_json(body)
        except InputError as exc:
            raise ParseError(str(exc)) from exc


def storable_json_problem(value: Any, where: str) -> str:
    """Why `value` cannot be stored as it is ("" when it can): for callers that refuse, not normalise."""
    changes = Changes()
    clean_json(value, changes, where)
    return changes.items[0].rsplit(" (", 1)[0] if changes else ""
