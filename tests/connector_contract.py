"""The contract every connector passes: a base test class that each connector's tests subclass.

A subclass says how to talk to its contact center; this class supplies the tests:

- a webhook with a bad signature is refused with 403 and nothing is stored;
- an unknown event is stored (an InboundEvent row) and answered 200;
- a 503 on send_customer_message is a TransientError, and the delivery goes back to PENDING with
  attempts 1 and a next_attempt_at in the future;
- a 401 is an UpstreamAuthError, and the endpoint's auth_failed flag is set;
- the same webhook twice (or the same poll page twice) stores one row and one message only.

How to write a subclass (every method gets the endpoint the subclass built)::

    class TestAcmeContract(ConnectorContract):
        kind = "acme"

        def make_endpoint(self) -> CcaasEndpoint:            # required
            return CcaasEndpoint.objects.create(slug="acme", kind="acme", config=..., credentials=...)

        def sign(self, endpoint, body, *, valid=True) -> dict[str, str]:   # webhook connectors
            '''Request headers (plain names, e.g. "X-Acme-Signature") that sign `body`; with
            valid=False, headers whose signature must be refused.'''

        def unknown_event_body(self, endpoint) -> bytes:     # webhook connectors
        def agent_message_body(self, endpoint, link) -> bytes:  # webhook connectors; one agent
            '''message for the interaction of `link` (an ACTIVE handover built by active_handover).'''

        @contextmanager
        def failing_send(self, endpoint, link, status):      # required
            '''While inside, the call send_customer_message makes answers HTTP `status`
            (use `responses`, or fault injection on a local fake).'''

Optional overrides: `interaction_id(endpoint)` and `interaction_data(endpoint)` (what
open_interaction would have returned; defaults "1001" and {}), `customer_message_content()`, and
`serving_agent_message_poll(endpoint, link)`, a context manager under which `connector.poll`
returns one agent message for `link` whatever the cursor (used by the duplicate test of
connectors that have no webhooks).

Connectors whose agent replies arrive only by polling set `webhook_skip_reason = "..."`: the
webhook tests are then skipped with that reason, and the duplicate test runs through polling.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.test import Client
from django.utils import timezone

from bridge import delivery, periodic
from bridge.connectors import get_connector
from bridge.exceptions import TransientError, UpstreamAuthError
from bridge.handlers import interaction_ref, to_infobip_message
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, InboundEvent, Message, State

CUSTOMER = "447700900123"
BUSINESS = "447860099299"


def header_kwargs(headers: dict[str, str]) -> dict[str, str]:
    """Plain header names as the Django test client wants them (HTTP_X_...)."""
    return {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}


def post_webhook(client: Client, endpoint: CcaasEndpoint, body: bytes, headers: dict[str, str]):
    return client.post(
        f"/webhooks/ccaas/{endpoint.slug}/",
        data=body,
        content_type="application/json",
        **header_kwargs(headers),
    )


@pytest.mark.django_db
class ConnectorContract:
    """Base class; see the module docstring. Not collected by itself (no Test prefix)."""

    kind: str = ""
    webhook_skip_reason: str | None = None

    # --- what a subclass provides --------------------------------------------------------------
    def make_endpoint(self) -> CcaasEndpoint:
        raise NotImplementedError

    def sign(self, endpoint: CcaasEndpoint, body: bytes, *, valid: bool = True) -> dict[str, str]:
        raise NotImplementedError

    def unknown_event_body(self, endpoint: CcaasEndpoint) -> bytes:
        raise NotImplementedError

    def agent_message_body(self, endpoint: CcaasEndpoint, link: ConversationLink) -> bytes:
        raise NotImplementedError

    @contextmanager
    def failing_send(self, endpoint: CcaasEndpoint, link: ConversationLink, status: int) -> Iterator[None]:
        raise NotImplementedError
        yield  # pragma: no cover

    @contextmanager
    def serving_agent_message_poll(self, endpoint: CcaasEndpoint, link: ConversationLink) -> Iterator[None]:
        raise NotImplementedError
        yield  # pragma: no cover

    def interaction_id(self, endpoint: CcaasEndpoint) -> str:
        return "1001"

    def interaction_data(self, endpoint: CcaasEndpoint) -> dict:
        return {}

    def customer_message_content(self) -> dict:
        return {"text": "Is anyone there?"}

    # --- helpers -------------------------------------------------------------------------------
    def _skip_without_webhooks(self) -> None:
        if self.webhook_skip_reason:
            pytest.skip(self.webhook_skip_reason)

    def active_handover(self, endpoint: CcaasEndpoint) -> ConversationLink:
        """An ACTIVE handover on `endpoint`, as handle_open leaves it."""
        now = timezone.now()
        return ConversationLink.objects.create(
            conversation_id=f"conv-contract-{endpoint.slug}",
            endpoint=endpoint,
            interaction_id=self.interaction_id(endpoint),
            interaction_data=self.interaction_data(endpoint),
            state=State.ACTIVE,
            channel="WHATSAPP",
            customer_address=CUSTOMER,
            customer_name="Ana",
            business_sender=BUSINESS,
            opened_at=now,
        )

    def queued_customer_message(self, link: ConversationLink) -> Delivery:
        """A customer message of `link` waiting in the lane to the contact center."""
        now = timezone.now()
        row = Message.objects.create(
            link=link,
            source=Message.Source.INFOBIP,
            direction=Message.Direction.INBOUND,
            external_id="ib-msg-contract-1",
            infobip_message_id="ib-msg-contract-1",
            author_type="CUSTOMER",
            content_type="TEXT",
            content=self.customer_message_content(),
            created_at=now,
            raw={"channel": link.channel, "from": CUSTOMER, "to": BUSINESS},
        )
        return Delivery.objects.create(
            link=link,
            message=row,
            kind=Delivery.Kind.MESSAGE,
            lane=Delivery.Lane.TO_CCAAS,
            phase=1,
            sort_at=now,
        )

    # --- the contract --------------------------------------------------------------------------
    def test_contract_bad_signature_is_refused_with_403(self, client):
        self._skip_without_webhooks()
        endpoint = self.make_endpoint()
        body = self.unknown_event_body(endpoint)
        response = post_webhook(client, endpoint, body, self.sign(endpoint, body, valid=False))
        assert response.status_code == 403, response.content
        assert not InboundEvent.objects.exists()

    def test_contract_unknown_event_is_stored_and_answered_200(self, client):
        self._skip_without_webhooks()
        endpoint = self.make_endpoint()
        body = self.unknown_event_body(endpoint)
        response = post_webhook(client, endpoint, body, self.sign(endpoint, body))
        assert response.status_code == 200, response.content
        rows = InboundEvent.objects.filter(source=f"ccaas:{endpoint.slug}")
        assert rows.count() == 1
        assert rows.get().payload, "the raw event is kept"

    def test_contract_503_on_customer_message_is_transient_and_retried(self):
        endpoint = self.make_endpoint()
        link = self.active_handover(endpoint)
        queued = self.queued_customer_message(link)
        connector = get_connector(endpoint)
        with self.failing_send(endpoint, link, 503):
            with pytest.raises(TransientError):
                connector.send_customer_message(
                    interaction_ref(link), to_infobip_message(queued.message, link)
                )
            started = timezone.now()
            delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
        queued.refresh_from_db()
        assert queued.state == Delivery.Status.PENDING
        assert queued.attempts == 1
        assert queued.next_attempt_at > started
        assert queued.failing_since is not None and "503" in queued.last_error

    def test_contract_401_flags_the_endpoint(self):
        endpoint = self.make_endpoint()
        link = self.active_handover(endpoint)
        queued = self.queued_customer_message(link)
        connector = get_connector(endpoint)
        with self.failing_send(endpoint, link, 401):
            with pytest.raises(UpstreamAuthError):
                connector.send_customer_message(
                    interaction_ref(link), to_infobip_message(queued.message, link)
                )
            delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
        endpoint.refresh_from_db()
        assert endpoint.auth_failed is True
        assert "401" in endpoint.last_error
        queued.refresh_from_db()
        assert queued.state == Delivery.Status.PENDING and queued.attempts == 1

    def test_contract_duplicate_agent_message_is_stored_once(self, client):
        endpoint = self.make_endpoint()
        link = self.active_handover(endpoint)
        if self.webhook_skip_reason:
            try:
                serving = self.serving_agent_message_poll(endpoint, link)
                serving.__enter__()
            except NotImplementedError:
                pytest.skip(f"{self.webhook_skip_reason}; no serving_agent_message_poll given")
            try:
                for _ in range(2):
                    CcaasEndpoint.objects.filter(pk=endpoint.pk).update(poll_cursor="")
                    periodic.poll_endpoint(endpoint.pk)
            finally:
                serving.__exit__(None, None, None)
        else:
            body = self.agent_message_body(endpoint, link)
            for _ in range(2):
                response = post_webhook(client, endpoint, body, self.sign(endpoint, body))
                assert response.status_code == 200, response.content
            assert InboundEvent.objects.filter(source=f"ccaas:{endpoint.slug}").count() == 1
        messages = Message.objects.filter(link=link, source=Message.Source.CCAAS)
        assert messages.count() == 1
        assert Delivery.objects.filter(link=link, lane=Delivery.Lane.TO_INFOBIP).count() == 1


def json_bytes(data) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


__all__ = ["ConnectorContract", "header_kwargs", "json_bytes", "post_webhook"]
