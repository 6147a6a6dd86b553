"""Searches read to the end and transcripts never cut: Chatwoot's Search Contacts matches by substring,
15 a page, so every page is read until the exact identifier is found (never a second contact); a Zendesk
transcript over a comment's size goes in several comments."""

from __future__ import annotations

import pytest
import responses

from bridge.connectors import get_connector
from bridge.models import CcaasEndpoint
from bridge.types import Customer, HandoverContext
from tests.chatwoot_fake import ACCOUNT, BASE_URL, INBOX, FakeChatwoot

pytestmark = pytest.mark.django_db


def test_the_exact_contact_is_found_behind_a_page_of_near_matches():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        chatwoot = FakeChatwoot(mock)
        identifier = "infobip:whatsapp:447700900123"
        for n in range(20):  # near matches first: the same number with one more digit
            chatwoot.contacts[n + 1] = {"id": n + 1, "name": f"other {n}", "identifier": f"{identifier}{n}"}
        chatwoot.contacts[99] = {"id": 99, "name": "Ana", "identifier": identifier}
        endpoint = CcaasEndpoint.objects.create(
            slug="cw",
            kind="chatwoot",
            config={"base_url": BASE_URL, "account_id": ACCOUNT, "inbox_id": INBOX, "mode": "poll"},
            credentials={"api_access_token": "cw-token"},
        )
        ctx = HandoverContext(
            handover_id="h1",
            conversation_id="conv-1",
            channel="WHATSAPP",
            customer=Customer("447700900123", "Ana"),
            queue="",
            priority="NORMAL",
            tags=[],
            metadata={},
            context={},
            history=[],
        )
        result = get_connector(endpoint).open_interaction(ctx)
    assert result.data["contact_id"] == 99
    assert len(chatwoot.contacts) == 21, "no second contact was created"
    searches = [
        p for m, p, _ in chatwoot.requests if p.startswith(f"/api/v1/accounts/{ACCOUNT}/contacts/search")
    ]
    assert len(searches) == 2


def test_a_zendesk_transcript_over_a_comments_size_goes_in_several_comments():
    from datetime import UTC, datetime

    from bridge.types import Direction, InfobipMessage
    from tests.zendesk_fake import FakeZendesk

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        zendesk = FakeZendesk(mock)
        endpoint = CcaasEndpoint.objects.create(
            slug="zen",
            kind="zendesk",
            config={"subdomain": "acme", "mode": "poll"},
            credentials={"email": "b@acme.test", "api_token": "t"},
        )
        history = [
            InfobipMessage(
                f"ib-{n}",
                "conv-1",
                "WHATSAPP",
                "447700900123",
                "447860099299",
                Direction.INBOUND,
                "TEXT",
                {"text": "é" * 30000 + f" END-{n}"},
                datetime(2026, 1, 1, 10, n, tzinfo=UTC),
            )
            for n in range(3)
        ]
        ctx = HandoverContext(
            handover_id="h1",
            conversation_id="conv-1",
            channel="WHATSAPP",
            customer=Customer("447700900123", "Ana"),
            queue="",
            priority="NORMAL",
            tags=[],
            metadata={},
            context={},
            history=history,
        )
        result = get_connector(endpoint).open_interaction(ctx)
    comments = zendesk.comments[int(result.interaction_id)]
    assert len(comments) >= 2 and all(len(c["body"].encode()) <= 64000 for c in comments)
    whole = "".join(c["body"] for c in comments)
    assert all(f"END-{n}" in whole for n in range(3))
    assert all(
        c["author_id"] == zendesk.tickets[int(result.interaction_id)]["requester_id"] for c in comments
    )
