"""Shared fixtures: real local HTTP fakes for Infobip and a generic contact center, API clients."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from bridge.demo.fakes import FakeGenericCcaas, FakeInfobip
from bridge.models import CcaasEndpoint

GENERIC_SECRET = "generic-shared-secret"


@pytest.fixture
def fake_infobip(settings):
    server = FakeInfobip().start()
    settings.INFOBIP_BASE_URL = server.url
    yield server
    server.stop()


@pytest.fixture
def fake_ccaas():
    server = FakeGenericCcaas(GENERIC_SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def generic_endpoint(db, fake_ccaas):
    return CcaasEndpoint.objects.create(
        slug="acme",
        kind="generic",
        config={"base_url": fake_ccaas.base_url, "mode": "webhook"},
        credentials={"secret": GENERIC_SECRET},
        is_default=True,
    )


@pytest.fixture
def api(settings):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {settings.BRIDGE_API_TOKEN}")
    return client


@pytest.fixture
def inbound_url(settings):
    return f"/webhooks/infobip/{settings.BRIDGE_INBOUND_TOKEN}/"


@pytest.fixture
def fast_retries(settings):
    """Compressed timers, as the fault suite runs them."""
    settings.BRIDGE_RETRY_BASE_SECONDS = 0.01
    settings.BRIDGE_RETRY_MAX_SECONDS = 0.05
    return settings
