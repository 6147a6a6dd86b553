"""Whether an endpoint is polled is decided in one place (`Connector.polled`, from the connector's
capabilities and the endpoint's config); the ticker, `bridge_sync` and `bridge_endpoint list` all ask
it, so an endpoint that can only hear back by polling is never left unpolled."""

from __future__ import annotations

from io import StringIO

import pytest
import responses
from django.core.management import CommandError, call_command

from bridge import periodic
from bridge.connectors import REGISTRY, connector_class
from bridge.connectors import genesys as genesys_module
from bridge.models import CcaasEndpoint, ConversationLink, State
from tests.genesys_fake import CLIENT_ID, CLIENT_SECRET, INTEGRATION_ID, WEBHOOK_SECRET, FakeGenesys

pytestmark = pytest.mark.django_db

RT = "https://rt.example.test"


def rt_endpoint(**config) -> CcaasEndpoint:
    return CcaasEndpoint.objects.create(
        slug="rt",
        kind="rt",
        config={"base_url": RT, "queue": "Support", **config},
        credentials={"token": "t"},
    )


@pytest.mark.parametrize(
    ("kind", "config", "polled"),
    [
        ("rt", {}, True),  # no webhooks: polled without saying so
        ("rt", {"mode": "poll"}, True),
        ("generic", {}, False),
        ("generic", {"mode": "poll"}, True),
        ("zendesk", {"mode": "webhook"}, False),
        ("zendesk", {"mode": "poll"}, True),
        ("chatwoot", {}, False),
        ("chatwoot", {"mode": "poll"}, True),
        ("genesys", {"mode": "webhook"}, True),  # polled to notice agent ends
        ("genesys", {}, True),
    ],
)
def test_one_decision_from_the_connector(kind, config, polled):
    assert connector_class(kind).polled(config) is polled
    endpoint = CcaasEndpoint(slug="x", kind=kind, config=config)
    assert endpoint.polled is polled
    assert periodic.polls(endpoint) is polled


def test_every_kind_can_be_heard_back_from():
    for kind in REGISTRY:
        cls = connector_class(kind)
        assert cls.capabilities.webhook or cls.polled({}), f"{kind} would never hear an agent"


@responses.activate
def test_an_rt_endpoint_without_mode_is_polled_by_the_ticker():
    endpoint = rt_endpoint()
    responses.post(f"{RT}/REST/2.0/transactions", json={"items": [{"id": 4242}], "count": 1, "page": 1})
    assert periodic.due_poll_endpoints() == [endpoint.pk]
    periodic.poll_endpoint(endpoint.pk)
    endpoint.refresh_from_db()
    assert endpoint.poll_cursor == "4242" and endpoint.last_error == ""


@responses.activate
def test_bridge_sync_polls_an_rt_endpoint_without_mode():
    endpoint = rt_endpoint()
    responses.post(f"{RT}/REST/2.0/transactions", json={"items": [{"id": 17}], "count": 1, "page": 1})
    out = StringIO()
    call_command("bridge_sync", stdout=out)
    assert "1 endpoints polled" in out.getvalue()
    endpoint.refresh_from_db()
    assert endpoint.poll_cursor == "17"


def test_bridge_sync_runs_the_genesys_close_check(fake_infobip):
    genesys_module.TOKENS.clear()
    server = FakeGenesys().start()
    try:
        endpoint = CcaasEndpoint.objects.create(
            slug="gc",
            kind="genesys",
            config={
                "base_url": server.url,
                "login_url": server.url,
                "integration_id": INTEGRATION_ID,
                "mode": "webhook",
            },
            credentials={
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "webhook_secret": WEBHOOK_SECRET,
            },
        )
        conv = fake_infobip.add_conversation()
        link = ConversationLink.objects.create(
            conversation_id=conv,
            endpoint=endpoint,
            state=State.ACTIVE,
            channel="WHATSAPP",
            customer_address="447700900123",
            business_sender="447860099299",
        )
        from bridge.connectors import get_connector
        from tests.test_genesys import context

        result = get_connector(endpoint).open_interaction(context(str(link.pk)))
        ConversationLink.objects.filter(pk=link.pk).update(
            interaction_id=result.interaction_id, interaction_data=result.data
        )
        conversation_id = result.data["conversation_id"]
        server.agent_joins(conversation_id)
        server.agent_ends(conversation_id)
        call_command("bridge_sync", stdout=StringIO())
        link.refresh_from_db()
        assert link.state == State.CLOSED
        assert fake_infobip.conversations[conv]["status"] == "CLOSED"
    finally:
        server.stop()
        genesys_module.TOKENS.clear()


def test_bridge_endpoint_list_says_whether_each_endpoint_is_polled():
    rt_endpoint()
    CcaasEndpoint.objects.create(
        slug="gen", kind="generic", config={"base_url": "https://cc.example.com"}, credentials={"secret": "x"}
    )
    out = StringIO()
    call_command("bridge_endpoint", "list", stdout=out)
    lines = {line.split("\t")[0]: line.split("\t") for line in out.getvalue().splitlines()}
    assert lines["rt"][2:4] == ["poll", "polled"]
    assert lines["gen"][2:4] == ["webhook", "not polled"]


@pytest.mark.parametrize(
    ("kind", "config", "credentials", "problem"),
    [
        (
            "rt",
            {"base_url": RT, "queue": "Q", "mode": "webhook"},
            {"token": "t"},
            "'mode' must be one of poll",
        ),
        (
            "genesys",
            {"region": "mypurecloud.com", "integration_id": "i", "mode": "poll"},
            {"client_id": "c", "client_secret": "s", "webhook_secret": "w"},
            "genesys",
        ),
        (
            "generic",
            {"base_url": "https://cc.example.com", "mode": "pull"},
            {"secret": "x"},
            "'mode' must be one of",
        ),
    ],
)
def test_a_config_that_cannot_work_is_refused_when_saved(kind, config, credentials, problem):
    import json

    with pytest.raises(CommandError, match=problem):
        call_command(
            "bridge_endpoint",
            "create",
            "e1",
            "--kind",
            kind,
            "--config",
            json.dumps(config),
            "--credentials",
            json.dumps(credentials),
            stdout=StringIO(),
        )
    assert not CcaasEndpoint.objects.filter(slug="e1").exists()
