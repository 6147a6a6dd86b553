"""The generic connector passes the shared connector contract."""

from __future__ import annotations

from contextlib import contextmanager

import responses

from bridge.models import CcaasEndpoint
from bridge.signing import sign
from tests.connector_contract import ConnectorContract, json_bytes

BASE_URL = "https://ccaas.example.test/bridge"
SECRET = "generic-contract-secret"


class TestGenericContract(ConnectorContract):
    kind = "generic"

    def make_endpoint(self) -> CcaasEndpoint:
        return CcaasEndpoint.objects.create(
            slug="generic-contract",
            kind="generic",
            config={"base_url": BASE_URL, "mode": "webhook"},
            credentials={"secret": SECRET},
        )

    def sign(self, endpoint, body, *, valid=True):
        return sign(SECRET if valid else "not-the-secret", body)

    def unknown_event_body(self, endpoint):
        return json_bytes(
            {"events": [{"id": "evt-unknown-1", "type": "agent_joined", "interactionId": "1001"}]}
        )

    def agent_message_body(self, endpoint, link):
        return json_bytes(
            {
                "events": [
                    {
                        "id": "evt-agent-1",
                        "type": "agent_message",
                        "interactionId": link.interaction_id,
                        "message": {
                            "id": "agent-msg-1",
                            "contentType": "TEXT",
                            "content": {"text": "Hello"},
                            "agent": {"id": "a1", "name": "Bo"},
                        },
                    }
                ]
            }
        )

    @contextmanager
    def failing_send(self, endpoint, link, status):
        with responses.RequestsMock() as mock:
            mock.add(
                responses.POST,
                f"{BASE_URL}/interactions/{link.interaction_id}/messages",
                json={"error": "failing on purpose"},
                status=status,
            )
            yield
