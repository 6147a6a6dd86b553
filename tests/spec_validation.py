"""Check a request the bridge built against a vendor's OpenAPI document (../shared/specs/).

    spec = load_spec("zendesk-support-openapi.json")      # skips the test when the folder is absent
    assert_conforms(spec, request)                         # a requests.PreparedRequest, e.g. from
                                                           # responses.calls[i].request

It finds the operation whose path template and method match the URL (after an optional server
prefix), checks the required path and query parameters, and validates the JSON body against the
operation's requestBody schema (OpenAPI 3.0 rules: nullable, readOnly ignored, $ref resolved).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPECS_DIR = Path(__file__).resolve().parents[2] / "shared" / "specs"
SPEC_URI = "urn:vendor-spec"


@cache
def _load(name: str) -> dict[str, Any]:
    path = SPECS_DIR / name
    text = path.read_text()
    return json.loads(text) if name.endswith(".json") else yaml.safe_load(text)


def load_spec(name: str) -> dict[str, Any]:
    if not (SPECS_DIR / name).exists():
        pytest.skip(f"vendor spec {name} not found in {SPECS_DIR}; requests cannot be checked against it")
    return _load(name)


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{[^}]+\\\}", r"[^/]+", re.escape(template))
    return re.compile(f"^{pattern}$")


def find_operation(spec: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any], dict]:
    """(path template, operation, path item) for a concrete path; fails the test when none matches."""
    matches = []
    for template, item in spec.get("paths", {}).items():
        if method.lower() in item and _template_regex(template).match(path):
            matches.append((template.count("{"), template, item))
    if not matches:
        pytest.fail(f"{method} {path} is not an operation of the vendor's spec")
    # The most literal template wins (/tickets/show_many over /tickets/{ticket_id}).
    _, template, item = sorted(matches, key=lambda m: m[0])[0]
    return template, item[method.lower()], item


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def validate_body(
    spec: dict[str, Any], schema: dict[str, Any], body: Any, ignore: tuple[tuple[str, str], ...] = ()
) -> None:
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT4))
    wrapped = _rewrite_refs(schema)
    validator = OAS30Validator(wrapped, registry=registry)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    errors = [
        e
        for e in errors
        if not any(
            re.fullmatch(path, "/".join(map(str, e.path))) and re.search(message, e.message)
            for path, message in ignore
        )
    ]
    if errors:
        pytest.fail(
            "request body does not conform to the vendor's spec:\n"
            + "\n".join(f"- {'/'.join(map(str, e.path)) or '(body)'}: {e.message}" for e in errors[:10])
        )


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                f"{SPEC_URI}{v}"
                if k == "$ref" and isinstance(v, str) and v.startswith("#")
                else _rewrite_refs(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def assert_conforms(
    spec: dict[str, Any], request: Any, *, prefix: str = "", ignore: tuple[tuple[str, str], ...] = ()
) -> str:
    """Validate one sent request (method, URL, JSON body); return the operationId it matched.

    `ignore`: (body path regex, error message regex) pairs for known defects of a vendor's spec,
    each with its reason at the call site; nothing else is ever tolerated."""
    parts = urlsplit(request.url)
    path = parts.path
    if prefix and path.startswith(prefix):
        path = path[len(prefix) :]
    template, operation, item = find_operation(spec, request.method, path)
    query = parse_qs(parts.query)
    for raw in [*item.get("parameters", []), *operation.get("parameters", [])]:
        param = _resolve(spec, raw)
        if param.get("in") == "query" and param.get("required") and param["name"] not in query:
            pytest.fail(f"{request.method} {template}: required query parameter {param['name']!r} missing")
    body_spec = operation.get("requestBody")
    raw_body = request.body
    if body_spec:
        body_spec = _resolve(spec, body_spec)
        content = body_spec.get("content", {})
        json_media = next((v for k, v in content.items() if "json" in k), None)
        if json_media and "schema" in json_media:
            if not raw_body:
                if body_spec.get("required"):
                    pytest.fail(f"{request.method} {template}: a JSON body is required")
            else:
                if isinstance(raw_body, bytes):
                    raw_body = raw_body.decode()
                validate_body(spec, json_media["schema"], json.loads(raw_body), ignore)
    return operation.get("operationId", f"{request.method} {template}")
