"""Delivering the outbox: POSTing each finished task's event to its webhook URL, with retries.

Delivery runs beside the task slots of each worker process (`run_delivery_loop`), so a slow
receiver never holds up a refresh and never changes a task's status; the only column it writes
on the task row is `webhook_retry_count`. Several processes share the outbox: each claims due
events in one statement (`FOR UPDATE SKIP LOCKED`) that also moves their `next_attempt_at` past
the attempt's timeout, so no other process takes an event while its attempt is in flight, and a
process that dies mid-attempt leaves the event to be taken again once the claim runs out.

Attempts run concurrently, each bounded by `webhook_timeout_s` end to end (DNS included), and
each is recorded as a `webhook_deliveries` row. Before sending, the host is resolved and checked
by `guard.resolve_and_check`; the request then goes to the checked address with the original
Host header and TLS server name, so DNS cannot point the request elsewhere after the check.

Known limits: webhooks do not go through an HTTP proxy (`HTTP_PROXY` is ignored on purpose,
since a proxy would resolve the name itself and defeat the address check); an egress proxy that
must be used has to enforce the same rules itself. Delivery is at least once: a process killed
after a receiver accepted an event but before recording it sends the event again, which is why
every request carries `X-Agent-Growth-Event-Id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import ssl
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

import agent_growth
from agent_growth import errors, logs, metrics
from agent_growth.db import engine as db_engine
from agent_growth.db.models import BackgroundTask, WebhookDelivery, WebhookOutbox
from agent_growth.settings import get_settings
from agent_growth.webhooks import guard, signing
from agent_growth.webhooks.policy import DeliveryPolicy, Outcome, is_retryable_status

logger = logging.getLogger(__name__)

USER_AGENT = f"agent-growth/{agent_growth.__version__}"

CLAIM_MARGIN_S = 30.0
"""A claim outlasts the attempt timeout by this much: time to record the attempt afterwards."""

DEFAULT_MAX_IN_FLIGHT = 20
"""Attempts one process runs at once; a hanging receiver occupies one of them, not the loop."""

DEFAULT_POLL_INTERVAL_S = 0.5
"""How long an idle loop waits before looking again: a due event waits at most about this long,
and an idle worker costs PostgreSQL two indexed queries a second."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class _DueEvent:
    event_id: uuid.UUID
    task_id: str
    url: str
    payload: dict[str, Any]
    attempt: int
    """Number of the attempt this claim makes, 1-based."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Answer:
    status_code: int | None = None
    error: str | None = None
    retryable: bool = False
    blocked: bool = False

    @property
    def delivered(self) -> bool:
        return self.error is None


def new_client(
    *, policy: DeliveryPolicy, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """The HTTP client that delivery reuses for every attempt of a loop."""
    return httpx.AsyncClient(
        timeout=policy.timeout_s,
        follow_redirects=False,
        trust_env=False,
        verify=verify,
        # Requests go to a pinned address, so pooled connections are keyed by address, not by
        # name; reusing one for another name on the same address would skip that name's TLS
        # check. Webhooks are one request per event, so closing each connection costs little.
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def _claim(*, limit: int, policy: DeliveryPolicy) -> list[_DueEvent]:
    due = (
        select(WebhookOutbox.event_id)
        .where(WebhookOutbox.state == "pending", WebhookOutbox.next_attempt_at <= func.now())
        .order_by(WebhookOutbox.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    claim_until = func.now() + dt.timedelta(seconds=policy.timeout_s + CLAIM_MARGIN_S)
    statement = (
        update(WebhookOutbox)
        .where(WebhookOutbox.event_id.in_(select(due.c.event_id)))
        .values(next_attempt_at=claim_until)
        .returning(
            WebhookOutbox.event_id,
            WebhookOutbox.task_id,
            WebhookOutbox.url,
            WebhookOutbox.payload,
            WebhookOutbox.attempts,
        )
        .execution_options(synchronize_session=False)
    )

    async with db_engine.session_factory()() as session, session.begin():
        rows = (await session.execute(statement)).all()
    return [
        _DueEvent(
            event_id=row.event_id,
            task_id=row.task_id,
            url=row.url,
            payload=row.payload,
            attempt=row.attempts + 1,
        )
        for row in rows
    ]


def _headers(event: _DueEvent, *, body: bytes) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.EVENT_ID_HEADER: str(event.event_id),
    }
    secret = get_settings().webhook_secret
    if secret is not None:
        headers[signing.SIGNATURE_HEADER] = signing.sign(secret.get_secret_value(), body)
    return headers


async def _post_pinned(
    client: httpx.AsyncClient, url: httpx.URL, *, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    """POST to the address the guard checked, keeping the name for Host and TLS."""
    host = url.raw_host.decode("ascii")
    addresses = await guard.resolve_and_check(host, port=url.port or _default_port(url))

    headers = {**headers, "Host": url.netloc.decode("ascii")}
    extensions = {} if guard.is_address(host) else {"sni_hostname": host}

    async def post_to(address: guard.IPAddress) -> httpx.Response:
        pinned = url.copy_with(host=str(address))
        async with client.stream(
            "POST", pinned, content=body, headers=headers, extensions=extensions
        ) as response:
            # The body is never read: only the status matters, and a receiver must not be able
            # to make us buffer an arbitrarily large answer.
            return response

    for address in addresses[:-1]:
        try:
            return await post_to(address)
        except httpx.ConnectError:
            # Nothing was sent yet, so the next checked address may be tried in this attempt.
            continue
    return await post_to(addresses[-1])


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _answer_for_status(response: httpx.Response) -> _Answer:
    code = response.status_code
    if 200 <= code < 300:
        return _Answer(status_code=code)
    if 300 <= code < 400:
        location = response.headers.get("location", "an address it did not give")
        return _Answer(
            status_code=code,
            error=f"redirect {code} to {location} not followed; set webhook_url to the final URL",
        )
    return _Answer(
        status_code=code,
        error=f"receiver answered {code}",
        retryable=is_retryable_status(code),
    )


async def _send(event: _DueEvent, *, client: httpx.AsyncClient, policy: DeliveryPolicy) -> _Answer:
    body = json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    try:
        url = guard.parse_webhook_url(event.url)
        async with asyncio.timeout(policy.timeout_s):
            response = await _post_pinned(
                client, url, body=body, headers=_headers(event, body=body)
            )
    except errors.InvalidInput as exc:
        return _Answer(error=f"invalid URL: {exc.message}")
    except guard.BlockedWebhookTarget as exc:
        return _Answer(error=str(exc), blocked=True)
    except guard.UnresolvableWebhookHost as exc:
        return _Answer(error=str(exc), retryable=True)
    except (TimeoutError, httpx.TimeoutException):
        return _Answer(error=f"timed out after {policy.timeout_s:g} s", retryable=True)
    except httpx.ConnectError as exc:
        return _Answer(error=f"connection failed: {_describe(exc)}", retryable=True)
    except httpx.TransportError as exc:
        return _Answer(error=f"transport error: {_describe(exc)}", retryable=True)
    except Exception as exc:
        # Anything else is a fault of ours or of a library; it is recorded as an attempt that
        # may be retried, so that such an event fails after its attempts instead of being
        # claimed again forever.
        logger.exception(
            "webhook attempt raised task_id=%s event_id=%s", event.task_id, event.event_id
        )
        return _Answer(error=f"unexpected error: {_describe(exc)}", retryable=True)
    return _answer_for_status(response)


async def _record(
    event: _DueEvent, *, answer: _Answer, outcome: Outcome, duration_ms: int, retry_in_s: float
) -> bool:
    """Write the attempt and its consequence; False when the event was no longer ours."""
    state = {"delivered": "delivered", "failed": "failed", "retry": "pending"}[outcome]
    values: dict[str, Any] = {"attempts": event.attempt, "state": state}
    if outcome == "retry":
        values["next_attempt_at"] = func.now() + dt.timedelta(seconds=retry_in_s)

    async with db_engine.session_factory()() as session, session.begin():
        moved = await session.execute(
            update(WebhookOutbox)
            .where(
                WebhookOutbox.event_id == event.event_id,
                WebhookOutbox.state == "pending",
                WebhookOutbox.attempts == event.attempt - 1,
            )
            .values(**values)
            .returning(WebhookOutbox.event_id)
            .execution_options(synchronize_session=False)
        )
        if moved.first() is None:
            return False

        session.add(
            WebhookDelivery(
                event_id=event.event_id,
                task_id=event.task_id,
                url=event.url,
                attempt=event.attempt,
                outcome=outcome,
                status_code=answer.status_code,
                error=answer.error,
                duration_ms=duration_ms,
            )
        )
        await session.execute(
            update(BackgroundTask)
            .where(BackgroundTask.task_id == event.task_id)
            .values(webhook_retry_count=event.attempt - 1)
            .execution_options(synchronize_session=False)
        )
    # Counted once committed, so the counter and the webhook_deliveries table agree.
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    return True


async def _attempt(event: _DueEvent, *, client: httpx.AsyncClient, policy: DeliveryPolicy) -> None:
    started = time.monotonic()
    answer = await _send(event, client=client, policy=policy)
    duration_ms = round((time.monotonic() - started) * 1000)

    outcome: Outcome = (
        "delivered"
        if answer.delivered
        else policy.outcome(retryable=answer.retryable, attempt=event.attempt)
    )
    retry_in_s = policy.backoff_s(attempt=event.attempt) if outcome == "retry" else 0.0
    recorded = await _record(
        event, answer=answer, outcome=outcome, duration_ms=duration_ms, retry_in_s=retry_in_s
    )

    _log_attempt(
        event,
        answer=answer,
        outcome=outcome,
        recorded=recorded,
        retry_in_s=retry_in_s,
        duration_ms=duration_ms,
    )


def _log_attempt(
    event: _DueEvent,
    *,
    answer: _Answer,
    outcome: Outcome,
    recorded: bool,
    retry_in_s: float,
    duration_ms: int,
) -> None:
    ids = {"task_id": event.task_id, "event_id": str(event.event_id)}
    if not recorded:
        logger.warning(
            "webhook attempt not recorded, the event moved on meanwhile "
            "task_id=%s event_id=%s attempt=%d",
            event.task_id,
            event.event_id,
            event.attempt,
            extra=ids,
        )
    elif outcome == "delivered":
        logger.info(
            "webhook delivered task_id=%s event_id=%s attempt=%d status_code=%s duration_ms=%d",
            event.task_id,
            event.event_id,
            event.attempt,
            answer.status_code,
            duration_ms,
            extra=ids,
        )
    elif outcome == "retry":
        logger.warning(
            "webhook attempt failed, retrying in %.1f s task_id=%s event_id=%s attempt=%d error=%s",
            retry_in_s,
            event.task_id,
            event.event_id,
            event.attempt,
            answer.error,
            extra=ids,
        )
    else:
        logger.log(
            logging.WARNING if answer.blocked else logging.INFO,
            "webhook failed, giving up task_id=%s event_id=%s attempt=%d error=%s",
            event.task_id,
            event.event_id,
            event.attempt,
            answer.error,
            extra=ids,
        )


async def deliver_due(
    *,
    limit: int = DEFAULT_MAX_IN_FLIGHT,
    policy: DeliveryPolicy | None = None,
    client: httpx.AsyncClient | None = None,
) -> int:
    """Make one attempt for each of up to `limit` due events, concurrently; the number made.

    Waits for all of them. `policy` defaults to the settings with the standard backoff, and
    `client` to a client opened for this call. An attempt whose record cannot be written is
    logged and does not stop the others; its event is taken again once its claim runs out.
    Only claiming raises: SQLAlchemyError or OSError when PostgreSQL cannot be reached.
    """
    if policy is None:
        policy = DeliveryPolicy.from_settings(get_settings())
    claimed = await _claim(limit=limit, policy=policy)
    if not claimed:
        return 0

    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(new_client(policy=policy))
        await asyncio.gather(
            *(_attempt_or_log(event, client=client, policy=policy) for event in claimed)
        )
    return len(claimed)


async def _attempt_or_log(
    event: _DueEvent, *, client: httpx.AsyncClient, policy: DeliveryPolicy
) -> None:
    try:
        await _attempt(event, client=client, policy=policy)
    except (SQLAlchemyError, OSError) as exc:
        # The claim runs out and another round takes the event again.
        logger.warning(
            "webhook attempt could not be recorded task_id=%s event_id=%s: %s",
            event.task_id,
            event.event_id,
            errors.describe(exc),
            extra={"task_id": event.task_id, "event_id": str(event.event_id)},
        )
    except Exception:
        # The claim runs out and another round takes the event again.
        logger.exception(
            "webhook attempt could not be recorded task_id=%s event_id=%s",
            event.task_id,
            event.event_id,
            extra={"task_id": event.task_id, "event_id": str(event.event_id)},
        )


async def _wait(stop: asyncio.Event, *, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=timeout_s)


async def run_delivery_loop(
    *,
    stop: asyncio.Event,
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> None:
    """Deliver due events until `stop` is set, then let the attempts in flight finish.

    Each attempt runs as its own task, so the loop claims more events while slow receivers
    are still answering. When the loop is cancelled instead, attempts in flight are cancelled
    too and their events are taken again once their claims run out.
    """
    policy = DeliveryPolicy.from_settings(get_settings())
    in_flight: set[asyncio.Task[None]] = set()
    outage = logs.Outage(logger, "claiming due webhook events")
    logger.info("webhook delivery started max_in_flight=%d", max_in_flight)

    async with new_client(policy=policy) as client:
        try:
            while not stop.is_set():
                capacity = max_in_flight - len(in_flight)
                claimed: list[_DueEvent] = []
                if capacity > 0:
                    try:
                        claimed = await _claim(limit=capacity, policy=policy)
                    except (SQLAlchemyError, OSError) as exc:
                        await _wait(stop, timeout_s=outage.failed(errors.describe(exc)))
                        continue
                    except Exception:
                        logger.exception("claiming due webhook events failed; trying again")
                    else:
                        outage.recovered()

                for event in claimed:
                    task = asyncio.create_task(_attempt_or_log(event, client=client, policy=policy))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)

                if claimed and len(claimed) == capacity:
                    continue  # the batch was full, so more may be due right now
                logger.debug("webhook delivery idle in_flight=%d", len(in_flight))
                await _wait(stop, timeout_s=poll_interval_s)

        except asyncio.CancelledError:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise

        if in_flight:
            logger.info("webhook delivery stopping, waiting for %d attempts", len(in_flight))
            await asyncio.gather(*in_flight, return_exceptions=True)
    logger.info("webhook delivery stopped")
