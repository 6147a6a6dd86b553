"""Hand-written hostile bodies for both webhooks, bounded in count: no 5xx, nothing unstorable kept.

Each connector's real agent-message webhook body (the one its contract test uses) is mutated one
field at a time: every value in it is replaced by each of HOSTILE (wrong types, NUL, lone
surrogates, over-long text, huge numbers, deep nesting), then the body is correctly signed and
posted. The same is done for Infobip's account-configuration message and Subscriptions event.
Every answer must be below 500, and every row stored afterwards must read back as strict JSON.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from bridge.models import ConversationLink, Delivery, HandoverEvent, InboundEvent, Message, State
from tests.connector_contract import header_kwargs, post_webhook
from tests.test_chatwoot import TestChatwootContract as _Chatwoot
from tests.test_connector_contract_generic import TestGenericContract as _Generic
from tests.test_genesys import TestGenesysContract as _Genesys
from tests.test_rt import TestRtContract as _Rt
from tests.test_zendesk import TestZendeskContract as _Zendesk

pytestmark = pytest.mark.django_db

MUTANTS_PER_BODY = 120  # the bound: at most this many hostile bodies per webhook body
HOSTILE = (
    None,
    True,
    [],
    {},
    ["x"],
    {"x": {"y": ["z"]}},
    -1,
    10**40,
    1.5e308,
    "",
    "\x00",
    "a\ud800b",
    "x" * 5000,
    json.loads("[" * 60 + "]" * 60),
)
INFOBIP = Path(__file__).parent / "fixtures" / "infobip"


def paths(value, prefix=()):
    """Every path into a JSON value (objects and lists included)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            yield from paths(item, (*prefix, index))


def replaced(value, path, new):
    if not path:
        return new
    copied = copy.deepcopy(value)
    target = copied
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copied


def mutants(body: dict, seed: int) -> list[bytes]:
    """MUTANTS_PER_BODY bodies, each with one value replaced by a hostile one (reproducible)."""
    candidates = [(p, h) for p in paths(body) if p for h in HOSTILE]
    random.Random(seed).shuffle(candidates)
    return [json.dumps(replaced(body, p, h)).encode() for p, h in candidates[:MUTANTS_PER_BODY]]


def every_row_reads_back() -> int:
    rows = 0
    for model in (Message, InboundEvent, HandoverEvent, ConversationLink, Delivery):
        for row in model.objects.values():
            json.dumps(row, default=str, allow_nan=False).encode("utf-8")
            rows += 1
    return rows


CONTRACTS = {"generic": _Generic, "zendesk": _Zendesk, "chatwoot": _Chatwoot, "genesys": _Genesys, "rt": _Rt}


@pytest.mark.parametrize("kind", CONTRACTS)
def test_hostile_contact_center_bodies_never_answer_5xx(client, kind):
    contract = CONTRACTS[kind]()
    if kind == "genesys":
        contract.server = SimpleNamespace(url="http://127.0.0.1:9")  # never called: webhooks only
    endpoint = contract.make_endpoint()
    link = contract.active_handover(endpoint)
    if contract.webhook_skip_reason:
        body = json.dumps({"events": [{"id": "e1", "type": "agent_message"}]}).encode()
        statuses = {post_webhook(client, endpoint, m, {}).status_code for m in mutants(json.loads(body), 1)}
        assert max(statuses) < 500
        return
    base = json.loads(contract.agent_message_body(endpoint, link))
    statuses: dict[int, int] = {}
    for number, body in enumerate(mutants(base, seed=len(kind))):
        response = post_webhook(client, endpoint, body, contract.sign(endpoint, body))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (number, body[:300], response.content[:300])
    print(kind, statuses)
    assert sum(statuses.values()) == min(
        MUTANTS_PER_BODY, len(list(paths(base))) * len(HOSTILE) - len(HOSTILE)
    )
    assert every_row_reads_back() > 0
    # The handover is still usable: its unmutated agent message is stored and queued once.
    good = contract.agent_message_body(endpoint, link)
    assert post_webhook(client, endpoint, good, contract.sign(endpoint, good)).status_code == 200


@pytest.mark.parametrize(
    "name,body",
    [
        ("legacy message", json.loads((INFOBIP / "webhook_account_configuration_message.json").read_text())),
        (
            "Subscriptions event",
            {
                "type": "INBOUND_MESSAGE",
                "timestamp": "2026-01-01T10:00:00.000+00:00",
                "payload": {
                    "id": "9F1F21C198025CC026956A7E2E9C560F",
                    "channel": "WHATSAPP",
                    "assignee": {"id": "a1", "name": "Ann", "role": "AGENT"},
                    "tags": [{"name": "vip"}],
                    "message": {
                        "id": "EV-1",
                        "from": "447700900123",
                        "to": "447860099299",
                        "content": {"text": "Hello"},
                    },
                },
            },
        ),
    ],
    ids=["legacy", "subscriptions"],
)
def test_hostile_infobip_bodies_never_answer_5xx(client, settings, name, body):
    ConversationLink.objects.create(
        conversation_id="9F1F21C198025CC026956A7E2E9C560F", state=State.ACTIVE, interaction_id="int-1"
    )
    url = f"/webhooks/infobip/{settings.BRIDGE_INBOUND_TOKEN}/"
    for number, mutant in enumerate(mutants(body, seed=len(name))):
        response = client.post(url, data=mutant, content_type="application/json", **header_kwargs({}))
        assert response.status_code < 500, (number, mutant[:300], response.content[:300])
    every_row_reads_back()
