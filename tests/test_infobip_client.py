"""Every request InfobipClient builds, checked against Infobip's own OpenAPI spec, and how it reads
every answer (payloads from the spec's examples: tests/fixtures/infobip/README.md)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from bridge.exceptions import (
    NotFoundError,
    PermanentError,
    TransientError,
    UpstreamAuthError,
)
from bridge.infobip.client import InfobipClient
from bridge.types import AuthorType, Direction
from tests.openapi import validate_request, validate_schema
from tests.payloads import load_fixture

pytestmark = pytest.mark.django_db  # Get Messages takes from the shared rate limit (a database row)

SPEC = "infobip-conversations-openapi.json"
BASE = "https://xyz123.api.infobip.com"
API_KEY = "infobip-key-9f8e7d6c5b4a-do-not-leak"
CONV = "4461ea29-c09e-4ba8-a751-df86cf0a0eb9"
CONV_URL = f"{BASE}/ccaas/1/conversations/{CONV}"


def fixture(name: str):
    return load_fixture("infobip", f"api_{name}")


@pytest.fixture
def client(settings):
    settings.INFOBIP_AGENT_ID = ""
    return InfobipClient(base_url=BASE, api_key=API_KEY)


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def body_of(request) -> object:
    if request.body in (None, b"", ""):
        return None
    raw = request.body.decode() if isinstance(request.body, bytes) else request.body
    return json.loads(raw)


def assert_valid(call) -> dict:
    """The recorded request matches an operation of the spec: method, path, query, body."""
    request = call.request
    parts = urlsplit(request.url)
    query = {k: v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    assert request.headers["Authorization"] == f"App {API_KEY}"
    return validate_request(SPEC, request.method, parts.path, query=query, body=body_of(request))


def query_of(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def message_item(n: int, start: datetime) -> dict:
    item = copy.deepcopy(fixture("get_messages_200")["messages"][0])
    created = (start + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
    item.update(id=f"msg-{n:05d}", createdAt=created, updatedAt=created, content={"text": f"message {n}"})
    return item


# --- fixtures are what the spec says -------------------------------------------------------------
def test_schema_only_fixtures_match_the_response_schemas():
    base = "#/paths/~1ccaas~11~1conversations~1{conversationId}~1messages/get/responses/200/content/application~1json/schema"
    validate_schema(SPEC, base, fixture("get_messages_200"))
    tags = "#/paths/~1ccaas~11~1tags/get/responses/200/content/application~1json/schema"
    validate_schema(SPEC, tags, fixture("get_tags_200"))


# --- Get Messages --------------------------------------------------------------------------------
def test_get_messages_pages_through_more_than_a_thousand_messages(client, mocked):
    start = datetime(2024, 1, 1, tzinfo=UTC)
    everything = [message_item(n, start) for n in range(1500)]

    def page(request):
        q = parse_qs(urlsplit(request.url).query)
        limit, number = int(q["limit"][0]), int(q["page"][0])
        items = everything[number * limit : (number + 1) * limit]
        body = {
            "messages": items,
            "pagination": {
                "totalItems": len(everything),
                "page": number,
                "limit": limit,
                "orderBy": "createdAt:asc",
            },
        }
        return 200, {}, json.dumps(body)

    mocked.add_callback(responses.GET, f"{CONV_URL}/messages", callback=page)
    messages = client.get_messages(CONV)

    assert [m.id for m in messages] == [f"msg-{n:05d}" for n in range(1500)]
    assert len(mocked.calls) == 2
    for number, call in enumerate(mocked.calls):
        assert_valid(call)
        q = query_of(call)
        assert q["limit"] == ["999"] and q["orderBy"] == ["createdAt:asc"] and q["page"] == [str(number)]
    first = messages[0]
    assert first.conversation_id == CONV and first.channel == "WHATSAPP"
    assert first.direction == Direction.INBOUND and first.author_type == AuthorType.CUSTOMER
    assert first.from_ == "44776333666" and first.to == "447492263897"
    assert first.created_at == start


def test_get_messages_without_pagination_stops_on_a_short_page(client, mocked):
    start = datetime(2024, 1, 1, tzinfo=UTC)
    full = {"messages": [message_item(n, start) for n in range(999)]}
    mocked.add(responses.GET, f"{CONV_URL}/messages", json=full)
    mocked.add(responses.GET, f"{CONV_URL}/messages", json={"messages": []})
    assert len(client.get_messages(CONV)) == 999
    assert [query_of(c)["page"] for c in mocked.calls] == [["0"], ["1"]]


def test_get_messages_filters_are_declared_query_parameters(client, mocked):
    mocked.add(responses.GET, f"{CONV_URL}/messages", json=fixture("get_messages_200"))
    after = datetime(2024, 1, 1, 12, 30, 5, 123456, tzinfo=UTC)
    messages = client.get_messages(CONV, created_after=after, message_ids=["a", "b"])
    assert len(messages) == 1
    call = mocked.calls[0]
    assert_valid(call)
    q = query_of(call)
    assert q["createdAfter"] == ["2024-01-01T12:30:05.123+0000"]
    assert q["messageIds"] == ["a", "b"]


def test_conversation_id_is_escaped_in_the_path(client, mocked):
    mocked.add(responses.GET, f"{BASE}/ccaas/1/conversations/a%2Fb", json=fixture("get_conversation_200"))
    assert client.get_conversation("a/b")["status"] == "OPEN"
    assert_valid(mocked.calls[0])


# --- Create Message ------------------------------------------------------------------------------
def test_create_message_body_and_no_agent_header_by_default(client, mocked):
    mocked.add(responses.POST, f"{CONV_URL}/messages", json=fixture("create_message_200"))
    answer = client.create_message(
        CONV,
        channel="WHATSAPP",
        from_="447492263897",
        to="44776333666",
        content_type="TEXT",
        content={"text": "Hello from an agent"},
    )
    assert answer["id"] == "25774a87-078a-4fe7-8d43-127809479964"
    call = mocked.calls[0]
    assert_valid(call)
    assert body_of(call.request) == {
        "channel": "WHATSAPP",
        "from": "447492263897",
        "to": "44776333666",
        "contentType": "TEXT",
        "content": {"text": "Hello from an agent"},
    }
    assert "x-agent-id" not in {k.lower() for k in call.request.headers}


def test_create_message_sends_x_agent_id_when_configured(settings, mocked):
    settings.INFOBIP_AGENT_ID = "c856e230-a8cd-498b-9996-42bbed35029a"
    client = InfobipClient(base_url=BASE, api_key=API_KEY)
    mocked.add(responses.POST, f"{CONV_URL}/messages", json=fixture("create_message_200"))
    client.create_message(
        CONV,
        channel="SMS",
        from_="447492263897",
        to="44776333666",
        content_type="TEXT",
        content={"text": "x"},
    )
    call = mocked.calls[0]
    assert_valid(call)
    assert call.request.headers["x-agent-id"] == "c856e230-a8cd-498b-9996-42bbed35029a"
    # the spec documents the header in the operation's description (not as a parameter)
    operation = validate_request(
        SPEC, "POST", f"/ccaas/1/conversations/{CONV}/messages", body=body_of(call.request)
    )
    assert '"x-agent-id"' in operation["description"]


def test_send_typing_event(client, mocked):
    mocked.add(responses.POST, f"{CONV_URL}/events", body="")
    client.send_typing(CONV, channel="WHATSAPP", from_="447492263897", to="44776333666", started=True)
    assert_valid(mocked.calls[0])
    assert body_of(mocked.calls[0].request)["type"] == "TYPING_STARTED"


# --- close ---------------------------------------------------------------------------------------
def test_close_patches_status_closed(client, mocked):
    mocked.add(responses.PATCH, CONV_URL, json=fixture("patch_conversation_200"))
    assert client.close_conversation(CONV) is True
    assert_valid(mocked.calls[0])
    assert body_of(mocked.calls[0].request) == {"status": "CLOSED"}


def test_close_of_an_already_closed_conversation_is_success(client, mocked):
    mocked.add(responses.PATCH, CONV_URL, status=400, json=fixture("patch_conversation_400_closed"))
    assert client.close_conversation(CONV) is False


def test_close_with_another_400_is_a_permanent_error(client, mocked):
    mocked.add(responses.PATCH, CONV_URL, status=400, json=fixture("patch_conversation_400_invalid_body"))
    with pytest.raises(PermanentError) as caught:
        client.close_conversation(CONV)
    assert not isinstance(caught.value, TransientError | NotFoundError)
    assert caught.value.status == 400


# --- account, tags, metadata, routing, assignment --------------------------------------------------
def test_update_account_configuration(client, mocked):
    mocked.add(
        responses.PUT,
        f"{BASE}/ccaas/1/account/configuration",
        json=fixture("update_account_configuration_200"),
    )
    url = "https://bridge.example.com/webhooks/infobip/token-0123456789abcdefghijklmnopqrstuv/"
    client.update_account_configuration(url)
    assert_valid(mocked.calls[0])
    assert body_of(mocked.calls[0].request) == {"webhookUrl": url}


def test_create_tag_and_an_existing_tag_is_fine(client, mocked):
    mocked.add(responses.POST, f"{BASE}/ccaas/1/tags", json=fixture("create_tag_200"))
    mocked.add(responses.POST, f"{BASE}/ccaas/1/tags", status=400, json=fixture("create_tag_400_exists"))
    client.create_tag("Tag 1")
    client.create_tag("Tag 1")
    for call in mocked.calls:
        assert_valid(call)
        assert body_of(call.request) == {"name": "Tag 1"}


def test_create_tag_with_another_400_raises(client, mocked):
    mocked.add(
        responses.POST, f"{BASE}/ccaas/1/tags", status=400, json=fixture("create_tag_400_invalid_body")
    )
    with pytest.raises(PermanentError):
        client.create_tag("Tag 1")


def test_add_tag_creates_the_account_tag_then_tags_the_conversation(client, mocked):
    mocked.add(responses.POST, f"{BASE}/ccaas/1/tags", status=400, json=fixture("create_tag_400_exists"))
    mocked.add(responses.POST, f"{CONV_URL}/tags", json=fixture("add_conversation_tag_200"))
    client.add_tag(CONV, "handed-over")
    assert [c.request.url for c in mocked.calls] == [f"{BASE}/ccaas/1/tags", f"{CONV_URL}/tags"]
    for call in mocked.calls:
        assert_valid(call)
    assert body_of(mocked.calls[1].request) == {"tagName": "handed-over"}


def test_add_tag_without_create(client, mocked):
    mocked.add(responses.POST, f"{CONV_URL}/tags", json=fixture("add_conversation_tag_200"))
    client.add_tag(CONV, "vip", create=False)
    assert len(mocked.calls) == 1
    assert_valid(mocked.calls[0])


def test_get_tags_of_a_conversation_pages(client, mocked):
    template = fixture("get_tags_200")["tags"][0]
    names = [f"tag-{n}" for n in range(1001)]

    def page(request):
        q = parse_qs(urlsplit(request.url).query)
        limit, number = int(q["limit"][0]), int(q["page"][0])
        items = [{**template, "name": n} for n in names[number * limit : (number + 1) * limit]]
        return (
            200,
            {},
            json.dumps(
                {"tags": items, "pagination": {"totalItems": len(names), "page": number, "limit": limit}}
            ),
        )

    mocked.add_callback(responses.GET, f"{BASE}/ccaas/1/tags", callback=page)
    assert client.get_tags(CONV) == names
    assert len(mocked.calls) == 2
    for number, call in enumerate(mocked.calls):
        assert_valid(call)
        q = query_of(call)
        assert q["conversationId"] == [CONV] and q["limit"] == ["999"] and q["page"] == [str(number)]


def test_get_tags_from_the_spec_shape(client, mocked):
    mocked.add(responses.GET, f"{BASE}/ccaas/1/tags", json=fixture("get_tags_200"))
    assert client.get_tags(CONV) == ["Tag 1"]


def test_metadata_put_and_get(client, mocked):
    mocked.add(responses.PUT, f"{CONV_URL}/metadata", json=fixture("put_metadata_200"))
    mocked.add(responses.GET, f"{CONV_URL}/metadata", json=fixture("get_metadata_200"))
    client.put_metadata(CONV, {"key1": "value1", "key2": "value2"})
    assert client.get_metadata(CONV) == {"key1": "value1", "key2": "value2"}
    for call in mocked.calls:
        assert_valid(call)
    assert body_of(mocked.calls[0].request) == {"key1": "value1", "key2": "value2"}


def test_metadata_of_a_conversation_without_any_is_empty(client, mocked):
    mocked.add(responses.GET, f"{CONV_URL}/metadata", status=400, json=fixture("get_metadata_400_not_found"))
    assert client.get_metadata(CONV) == {}


def test_route_conversation(client, mocked):
    mocked.add(responses.POST, f"{CONV_URL}/route", json=fixture("route_conversation_200"))
    assert client.route_conversation(CONV)["status"] == "OPEN"
    assert_valid(mocked.calls[0])
    assert body_of(mocked.calls[0].request) is None


def test_change_assignment(client, mocked):
    mocked.add(responses.PUT, f"{CONV_URL}/assignee", json=fixture("change_assignment_200"))
    client.change_assignment(CONV, "c856e230-a8cd-498b-9996-42bbed35029a")
    assert_valid(mocked.calls[0])
    assert body_of(mocked.calls[0].request) == {"agentId": "c856e230-a8cd-498b-9996-42bbed35029a"}


# --- status mapping --------------------------------------------------------------------------------
def assert_safe_text(exc: BaseException, status: int, body_start: str) -> None:
    text = str(exc)
    assert f"HTTP {status}" in text
    assert body_start in text
    for where in (text, repr(exc), getattr(exc, "body", "")):
        assert API_KEY not in where


def test_429_is_transient_with_retry_after(client, mocked):
    mocked.add(
        responses.GET,
        f"{CONV_URL}/messages",
        status=429,
        json=fixture("get_messages_429"),
        headers={"Retry-After": "17"},
    )
    with pytest.raises(TransientError) as caught:
        client.get_messages(CONV)
    assert caught.value.retry_after == 17
    assert caught.value.status == 429
    assert_safe_text(caught.value, 429, "TOO_MANY_REQUESTS")


def test_429_with_an_http_date_retry_after(client, mocked):
    when = datetime.now(UTC) + timedelta(seconds=120)
    mocked.add(
        responses.GET,
        f"{CONV_URL}/messages",
        status=429,
        json=fixture("get_messages_429"),
        headers={"Retry-After": when.strftime("%a, %d %b %Y %H:%M:%S GMT")},
    )
    with pytest.raises(TransientError) as caught:
        client.get_messages(CONV)
    assert 100 <= caught.value.retry_after <= 121


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(client, mocked, status):
    mocked.add(responses.GET, CONV_URL, status=status, json=fixture("get_messages_500"))
    with pytest.raises(TransientError) as caught:
        client.get_conversation(CONV)
    assert caught.value.retry_after is None
    assert_safe_text(caught.value, status, "GENERAL_ERROR")


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_auth_errors(client, mocked, status):
    mocked.add(responses.GET, f"{CONV_URL}/messages", status=status, json=fixture(f"get_messages_{status}"))
    with pytest.raises(UpstreamAuthError) as caught:
        client.get_messages(CONV)
    assert caught.value.permanent
    assert_safe_text(caught.value, status, "UNAUTHORIZED" if status == 401 else "FORBIDDEN")


def test_400_no_such_entity_is_not_found(client, mocked):
    mocked.add(responses.GET, CONV_URL, status=400, json=fixture("get_conversation_400_not_found"))
    with pytest.raises(NotFoundError) as caught:
        client.get_conversation(CONV)
    assert_safe_text(caught.value, 400, "No such entity exists")


def test_400_no_such_entity_on_create_message_is_not_found(client, mocked):
    mocked.add(
        responses.POST, f"{CONV_URL}/messages", status=400, json=fixture("create_message_400_not_found")
    )
    with pytest.raises(NotFoundError):
        client.create_message(
            CONV, channel="SMS", from_="a", to="b", content_type="TEXT", content={"text": "x"}
        )


@pytest.mark.parametrize("status", [400, 404, 405, 413, 422])
def test_other_4xx_are_permanent(client, mocked, status):
    mocked.add(
        responses.GET, CONV_URL, status=status, json={"requestError": {"serviceException": {"text": "nope"}}}
    )
    with pytest.raises(PermanentError) as caught:
        client.get_conversation(CONV)
    assert not isinstance(caught.value, TransientError | UpstreamAuthError)
    assert_safe_text(caught.value, status, "nope")


def test_connection_failure_is_transient_and_names_no_key(client, mocked):
    mocked.add(responses.GET, CONV_URL, body=requests.ConnectionError(f"refused {API_KEY}"))
    with pytest.raises(TransientError) as caught:
        client.get_conversation(CONV)
    assert API_KEY not in str(caught.value)


def test_error_text_of_a_long_body_is_cut(client, mocked):
    mocked.add(responses.GET, CONV_URL, status=400, body="x" * 5000)
    with pytest.raises(PermanentError) as caught:
        client.get_conversation(CONV)
    assert len(str(caught.value)) < 1000
