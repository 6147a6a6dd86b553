"""Bounded fuzzing in CI: schemathesis against the bridge's own OpenAPI schema (/api/schema/), run
in-process through the WSGI application, authenticated where the API wants it, asserting that no
request ever answers 5xx. The count is bounded (MAX_EXAMPLES per operation, derandomized) so a CI
run is repeatable and short; hand-written hostile bodies for both webhooks are in
test_hostile_webhooks.py."""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from bridge.models import CcaasEndpoint
from bridge.signing import sign

pytestmark = pytest.mark.django_db

MAX_EXAMPLES = 40
SECRET = "fuzz-secret"
DJANGO = get_wsgi_application()
CALLS: list[tuple[str, str, int]] = []
STATUSES: dict[str, set[int]] = {}


def app(environ, start_response):
    """The bridge's WSGI application, addressed by the host name Django's tests allow."""
    environ["HTTP_HOST"] = "testserver"
    return DJANGO(environ, start_response)


def load_schema():
    """The schema /api/schema/ serves (built by the same generator, without a request), called in-process."""
    from drf_spectacular.generators import SchemaGenerator

    document = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
    loaded = schemathesis.openapi.from_dict(document)
    loaded.app = app
    return loaded


schema = load_schema()


@pytest.fixture
def in_process(db, settings):
    """Keep the test's database connection across WSGI requests (as Django's test client does)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    CcaasEndpoint.objects.get_or_create(
        slug="acme",
        defaults={
            "kind": "generic",
            "config": {"base_url": "https://ccaas.example.com"},
            "credentials": {"secret": SECRET},
            "is_default": True,
        },
    )
    yield settings
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_answers_5xx(case, in_process):
    settings_ = in_process
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {settings_.BRIDGE_API_TOKEN}"}
    if "token" in (case.path_parameters or {}):
        case.path_parameters["token"] = settings_.BRIDGE_INBOUND_TOKEN
    kwargs = {}
    if "slug" in (case.path_parameters or {}):
        # Signed as the endpoint's contact center would, so the body reaches the parser.
        case.path_parameters["slug"] = "acme"
        if isinstance(case.body, dict | list | str | int | float | bool) or case.body is None:
            raw = json.dumps(case.body).encode()
            case.headers = {**case.headers, **sign(SECRET, raw), "Content-Type": "application/json"}
            kwargs["data"] = raw
    response = case.call(**kwargs)
    CALLS.append((case.method, case.path, response.status_code))
    STATUSES.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )


def test_the_fuzzing_reached_every_operation_and_stayed_bounded():
    """Runs after the fuzzing above (same module, file order): every operation was exercised,
    within the bound."""
    if not CALLS:
        pytest.skip("the fuzzing test did not run in this session (deselected)")
    per_operation: dict[str, int] = {}
    for method, path, _ in CALLS:
        per_operation[f"{method} {path}"] = per_operation.get(f"{method} {path}", 0) + 1
    print(f"schemathesis: {len(CALLS)} requests, {per_operation}, statuses {STATUSES}")
    assert {op.label for op in (r.ok() for r in schema.get_all_operations())} <= set(per_operation)
    assert all(status < 500 for _, _, status in CALLS)
    assert len(CALLS) <= 4 * MAX_EXAMPLES * 10
