"""The delivery engine (bridge/delivery.py) on its own: handlers are stand-ins that record calls and
fail on demand; everything else (claims, leases, backoff, dead letters, closes) is the real thing."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.utils import timezone

from bridge import delivery as engine
from bridge import handlers as bridge_handlers
from bridge.exceptions import ConfigurationError, PermanentError, TransientError
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, State

pytestmark = pytest.mark.django_db

TO_CCAAS = Delivery.Lane.TO_CCAAS
TO_INFOBIP = Delivery.Lane.TO_INFOBIP


class Handlers:
    """Stand-in delivery handlers: record every call; fail the deliveries told to fail."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.failures: dict[int, list[BaseException]] = {}  # delivery id -> errors to raise, in turn
        self.always: dict[int, BaseException] = {}

    def __call__(self, delivery: Delivery) -> None:
        self.calls.append(delivery.pk)
        if delivery.pk in self.always:
            raise self.always[delivery.pk]
        queued = self.failures.get(delivery.pk)
        if queued:
            raise queued.pop(0)
        return None


@pytest.fixture
def handlers(monkeypatch):
    fake = Handlers()
    for kind in Delivery.Kind:
        monkeypatch.setitem(bridge_handlers.HANDLERS, kind, fake)
    return fake


@pytest.fixture
def quick(settings):
    settings.BRIDGE_RETRY_BASE_SECONDS = 0.01
    settings.BRIDGE_RETRY_MAX_SECONDS = 0.01
    settings.BRIDGE_RETRY_MAX_ATTEMPTS = 3
    return settings


def make_link(state=State.ACTIVE, conversation="conv-1") -> ConversationLink:
    return ConversationLink.objects.create(conversation_id=conversation, state=state, interaction_id="int-1")


def add(link, lane=TO_CCAAS, *, kind=Delivery.Kind.MESSAGE, phase=1, at=0.0) -> Delivery:
    base = timezone.now() - timedelta(minutes=10)
    return Delivery.objects.create(
        link=link, kind=kind, lane=lane, phase=phase, sort_at=base + timedelta(seconds=at)
    )


def make_due(*deliveries_or_qs) -> None:
    """Bring waiting retries forward to now (instead of sleeping through the backoff)."""
    Delivery.objects.filter(state=Delivery.Status.PENDING).update(next_attempt_at=timezone.now())


def states(link, lane=None) -> list[str]:
    rows = Delivery.objects.filter(link=link)
    if lane:
        rows = rows.filter(lane=lane)
    return list(rows.order_by("phase", "sort_at", "id").values_list("state", flat=True))


# --- order and exclusivity ---------------------------------------------------------------------------
def test_lane_order_is_phase_then_sort_time_then_id(handlers):
    link = make_link()
    late = add(link, at=30)
    tie_a = add(link, at=10)
    tie_b = add(link, at=10)
    early = add(link, at=5)
    opener = add(link, kind=Delivery.Kind.OPEN, phase=0, at=99)
    other_lane = add(link, TO_INFOBIP, at=0)
    assert engine.drive_lane(link.pk, TO_CCAAS) == 5
    assert handlers.calls == [opener.pk, early.pk, tie_a.pk, tie_b.pk, late.pk]
    assert Delivery.objects.get(pk=other_lane.pk).state == Delivery.Status.PENDING


def test_one_delivery_in_flight_per_lane(handlers):
    link = make_link()
    first = add(link, at=1)
    add(link, at=2)
    other = add(link, TO_INFOBIP, at=3)
    claimed = engine.claim_next(link.pk, TO_CCAAS)
    assert claimed.pk == first.pk and claimed.state == Delivery.Status.IN_FLIGHT and claimed.attempts == 1
    assert claimed.lease_until > timezone.now() and claimed.lease_token
    assert engine.claim_next(link.pk, TO_CCAAS) is None  # the lane is busy
    assert engine.claim_next(link.pk, TO_INFOBIP).pk == other.pk  # the other lane is not


def test_a_failing_head_blocks_only_its_lane(handlers, settings):
    settings.BRIDGE_RETRY_BASE_SECONDS = 60
    link = make_link()
    other_link = make_link(conversation="conv-2")
    head = add(link, at=1)
    behind = add(link, at=2)
    mine_to_infobip = add(link, TO_INFOBIP, at=3)
    theirs = add(other_link, at=0)
    handlers.always[head.pk] = TransientError("HTTP 503", status=503)

    assert engine.drive_lane(link.pk, TO_CCAAS) == 1  # the head ran, failed, and holds the lane
    assert engine.drive_lane(link.pk, TO_INFOBIP) == 1
    assert engine.drive_lane(other_link.pk, TO_CCAAS) == 1
    assert handlers.calls == [head.pk, mine_to_infobip.pk, theirs.pk]
    head.refresh_from_db()
    assert head.state == Delivery.Status.PENDING and head.attempts == 1 and head.failing_since
    assert "HTTP 503" in head.last_error
    assert Delivery.objects.get(pk=behind.pk).state == Delivery.Status.PENDING
    assert engine.drive_lane(link.pk, TO_CCAAS) == 0  # not due yet: nothing runs, nothing overtakes


# --- backoff -----------------------------------------------------------------------------------------
def test_backoff_grows_exponentially_with_jitter_within_half_to_full_ceiling(settings):
    settings.BRIDGE_RETRY_BASE_SECONDS = 5
    settings.BRIDGE_RETRY_MAX_SECONDS = 3600
    for attempts in range(1, 15):
        ceiling = min(3600, 5 * 2 ** (attempts - 1))
        samples = [engine.backoff_seconds(attempts) for _ in range(300)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples), attempts
        assert len({round(s, 6) for s in samples}) > 100  # jittered, not a fixed delay
    means = [sum(engine.backoff_seconds(a) for _ in range(500)) / 500 for a in (1, 2, 3, 4)]
    for lower, higher in itertools.pairwise(means):
        assert 1.6 < higher / lower < 2.4
    assert max(engine.backoff_seconds(40) for _ in range(100)) <= 3600


def test_backoff_stays_at_the_cap_for_any_number_of_attempts(settings):
    # operators may raise BRIDGE_RETRY_MAX_ATTEMPTS far beyond 15 to keep retrying for days;
    # the settings are floats, as env.float reads them
    settings.BRIDGE_RETRY_BASE_SECONDS = 5.0
    settings.BRIDGE_RETRY_MAX_SECONDS = 3600.0
    for attempts in (64, 1030, 5000, 10**6):
        assert 1800 <= engine.backoff_seconds(attempts) <= 3600


def test_a_failure_after_a_thousand_attempts_is_rescheduled(settings, handlers):
    settings.BRIDGE_RETRY_BASE_SECONDS = 5.0
    settings.BRIDGE_RETRY_MAX_SECONDS = 60.0
    settings.BRIDGE_RETRY_MAX_ATTEMPTS = 10**6
    link = make_link()
    head = add(link)
    Delivery.objects.filter(pk=head.pk).update(attempts=1100)
    handlers.always[head.pk] = TransientError("HTTP 503", status=503)
    engine.drive_lane(link.pk, TO_CCAAS)
    head.refresh_from_db()
    assert head.state == Delivery.Status.PENDING and head.attempts == 1101
    assert timedelta(seconds=29) <= head.next_attempt_at - timezone.now() <= timedelta(seconds=60)


def test_backoff_honours_retry_after(settings, handlers):
    settings.BRIDGE_RETRY_BASE_SECONDS = 1
    assert all(engine.backoff_seconds(1, retry_after=120) >= 120 for _ in range(50))
    link = make_link()
    head = add(link)
    handlers.always[head.pk] = TransientError("HTTP 429", status=429, retry_after=90)
    before = timezone.now()
    engine.drive_lane(link.pk, TO_CCAAS)
    head.refresh_from_db()
    assert head.next_attempt_at - before >= timedelta(seconds=90)
    assert head.next_attempt_at - before < timedelta(seconds=95)


def test_retries_follow_the_schedule(settings, handlers):
    settings.BRIDGE_RETRY_BASE_SECONDS = 10
    settings.BRIDGE_RETRY_MAX_SECONDS = 3600
    link = make_link()
    head = add(link)
    handlers.always[head.pk] = TransientError("HTTP 500", status=500)
    for attempt in range(1, 5):
        before = timezone.now()
        engine.drive_lane(link.pk, TO_CCAAS)
        head.refresh_from_db()
        ceiling = 10 * 2 ** (attempt - 1)
        delay = (head.next_attempt_at - before).total_seconds()
        assert head.attempts == attempt
        assert ceiling / 2 - 0.5 <= delay <= ceiling + 0.5
        make_due()


# --- dead letters --------------------------------------------------------------------------------------
def test_dead_letter_after_the_last_attempt_holds_the_rest_of_the_lane(quick, handlers):
    link = make_link()
    head, second, third = add(link, at=1), add(link, at=2), add(link, at=3)
    other_lane = add(link, TO_INFOBIP, at=4)
    handlers.always[head.pk] = TransientError("HTTP 503", status=503)
    for _ in range(5):
        engine.drive_lane(link.pk, TO_CCAAS)
        make_due()
    head.refresh_from_db()
    assert head.attempts == 3 and head.state == Delivery.Status.DEAD
    assert head.last_error.startswith("gave up after 3 attempts")
    for held in (second, third):
        held.refresh_from_db()
        assert held.state == Delivery.Status.DEAD and held.attempts == 0
        assert held.last_error.startswith(f"held behind dead delivery #{head.pk}")
    assert handlers.calls == [head.pk] * 3  # nothing behind it was sent out of order
    assert engine.drive_lane(link.pk, TO_INFOBIP) == 1
    assert Delivery.objects.get(pk=other_lane.pk).state == Delivery.Status.DONE
    assert link.timeline.filter(kind="dead_letter").exists()


def test_permanent_error_is_dead_after_one_attempt_and_the_rest_continue(handlers):
    link = make_link()
    bad, good1, good2 = add(link, at=1), add(link, at=2), add(link, at=3)
    handlers.always[bad.pk] = PermanentError("HTTP 422 invalid content", status=422)
    assert engine.drive_lane(link.pk, TO_CCAAS) == 3
    bad.refresh_from_db()
    assert bad.state == Delivery.Status.DEAD and bad.attempts == 1
    assert bad.last_error.startswith("permanent error") and "422" in bad.last_error
    assert states(link) == [Delivery.Status.DEAD, Delivery.Status.DONE, Delivery.Status.DONE]
    assert handlers.calls == [bad.pk, good1.pk, good2.pk]


def test_permanent_failure_of_the_open_fails_the_handover(handlers):
    link = make_link(state=State.REQUESTED)
    opener = add(link, kind=Delivery.Kind.OPEN, phase=0)
    queued = add(link, at=5)
    handlers.always[opener.pk] = PermanentError("HTTP 400 unknown queue", status=400)
    engine.drive_lane(link.pk, TO_CCAAS)
    link.refresh_from_db()
    assert link.state == State.FAILED and "unknown queue" in link.last_error
    assert Delivery.objects.get(pk=queued.pk).state == Delivery.Status.DEAD
    assert handlers.calls == [opener.pk]


def test_retry_dead_restores_the_original_order(quick, handlers):
    link = make_link()
    head, second, third = add(link, at=1), add(link, at=2), add(link, at=3)
    handlers.always[head.pk] = TransientError("HTTP 503", status=503)
    for _ in range(4):
        engine.drive_lane(link.pk, TO_CCAAS)
        make_due()
    assert states(link) == [Delivery.Status.DEAD] * 3

    del handlers.always[head.pk]  # the contact center is back
    handlers.calls.clear()
    assert engine.retry_dead(Delivery.objects.filter(link=link)) == 3
    for row in Delivery.objects.filter(link=link):
        assert (row.state, row.attempts, row.failing_since, row.done_at) == (
            Delivery.Status.PENDING,
            0,
            None,
            None,
        )
    assert engine.drive_lane(link.pk, TO_CCAAS) == 3
    assert handlers.calls == [head.pk, second.pk, third.pk]
    assert states(link) == [Delivery.Status.DONE] * 3


# --- leases --------------------------------------------------------------------------------------------
def test_an_expired_lease_is_claimed_again_and_the_old_worker_cannot_write(handlers):
    link = make_link()
    head = add(link)
    lost = engine.claim_next(link.pk, TO_CCAAS)  # a worker that then dies (or stalls)
    assert engine.claim_next(link.pk, TO_CCAAS) is None
    Delivery.objects.filter(pk=head.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    assert (str(link.pk), TO_CCAAS) in engine.due_lanes()
    again = engine.claim_next(link.pk, TO_CCAAS)
    assert again.pk == head.pk and again.attempts == 2 and again.lease_token != lost.lease_token

    engine.run(lost, handlers)  # the stalled worker wakes up: its outcome must not be recorded
    assert Delivery.objects.get(pk=head.pk).state == Delivery.Status.IN_FLIGHT
    engine.run(again, handlers)
    assert Delivery.objects.get(pk=head.pk).state == Delivery.Status.DONE


# --- closing -----------------------------------------------------------------------------------------
def test_close_waits_for_both_lanes(handlers, settings):
    settings.BRIDGE_RETRY_BASE_SECONDS = 60
    link = make_link(state=State.CLOSING)
    to_ccaas = add(link, at=1)
    to_infobip = add(link, TO_INFOBIP, at=2)
    close_ccaas = add(link, kind=Delivery.Kind.CLOSE_CCAAS, phase=2)
    close_infobip = add(link, TO_INFOBIP, kind=Delivery.Kind.CLOSE_INFOBIP, phase=2)
    handlers.failures[to_infobip.pk] = [TransientError("HTTP 503", status=503)]

    engine.drive_lane(link.pk, TO_CCAAS)
    engine.drive_lane(link.pk, TO_INFOBIP)
    # the agent message to the customer is still retrying: neither side may close yet
    assert handlers.calls == [to_ccaas.pk, to_infobip.pk]
    assert Delivery.objects.get(pk=close_ccaas.pk).state == Delivery.Status.PENDING
    assert engine.claim_next(link.pk, TO_CCAAS) is None
    link.refresh_from_db()
    assert link.state == State.CLOSING

    make_due()
    engine.drive_lane(link.pk, TO_INFOBIP)
    engine.drive_lane(link.pk, TO_CCAAS)
    assert handlers.calls[2:] == [to_infobip.pk, close_infobip.pk, close_ccaas.pk]
    link.refresh_from_db()
    assert link.state == State.CLOSED and link.closed_at is not None


def test_closing_handover_stays_closing_while_a_close_is_dead(handlers):
    link = make_link(state=State.CLOSING)
    close_ccaas = add(link, kind=Delivery.Kind.CLOSE_CCAAS, phase=2)
    add(link, TO_INFOBIP, kind=Delivery.Kind.CLOSE_INFOBIP, phase=2)
    handlers.always[close_ccaas.pk] = PermanentError("HTTP 400", status=400)
    engine.drive_lane(link.pk, TO_CCAAS)
    engine.drive_lane(link.pk, TO_INFOBIP)
    link.refresh_from_db()
    assert link.state == State.CLOSING
    del handlers.always[close_ccaas.pk]
    engine.retry_dead(Delivery.objects.filter(link=link))
    engine.drive_lane(link.pk, TO_CCAAS)
    link.refresh_from_db()
    assert link.state == State.CLOSED


def test_drain_runs_every_due_lane(handlers):
    links = [make_link(conversation=f"c{n}") for n in range(3)]
    for link in links:
        add(link, at=1)
        add(link, TO_INFOBIP, at=2)
    assert engine.drain() == 6
    assert not Delivery.objects.exclude(state=Delivery.Status.DONE).exists()


# --- credentials at rest -------------------------------------------------------------------------------
def use_keys(settings, keys: list[bytes]) -> None:
    settings.BRIDGE_ENCRYPTION_KEYS = [k.decode() for k in keys]
    field = CcaasEndpoint._meta.get_field("credentials")
    for cached in ("keys", "f"):
        field.__dict__.pop(cached, None)


@pytest.fixture
def restore_keys(settings):
    yield
    field = CcaasEndpoint._meta.get_field("credentials")
    for cached in ("keys", "f"):
        field.__dict__.pop(cached, None)


def raw_credentials(endpoint) -> str:
    table = CcaasEndpoint._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT credentials FROM {table} WHERE id = %s", [endpoint.pk])
        return str(cursor.fetchone()[0])


def test_credentials_are_encrypted_at_rest(restore_keys):
    endpoint = CcaasEndpoint.objects.create(
        slug="enc", kind="generic", credentials={"secret": "s3cr3t-value-xyz", "api_key": "k3y-value-abc"}
    )
    stored = raw_credentials(endpoint)
    assert "s3cr3t-value-xyz" not in stored and "k3y-value-abc" not in stored
    assert CcaasEndpoint.objects.get(pk=endpoint.pk).credentials == {
        "secret": "s3cr3t-value-xyz",
        "api_key": "k3y-value-abc",
    }


def test_key_rotation_keeps_old_rows_readable(settings, restore_keys):
    old, new = Fernet.generate_key(), Fernet.generate_key()
    use_keys(settings, [old])
    endpoint = CcaasEndpoint.objects.create(
        slug="rot", kind="generic", credentials={"secret": "before-rotation"}
    )
    written_with_old = raw_credentials(endpoint)

    use_keys(settings, [new, old])  # the new key first: it encrypts, both decrypt
    assert CcaasEndpoint.objects.get(pk=endpoint.pk).credentials == {"secret": "before-rotation"}
    endpoint.credentials = {"secret": "after-rotation"}
    endpoint.save()
    assert raw_credentials(endpoint) != written_with_old

    use_keys(settings, [new])  # the old key retired: the re-saved row needs only the new one
    assert CcaasEndpoint.objects.get(pk=endpoint.pk).credentials == {"secret": "after-rotation"}

    use_keys(settings, [Fernet.generate_key()])  # a key that never wrote it: loud, not ciphertext
    with pytest.raises(ConfigurationError):
        CcaasEndpoint.objects.get(pk=endpoint.pk).credentials  # noqa: B018
