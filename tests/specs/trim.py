"""Trim a vendor's published OpenAPI document to the operations the bridge and its tests use.

    python tests/specs/trim.py <downloaded vendor file> tests/specs/<name>

Keeps the operations listed in `KEEP` below for that file name (path templates, or prefixes ending
in `*`), the webhooks listed there, every component they reference (transitively, including the
targets of discriminator mappings) and every security scheme; everything else is dropped. Nothing
that is kept is changed, so a kept schema is exactly the vendor's. The output is JSON with one-space
indentation, or YAML for `.yml` names, in the vendor's key order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

KEEP: dict[str, dict[str, list[str]]] = {
    "infobip-conversations-openapi.json": {
        "paths": [
            "/ccaas/1/conversations*",
            "/ccaas/1/tags*",
            "/ccaas/1/bots*",  # external-bot mode
            "/ccaas/1/queues*",
            "/ccaas/1/agents",
            "/ccaas/1/agents/{agentId}",
            "/ccaas/1/account/configuration",
        ],
    },
    "infobip-common-assets-openapi.json": {"paths": [], "webhooks": ["conversation-event-webhook"]},
    "infobip-subscriptions-api-openapi.json": {
        "paths": [
            "/subscriptions/1/subscription*",
            "/subscriptions/1/profiles*",
            "/subscriptions/1/security*",
        ],
    },
    "zendesk-support-openapi.json": {
        "paths": [
            "/api/v2/tickets",
            "/api/v2/tickets/{ticket_id}",
            "/api/v2/tickets/{ticket_id}/comments",
            "/api/v2/tickets/{ticket_id}/tags",
            "/api/v2/tickets/{ticket_id}/audits",
            "/api/v2/tickets/show_many",
            "/api/v2/tickets/update_many",
            "/api/v2/incremental/tickets/cursor",
            "/api/v2/incremental/ticket_events",
            "/api/v2/search*",
            "/api/v2/users/me",
            "/api/v2/users/create_or_update",
            "/api/v2/users/{user_id}",
            "/api/v2/users/show_many",
            "/api/v2/webhooks*",
        ],
    },
    "chatwoot-application-api-openapi.yml": {
        "paths": [
            "/api/v1/profile",
            "/api/v1/accounts/{account_id}/contacts*",
            "/api/v1/accounts/{account_id}/conversations*",
            "/api/v1/accounts/{account_id}/inboxes*",
            "/api/v1/accounts/{account_id}/webhooks*",
            "/api/v1/accounts/{account_id}/agent_bots*",
        ],
    },
}


def _wanted(template: str, patterns: list[str]) -> bool:
    return any(template.startswith(p[:-1]) if p.endswith("*") else template == p for p in patterns)


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            elif key == "mapping" and isinstance(value, dict):
                found.update(v for v in value.values() if isinstance(v, str) and v.startswith("#/"))
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _component(ref: str) -> tuple[str, str] | None:
    parts = ref.split("/")
    if ref.startswith("#/components/") and len(parts) >= 4:
        return parts[2], parts[3].replace("~1", "/").replace("~0", "~")
    return None


def trim(spec: dict[str, Any], keep: dict[str, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("openapi", "info", "jsonSchemaDialect", "servers", "security"):
        if key in spec:
            out[key] = spec[key]
    paths = {t: item for t, item in spec.get("paths", {}).items() if _wanted(t, keep.get("paths", []))}
    missing = [p for p in keep.get("paths", []) if not p.endswith("*") and p not in paths]
    if missing:
        raise SystemExit(f"not in the source: {missing}")
    out["paths"] = paths
    if keep.get("webhooks"):
        out["webhooks"] = {name: spec["webhooks"][name] for name in keep["webhooks"]}
    components = spec.get("components", {})
    kept: dict[str, dict[str, Any]] = {}
    if "securitySchemes" in components:
        kept["securitySchemes"] = dict(components["securitySchemes"])
    todo: set[str] = set()
    _refs({k: v for k, v in out.items() if k in ("paths", "webhooks")}, todo)
    done: set[str] = set()
    while todo:
        ref = todo.pop()
        if ref in done:
            continue
        done.add(ref)
        where = _component(ref)
        if where is None:
            continue
        section, name = where
        node = components.get(section, {}).get(name)
        if node is None:
            continue
        kept.setdefault(section, {})[name] = node
        _refs(node, todo)
    # Keep the vendor's order of sections and of names within them.
    out["components"] = {
        section: {n: v for n, v in components[section].items() if n in kept[section]}
        for section in components
        if section in kept
    }
    if "tags" in spec:
        used = {
            tag
            for item in paths.values()
            for op in item.values()
            if isinstance(op, dict)
            for tag in op.get("tags", [])
        }
        out["tags"] = [t for t in spec["tags"] if t.get("name") in used]
    return out


def main(source: str, target: str) -> None:
    name = Path(target).name
    text = Path(source).read_text(encoding="utf-8")
    spec = yaml.safe_load(text) if name.endswith((".yml", ".yaml")) else json.loads(text)
    trimmed = trim(spec, KEEP[name])
    if name.endswith((".yml", ".yaml")):
        body = yaml.safe_dump(trimmed, sort_keys=False, allow_unicode=True, width=110)
    else:
        body = json.dumps(trimmed, indent=1, ensure_ascii=False) + "\n"
    Path(target).write_text(body, encoding="utf-8")
    print(
        f"{name}: {len(trimmed['paths'])} paths, {sum(map(len, trimmed['components'].values()))} components"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
