"""Delivering staged webhook events to real receivers on loopback, recorded in real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest
import trustme
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import agent_growth
from agent_growth.db import engine as db_engine
from agent_growth.db.models import BackgroundTask, WebhookDelivery, WebhookOutbox
from agent_growth.settings import get_settings
from agent_growth.webhooks import delivery, signing
from agent_growth.webhooks.policy import DeliveryPolicy, is_retryable_status
from tests.webhooks.receiver import Receiver, Reply

ReceiverFactory = Callable[..., Receiver]
StageEvent = Callable[..., Awaitable[BackgroundTask]]


def fast_policy() -> DeliveryPolicy:
    """The settings' policy without the pauses between attempts, so retries are due at once."""
    return DeliveryPolicy.from_settings(get_settings(), backoff_base_s=0.0)


async def deliver_all(policy: DeliveryPolicy | None = None) -> int:
    """Run delivery rounds until nothing is due; the number of attempts made."""
    attempts = 0
    while made := await delivery.deliver_due(policy=policy or fast_policy()):
        attempts += made
    return attempts


async def attempts_of(session: AsyncSession, task_id: str) -> list[WebhookDelivery]:
    rows = await session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.task_id == task_id)
        .order_by(WebhookDelivery.attempt)
    )
    return list(rows.scalars())


def deliveries_counted(outcome: str) -> float:
    """The value of the webhook delivery counter for `outcome`, as a scrape would read it."""
    value = REGISTRY.get_sample_value("agent_growth_webhook_deliveries_total", {"outcome": outcome})
    return value or 0.0


@pytest.fixture
async def unrecordable_path(session: AsyncSession, database_url: str) -> AsyncIterator[str]:
    """A URL path whose attempts PostgreSQL refuses to record, through a real CHECK constraint."""
    dsn = db_engine.psycopg_dsn(database_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE webhook_deliveries ADD CONSTRAINT test_unrecordable"
            " CHECK (url NOT LIKE '%/unrecordable') NOT VALID"
        )
    yield "/unrecordable"
    # The test's reads hold a lock on the table until their transaction ends.
    await session.rollback()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE webhook_deliveries DROP CONSTRAINT test_unrecordable")


async def outbox_of(session: AsyncSession, task_id: str) -> WebhookOutbox:
    rows = await session.execute(
        select(WebhookOutbox)
        .where(WebhookOutbox.task_id == task_id)
        .execution_options(populate_existing=True)
    )
    return rows.scalar_one()


async def test_event_is_delivered_on_the_third_attempt_after_two_503s(
    session: AsyncSession, stage_event: StageEvent, receiver_factory: ReceiverFactory
) -> None:
    receiver = receiver_factory([Reply(503), Reply(503), Reply(200)])
    task = await stage_event(url=receiver.url())

    assert await deliver_all() == 3

    attempts = await attempts_of(session, task.task_id)
    assert [(a.attempt, a.outcome, a.status_code) for a in attempts] == [
        (1, "retry", 503),
        (2, "retry", 503),
        (3, "delivered", 200),
    ]
    assert attempts[0].error == "receiver answered 503"
    assert all(a.url == receiver.url() and a.duration_ms >= 0 for a in attempts)

    await session.refresh(task)
    assert task.webhook_retry_count == 2
    event = await outbox_of(session, task.task_id)
    assert (event.state, event.attempts) == ("delivered", 3)
    assert receiver.event_ids() == [str(event.event_id)] * 3


async def test_body_is_the_outbox_payload_as_json(
    session: AsyncSession, stage_event: StageEvent, receiver_factory: ReceiverFactory
) -> None:
    receiver = receiver_factory()
    task = await stage_event(url=receiver.url())

    await deliver_all()

    request = receiver.requests[0]
    payload = json.loads(request.body)
    assert set(payload) == {
        "event_id", "task_id", "agent_id", "status", "result", "error", "completed_at",
    }  # fmt: skip
    assert payload["task_id"] == task.task_id
    assert payload["agent_id"] == str(task.agent_id)
    assert payload["status"] == "completed"
    assert payload["result"] == {"overall_coverage": 42.5}
    assert payload == (await outbox_of(session, task.task_id)).payload
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"agent-growth/{agent_growth.__version__}"
    assert request.path == "/hook"


async def test_each_recorded_attempt_is_counted_by_its_outcome(
    stage_event: StageEvent, receiver_factory: ReceiverFactory
) -> None:
    flaky = receiver_factory([Reply(503), Reply(200)])
    refusing = receiver_factory([Reply(400)])
    await stage_event(url=flaky.url())
    await stage_event(url=refusing.url())
    outcomes = ("delivered", "retry", "failed")
    before = {outcome: deliveries_counted(outcome) for outcome in outcomes}

    assert await deliver_all() == 3

    counted = {outcome: deliveries_counted(outcome) - before[outcome] for outcome in outcomes}
    assert counted == {"delivered": 1, "retry": 1, "failed": 1}


async def test_an_attempt_that_cannot_be_recorded_does_not_stop_the_others(
    session: AsyncSession,
    stage_event: StageEvent,
    receiver_factory: ReceiverFactory,
    unrecordable_path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = receiver_factory()
    unrecorded = await stage_event(url=receiver.url(unrecordable_path))
    recorded = await stage_event(url=receiver.url())
    delivered_before = deliveries_counted("delivered")

    with caplog.at_level(logging.WARNING, logger=delivery.__name__):
        assert await delivery.deliver_due(policy=fast_policy()) == 2

    assert len(receiver.requests) == 2
    assert [a.outcome for a in await attempts_of(session, recorded.task_id)] == ["delivered"]
    assert await attempts_of(session, unrecorded.task_id) == []
    assert deliveries_counted("delivered") - delivered_before == 1
    [logged] = [r for r in caplog.records if "could not be recorded" in r.getMessage()]
    assert getattr(logged, "task_id", None) == unrecorded.task_id
    assert logged.exc_info is None  # One line: a refused write is no bug of ours.
    # The event stays pending under its claim, to be taken again once the claim runs out.
    event = await outbox_of(session, unrecorded.task_id)
    assert (event.state, event.attempts) == ("pending", 0)
    assert await delivery.deliver_due(policy=fast_policy()) == 0


async def test_a_client_error_is_final_after_one_attempt(
    session: AsyncSession, stage_event: StageEvent, receiver_factory: ReceiverFactory
) -> None:
    receiver = receiver_factory([Reply(400)])
    task = await stage_event(url=receiver.url())

    assert await deliver_all() == 1

    [attempt] = await attempts_of(session, task.task_id)
    assert (attempt.outcome, attempt.status_code) == ("failed", 400)
    assert attempt.error == "receiver answered 400"
    assert (await outbox_of(session, task.task_id)).state == "failed"
    await session.refresh(task)
    assert task.webhook_retry_count == 0


async def test_a_hanging_receiver_times_out_on_every_attempt(
    session: AsyncSession,
    stage_event: StageEvent,
    receiver_factory: ReceiverFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_WEBHOOK_TIMEOUT_S", "0.3")
    get_settings.cache_clear()
    receiver = receiver_factory([Reply(200, delay_s=5.0)] * 3)
    task = await stage_event(url=receiver.url())

    assert await deliver_all() == 3

    attempts = await attempts_of(session, task.task_id)
    assert [a.outcome for a in attempts] == ["retry", "retry", "failed"]
    assert all(a.error == "timed out after 0.3 s" and a.status_code is None for a in attempts)
    assert len(receiver.requests) == 3
    await session.refresh(task)
    assert task.webhook_retry_count == 2


async def test_429_is_retried(
    session: AsyncSession, stage_event: StageEvent, receiver_factory: ReceiverFactory
) -> None:
    receiver = receiver_factory([Reply(429), Reply(204)])
    task = await stage_event(url=receiver.url())

    assert await deliver_all() == 2

    attempts = await attempts_of(session, task.task_id)
    assert [(a.outcome, a.status_code) for a in attempts] == [("retry", 429), ("delivered", 204)]


async def test_a_redirect_is_not_followed_and_is_final(
    session: AsyncSession, stage_event: StageEvent, receiver_factory: ReceiverFactory
) -> None:
    elsewhere = receiver_factory()
    receiver = receiver_factory([Reply(302, location=elsewhere.url("/moved"))])
    task = await stage_event(url=receiver.url())

    assert await deliver_all() == 1

    [attempt] = await attempts_of(session, task.task_id)
    assert (attempt.outcome, attempt.status_code) == ("failed", 302)
    assert attempt.error is not None
    assert f"redirect 302 to {elsewhere.url('/moved')} not followed" in attempt.error
    assert elsewhere.requests == []


async def test_a_refused_connection_is_retried_until_attempts_run_out(
    session: AsyncSession, stage_event: StageEvent, closed_port: int
) -> None:
    task = await stage_event(url=f"http://127.0.0.1:{closed_port}/hook")

    assert await deliver_all() == 3

    attempts = await attempts_of(session, task.task_id)
    assert [a.outcome for a in attempts] == ["retry", "retry", "failed"]
    assert all(a.error and a.error.startswith("connection failed") for a in attempts)
    assert (await outbox_of(session, task.task_id)).state == "failed"


async def test_signature_verifies_with_the_receivers_check(
    session: AsyncSession,
    stage_event: StageEvent,
    receiver_factory: ReceiverFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_WEBHOOK_SECRET", "whsec_shared")
    get_settings.cache_clear()
    receiver = receiver_factory()
    task = await stage_event(url=receiver.url())

    await deliver_all()

    request = receiver.requests[0]
    header = request.headers[signing.SIGNATURE_HEADER]
    assert signing.verify_signature("whsec_shared", header=header, body=request.body)
    assert not signing.verify_signature("another-secret", header=header, body=request.body)
    event = await outbox_of(session, task.task_id)
    assert request.headers[signing.EVENT_ID_HEADER] == str(event.event_id)


async def test_without_a_secret_requests_are_unsigned_but_carry_the_event_id(
    stage_event: StageEvent, receiver_factory: ReceiverFactory
) -> None:
    receiver = receiver_factory()
    await stage_event(url=receiver.url())

    await deliver_all()

    assert signing.SIGNATURE_HEADER not in receiver.requests[0].headers
    assert receiver.requests[0].headers[signing.EVENT_ID_HEADER]


async def test_delivery_changes_only_the_retry_count_of_the_task(
    session: AsyncSession, stage_event: StageEvent, receiver_factory: ReceiverFactory
) -> None:
    receiver = receiver_factory([Reply(503)] * 3)
    task = await stage_event(url=receiver.url(), status="failed", error="corpus unavailable")
    before = {
        column: getattr(task, column)
        for column in BackgroundTask.__table__.columns.keys()  # noqa: SIM118
        if column != "webhook_retry_count"
    }

    await deliver_all()

    await session.refresh(task)
    after = {column: getattr(task, column) for column in before}
    assert after == before
    assert (task.status, task.webhook_retry_count) == ("failed", 2)


async def test_two_concurrent_rounds_never_send_one_event_twice(
    session: AsyncSession, stage_event: StageEvent, receiver_factory: ReceiverFactory
) -> None:
    receiver = receiver_factory([Reply(200, delay_s=0.2)] * 10)
    tasks = [await stage_event(url=receiver.url()) for _ in range(10)]

    made = await asyncio.gather(
        delivery.deliver_due(limit=6, policy=fast_policy()),
        delivery.deliver_due(limit=6, policy=fast_policy()),
    )

    assert sum(made) == 10
    assert sorted(receiver.event_ids()) == sorted(
        [str((await outbox_of(session, task.task_id)).event_id) for task in tasks]
    )
    assert await delivery.deliver_due(policy=fast_policy()) == 0


async def test_an_event_in_flight_is_not_taken_by_another_round(
    session: AsyncSession,
    stage_event: StageEvent,
    receiver_factory: ReceiverFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_WEBHOOK_TIMEOUT_S", "2")
    get_settings.cache_clear()
    receiver = receiver_factory([Reply(200, delay_s=0.5)])
    task = await stage_event(url=receiver.url())

    first = asyncio.create_task(delivery.deliver_due(policy=fast_policy()))
    await asyncio.to_thread(receiver.wait_for_requests, 1)
    second = await delivery.deliver_due(policy=fast_policy())

    assert (await first, second) == (1, 0)
    assert len(receiver.requests) == 1
    assert [a.outcome for a in await attempts_of(session, task.task_id)] == ["delivered"]


async def test_an_event_locked_by_another_worker_is_skipped_without_waiting(
    stage_event: StageEvent, receiver_factory: ReceiverFactory, database_url: str
) -> None:
    receiver = receiver_factory()
    task = await stage_event(url=receiver.url())

    async with await psycopg.AsyncConnection.connect(db_engine.psycopg_dsn(database_url)) as other:
        await other.execute(
            "SELECT 1 FROM webhook_outbox WHERE task_id = %s FOR UPDATE", (task.task_id,)
        )
        assert await asyncio.wait_for(delivery.deliver_due(policy=fast_policy()), 5) == 0
        await other.rollback()

    assert await delivery.deliver_due(policy=fast_policy()) == 1
    assert len(receiver.requests) == 1


async def test_a_host_resolving_to_a_blocked_address_fails_without_a_request(
    session: AsyncSession,
    stage_event: StageEvent,
    receiver_factory: ReceiverFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_WEBHOOK_ALLOW_PRIVATE", "false")
    get_settings.cache_clear()
    receiver = receiver_factory()
    task = await stage_event(url=receiver.url(host="localhost"))

    assert await deliver_all() == 1

    [attempt] = await attempts_of(session, task.task_id)
    assert attempt.outcome == "failed"
    assert attempt.error is not None
    assert attempt.error.startswith("blocked: localhost resolves to ")
    assert attempt.error.endswith(", a loopback address")
    assert receiver.requests == []


async def test_https_to_the_checked_address_keeps_the_name_for_tls_and_host(
    session: AsyncSession, stage_event: StageEvent, receiver_factory: ReceiverFactory
) -> None:
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    authority.configure_trust(client_tls)
    receiver = receiver_factory(tls=server_tls)
    by_name = await stage_event(url=receiver.url(host="localhost", scheme="https"))
    by_address = await stage_event(url=receiver.url(host="127.0.0.1", scheme="https"))

    policy = fast_policy()
    async with delivery.new_client(policy=policy, verify=client_tls) as client:
        while await delivery.deliver_due(policy=policy, client=client):
            pass

    # The certificate names only `localhost`: the request by name passes the TLS check although
    # it connects to the resolved address, and the one by address is refused by the same check.
    [delivered] = await attempts_of(session, by_name.task_id)
    assert delivered.outcome == "delivered"
    assert receiver.requests[0].headers["Host"] == f"localhost:{receiver.port}"
    refused = await attempts_of(session, by_address.task_id)
    assert [a.outcome for a in refused] == ["retry", "retry", "failed"]
    assert all(a.error and "CERTIFICATE_VERIFY_FAILED" in a.error for a in refused)


async def test_the_loop_delivers_past_a_hanging_receiver_and_stops_when_asked(
    session: AsyncSession,
    stage_event: StageEvent,
    receiver_factory: ReceiverFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_WEBHOOK_TIMEOUT_S", "1")
    get_settings.cache_clear()
    hanging = receiver_factory([Reply(200, delay_s=5.0)])
    quick = receiver_factory()
    slow_task = await stage_event(url=hanging.url())
    quick_task = await stage_event(url=quick.url())

    stop = asyncio.Event()
    loop = asyncio.create_task(delivery.run_delivery_loop(stop=stop, poll_interval_s=0.05))
    await asyncio.to_thread(hanging.wait_for_requests, 1)
    await asyncio.to_thread(quick.wait_for_requests, 1)

    # The quick receiver's event is recorded while the hanging one is still waiting for an answer.
    for _ in range(200):
        if await attempts_of(session, quick_task.task_id):
            break
        await asyncio.sleep(0.01)
    assert [a.outcome for a in await attempts_of(session, quick_task.task_id)] == ["delivered"]
    assert await attempts_of(session, slow_task.task_id) == []

    stop.set()
    await asyncio.wait_for(loop, 10)
    [timed_out] = await attempts_of(session, slow_task.task_id)
    assert (timed_out.outcome, timed_out.error) == ("retry", "timed out after 1 s")


def test_the_default_policy_waits_one_then_two_seconds_with_jitter() -> None:
    policy = DeliveryPolicy()

    first = [policy.backoff_s(attempt=1) for _ in range(200)]
    second = [policy.backoff_s(attempt=2) for _ in range(200)]

    assert (policy.timeout_s, policy.max_attempts) == (10.0, 3)
    assert all(0.75 <= pause <= 1.25 for pause in first)
    assert all(1.5 <= pause <= 2.5 for pause in second)
    assert len(set(first)) > 1
    assert policy.outcome(retryable=True, attempt=2) == "retry"
    assert policy.outcome(retryable=True, attempt=3) == "failed"
    assert policy.outcome(retryable=False, attempt=1) == "failed"
    assert [is_retryable_status(code) for code in (500, 503, 429, 400, 404, 410)] == [
        True, True, True, False, False, False,
    ]  # fmt: skip
