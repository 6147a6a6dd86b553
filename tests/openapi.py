"""Check what the bridge sends (and what the tests feed it) against the vendors' OpenAPI documents.

The documents are in `tests/specs/` (trimmed copies of the vendors' published files; their sources
and retrieval dates are in tests/specs/README.md). One validator for every vendor:

    from tests.openapi import assert_conforms, validate_request, validate_schema

    validate_request("infobip-conversations-openapi.json", "POST",
                     "/ccaas/1/conversations/abc/messages", body={...})
    assert_conforms("zendesk-support-openapi.json", request)   # a requests.PreparedRequest, e.g. in a
                                                                # `responses` callback
    validate_schema("infobip-common-assets-openapi.json", "#/components/schemas/X", payload)

`validate_request` finds the operation whose path template matches `path` (the most literal one when
several do; query strings in `path` are merged into `query`), then checks path parameters, query
parameters (required ones present, no undeclared ones, values of the declared type/enum) and the JSON
body against the operation's request body schema (OpenAPI 3.0 or 3.1 rules, as the document declares).
It returns the operation object. `assert_conforms` does the same for a sent request object.

A mismatch fails the test with `pytest.fail` and a readable message. `pytest.fail` raises an
exception that is not an `Exception`, so a fake answering inside the bridge's own HTTP call cannot have
the failure swallowed by the bridge's error handling.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import yaml
from openapi_schema_validator import OAS30Validator, OAS31Validator

SPECS_DIR = Path(__file__).resolve().parent / "specs"

# (body path regex, error message regex): known defects of a vendor's document, each explained at
# the call site; nothing else is ever tolerated.
Ignore = tuple[tuple[str, str], ...]


@functools.cache
def load_spec(spec_name: str) -> dict[str, Any]:
    """The parsed document `tests/specs/<spec_name>` (JSON, or YAML for .yml/.yaml)."""
    path = SPECS_DIR / spec_name
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yml", ".yaml"):
        return yaml.safe_load(text)
    return json.loads(text)


def _resolve(spec: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node and len(node) == 1:
        node = _pointer(spec, node["$ref"])
    return node


def _pointer(spec: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        pytest.fail(f"external $ref not supported: {ref}")
    node: Any = spec
    for part in ref.lstrip("#/").split("/"):
        if not part:
            continue
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        node = node[part]
    return node


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    # Parameter names may contain characters not allowed in group names; normalise them.
    pattern = re.sub(r"\(\?P<([^>]+)>", lambda m: "(?P<" + re.sub(r"\W", "_", m.group(1)) + ">", pattern)
    return re.compile("^" + pattern + "$")


def find_operation(spec_name: str, method: str, path: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The (template, operation, path params) of the operation matching `method` and `path`."""
    spec = load_spec(spec_name)
    method = method.lower()
    candidates = []
    for template, item in spec.get("paths", {}).items():
        match = _template_regex(template).match(path)
        if match and method in item:
            # The most literal template wins (/tickets/show_many over /tickets/{ticket_id}).
            candidates.append((template.count("{"), template, item, match.groupdict()))
    if not candidates:
        pytest.fail(f"{method.upper()} {path} matches no operation of {spec_name}")
    candidates.sort(key=lambda c: c[0])
    _, template, item, params = candidates[0]
    operation = dict(item[method])
    operation["_path_parameters"] = item.get("parameters", [])
    return template, operation, {k: unquote(v) for k, v in params.items()}


def _validator(spec: dict[str, Any], schema: Any):
    # Local "#/components/..." references resolve against the root of the schema being validated,
    # so carry the document's reusable parts along with it.
    root = {k: v for k, v in spec.items() if k in ("components", "paths", "webhooks", "definitions")}
    if isinstance(schema, dict):
        root.update(schema)
    else:  # a boolean schema
        root = {"allOf": [schema], **root}
    if str(spec.get("openapi", "3.1.0")).startswith("3.0"):
        return OAS30Validator(root)
    return OAS31Validator(root)


def _check(spec: dict[str, Any], schema: Any, instance: Any, what: str, ignore: Ignore = ()) -> None:
    validator = _validator(spec, schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    errors = [
        e
        for e in errors
        if not any(
            re.fullmatch(path, "/".join(map(str, e.path))) and re.search(message, e.message)
            for path, message in ignore
        )
    ]
    if errors:
        details = "; ".join(
            f"{'/'.join(map(str, e.path)) or '<root>'}: {(e.message if len(e.message) <= 300 else e.message[:120] + ' ... ' + e.message[-180:])}"
            for e in errors[:5]
        )
        pytest.fail(f"{what} does not match the spec: {details}")


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "boolean":
            return {"true": True, "false": False}[value.lower()]
    except (ValueError, KeyError):
        return value
    if kind == "array":
        items = schema.get("items", {})
        return [_coerce(v, items) for v in value.split(",")]
    return value


def validate_request(
    spec_name: str,
    method: str,
    path: str,
    query: dict[str, Any] | list[tuple[str, Any]] | None = None,
    body: Any = None,
    ignore: Ignore = (),
    prose_query: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Assert that a request matches an operation of `spec_name`; return the operation.

    `path` may be a full URL (scheme and host are ignored) and may carry a query string.
    `query` maps names to a value or a list of values. `body` is the decoded JSON body (or None).
    `ignore` lists known defects of the document as (body path regex, error message regex) pairs;
    `prose_query` names query parameters the vendor documents only in prose (not as parameters), which
    are then accepted without a type check.
    """
    spec = load_spec(spec_name)
    parts = urlsplit(path)
    pairs: list[tuple[str, Any]] = parse_qsl(parts.query, keep_blank_values=True)
    if isinstance(query, dict):
        for name, value in query.items():
            for v in value if isinstance(value, (list, tuple)) else [value]:
                pairs.append((name, v))
    elif query:
        pairs.extend(query)
    template, operation, path_params = find_operation(spec_name, method, parts.path)
    where = f"{method.upper()} {template} ({operation.get('operationId')})"

    parameters = [
        _resolve(spec, p) for p in operation.get("_path_parameters", []) + operation.get("parameters", [])
    ]
    declared_query = {p["name"]: p for p in parameters if p.get("in") == "query"}
    for param in parameters:
        if param.get("in") == "path":
            value = path_params.get(re.sub(r"\W", "_", param["name"]))
            if value is None or value == "":
                pytest.fail(f"{where}: path parameter {param['name']} is empty")
            schema = _resolve(spec, param.get("schema", {}))
            _check(spec, schema, _coerce(value, schema), f"{where} path parameter {param['name']}")
        elif (
            param.get("in") == "query"
            and param.get("required")
            and not any(name == param["name"] for name, _ in pairs)
        ):
            pytest.fail(f"{where}: required query parameter {param['name']} is missing")

    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(str(value))
    for name, values in grouped.items():
        param = declared_query.get(name)
        if param is None and name in prose_query:
            continue
        if param is None:
            pytest.fail(f"{where}: query parameter {name!r} is not declared by the spec")
        schema = _resolve(spec, param.get("schema", {}))
        if schema.get("type") == "array" or (
            isinstance(schema.get("type"), list) and "array" in schema["type"]
        ):
            items = schema.get("items", {})
            value: Any = [_coerce(v, _resolve(spec, items)) for joined in values for v in joined.split(",")]
        else:
            if len(values) > 1:
                pytest.fail(f"{where}: query parameter {name!r} repeated but not an array")
            value = _coerce(values[0], schema)
        _check(spec, schema, value, f"{where} query parameter {name}")

    request_body = _resolve(spec, operation.get("requestBody"))
    if request_body:
        content = request_body.get("content", {})
        media = content.get("application/json") or next((v for k, v in content.items() if "json" in k), {})
        if body is None:
            if request_body.get("required"):
                pytest.fail(f"{where}: request body is required")
        elif "schema" in media:
            _check(spec, media["schema"], body, f"{where} request body", ignore)
    elif body not in (None, b"", ""):
        pytest.fail(f"{where}: operation takes no request body")
    return operation


def assert_conforms(
    spec_name: str, request: Any, *, prefix: str = "", ignore: Ignore = (), prose_query: tuple[str, ...] = ()
) -> str:
    """Validate one sent request (a `requests.PreparedRequest`: method, URL, JSON body) against
    `spec_name`; return the operationId it matched. `prefix` is a server path prefix to strip."""
    parts = urlsplit(request.url)
    path = parts.path
    if prefix and path.startswith(prefix):
        path = path[len(prefix) :]
    raw = request.body
    if isinstance(raw, bytes):
        raw = raw.decode()
    body = json.loads(raw) if raw else None
    target = path + (f"?{parts.query}" if parts.query else "")
    operation = validate_request(
        spec_name, request.method, target, body=body, ignore=ignore, prose_query=prose_query
    )
    return operation.get("operationId") or f"{request.method} {path}"


def validate_schema(spec_name: str, pointer: str, instance: Any) -> None:
    """Assert that `instance` matches the schema at JSON pointer `pointer` (e.g. '#/components/schemas/X')."""
    spec = load_spec(spec_name)
    _check(spec, _pointer(spec, pointer), instance, pointer)


def schema_at(spec_name: str, pointer: str) -> Any:
    """The (resolved) node at `pointer` of a spec."""
    spec = load_spec(spec_name)
    return _resolve(spec, _pointer(spec, pointer))
