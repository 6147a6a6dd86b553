"""The vendor documents the tests validate against are in the repository, whole enough to validate with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.openapi import SPECS_DIR, load_spec, schema_at

TESTS = Path(__file__).resolve().parent
DOCUMENTS = sorted(p.name for p in SPECS_DIR.glob("*-openapi.*"))


def test_every_document_a_test_names_is_in_tests_specs():
    named = set()
    for source in TESTS.rglob("*.py"):
        named.update(re.findall(r"[\"']([a-z-]+-openapi\.(?:json|yml))[\"']", source.read_text()))
    named.discard("")
    assert named, "no test names a vendor document"
    assert named <= set(DOCUMENTS), f"named but not in tests/specs: {sorted(named - set(DOCUMENTS))}"


@pytest.mark.parametrize("name", DOCUMENTS)
def test_each_document_has_its_source_and_resolves_every_reference(name):
    readme = (SPECS_DIR / "README.md").read_text()
    row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}`")), None)
    assert row is not None, f"{name} has no row in tests/specs/README.md"
    assert re.search(r"\| 20\d\d-\d\d-\d\d \|$", row), f"{name}: no retrieval date"
    spec = load_spec(name)
    refs = set(re.findall(r"\"\$ref\": \"(#[^\"]+)\"", json.dumps(spec)))
    assert refs
    for ref in refs:
        schema_at(name, ref)  # raises KeyError for a reference trimming cut off


def test_the_conversations_document_keeps_the_external_bot_operations():
    paths = load_spec("infobip-conversations-openapi.json")["paths"]
    assert set(paths["/ccaas/1/bots"]) >= {"get", "post"}
    assert set(paths["/ccaas/1/bots/{botId}"]) >= {"get", "put", "delete"}
