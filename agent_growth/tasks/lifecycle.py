"""The life of a task, as conditional updates of its `background_tasks` row.

Every transition is one `UPDATE ... WHERE status = <expected> [AND lease_owner = <me>]`, so
PostgreSQL alone decides races: of two workers popping the same task only one claim matches, a
cancelled task can no longer be claimed, and a worker whose lease was taken over can no longer
finish. That is what makes "never runs twice at once, completes at most once" hold even though
the Redis queue may hold stale or duplicate entries.

Leases: a running task carries `lease_owner` and `lease_expires_at`. Its worker renews the lease
every heartbeat; once it lapses (the worker was killed), `reap_expired` puts the task back in the
queue, counting the attempt, or fails it after `max_attempts`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import psycopg
import redis.asyncio as aioredis
from sqlalchemy import case, cast, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth import metrics
from agent_growth.db.models import (
    DEFAULT_PRIORITY,
    DEFAULT_TIMEOUT_S,
    Agent,
    BackgroundTask,
    CoverageHistory,
)
from agent_growth.errors import (
    AgentNotFound,
    QueueUnavailable,
    TaskAlreadyFinished,
    TaskNotFound,
)
from agent_growth.settings import get_settings
from agent_growth.tasks import events, queue
from agent_growth.webhooks import outbox

logger = logging.getLogger(__name__)

TASK_ID_PREFIX = "agent-coverage-"

FinalStatus = Literal["completed", "failed", "cancelled", "timeout"]

# What every transition to a final status writes besides the status itself.
_ENDED_NOW: dict[str, Any] = {
    "completed_at": func.now(),
    "lease_owner": None,
    "lease_expires_at": None,
    "estimated_completion_at": None,
}

# A pending row younger than this may be between its commit and its enqueue; leave it be.
REQUEUE_MIN_AGE_S = 2.0

# In cluster mode the API commits the row, then creates its resource, whose operator queues it;
# the Kubernetes call may take up to its own timeout (kube.REQUEST_TIMEOUT_S, 10 s) first.
CLUSTER_REQUEUE_MIN_AGE_S = 30.0


def new_task_id() -> str:
    return f"{TASK_ID_PREFIX}{uuid.uuid4()}"


def _seconds(value: Any) -> Any:
    """An SQL interval of `value` seconds; `value` may be a number or an SQL expression."""
    return func.make_interval(0, 0, 0, 0, 0, 0, value)


async def _update_returning(session: AsyncSession, statement: Any) -> list[BackgroundTask]:
    statement = statement.returning(BackgroundTask).execution_options(populate_existing=True)
    return list((await session.scalars(statement)).all())


async def create_task(
    session: AsyncSession,
    *,
    agent_id: uuid.UUID,
    priority: str = DEFAULT_PRIORITY,
    timeout_seconds: int = DEFAULT_TIMEOUT_S,
    webhook_url: str | None = None,
    task_id: str | None = None,
    resource_namespace: str | None = None,
) -> BackgroundTask:
    """Insert and commit a pending task; it runs only once `enqueue` has queued it.

    The agent's existence is checked by its foreign key, in the same round trip as the insert.
    """
    statement = (
        insert(BackgroundTask)
        .values(
            task_id=task_id or new_task_id(),
            agent_id=agent_id,
            priority=priority,
            timeout_seconds=timeout_seconds,
            webhook_url=webhook_url,
            resource_namespace=resource_namespace,
        )
        .returning(BackgroundTask)
    )
    try:
        task = (await session.scalars(statement)).one()
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        if isinstance(exc.orig, psycopg.errors.ForeignKeyViolation):
            raise AgentNotFound(agent_id) from None
        raise
    logger.info("task %s created for agent %s, priority %s", task.task_id, agent_id, priority)
    return task


async def ensure_task(
    session: AsyncSession,
    *,
    task_id: str,
    agent_id: uuid.UUID,
    priority: str,
    timeout_seconds: int,
    webhook_url: str | None,
    resource_namespace: str | None,
) -> tuple[BackgroundTask, bool]:
    """The row behind a resource: the existing one, or a new pending one (then True)."""
    existing = await session.get(BackgroundTask, task_id)
    if existing is not None:
        return existing, False
    try:
        task = await create_task(
            session,
            agent_id=agent_id,
            priority=priority,
            timeout_seconds=timeout_seconds,
            webhook_url=webhook_url,
            task_id=task_id,
            resource_namespace=resource_namespace,
        )
    except IntegrityError:
        # Another process created it between our read and our insert.
        await session.rollback()
        existing = await session.get(BackgroundTask, task_id, populate_existing=True)
        if existing is None:
            raise
        return existing, False
    return task, True


async def enqueue(redis: aioredis.Redis, task: BackgroundTask) -> None:
    """Put a pending task in the queue; the one path by which the API and the operator queue."""
    if task.status != "pending":
        return
    await queue.push(
        redis, task_id=task.task_id, priority=task.priority, created_at=task.created_at
    )


async def submit(
    session: AsyncSession,
    redis: aioredis.Redis,
    *,
    agent_id: uuid.UUID,
    priority: str = DEFAULT_PRIORITY,
    timeout_seconds: int = DEFAULT_TIMEOUT_S,
    webhook_url: str | None = None,
    task_id: str | None = None,
) -> BackgroundTask:
    """Row first, then queue. If Redis fails in between, the row goes too: nothing is orphaned."""
    await queue.ping(redis)
    task = await create_task(
        session,
        agent_id=agent_id,
        priority=priority,
        timeout_seconds=timeout_seconds,
        webhook_url=webhook_url,
        task_id=task_id,
    )
    try:
        await enqueue(redis, task)
    except QueueUnavailable:
        await discard(session, task.task_id)
        raise
    return task


async def discard(session: AsyncSession, task_id: str) -> None:
    """Delete a pending task that was never queued, when what should follow its insert failed."""
    await session.execute(
        delete(BackgroundTask).where(
            BackgroundTask.task_id == task_id, BackgroundTask.status == "pending"
        )
    )
    await session.commit()


async def cancel(session: AsyncSession, redis: aioredis.Redis, *, task_id: str) -> BackgroundTask:
    """Cancel a pending task at once, or ask the worker of a running one to stop."""
    cancelled = await _update_returning(
        session,
        update(BackgroundTask)
        .where(BackgroundTask.task_id == task_id, BackgroundTask.status == "pending")
        .values(
            status="cancelled",
            cancellation_requested=True,
            error="cancelled before it started",
            **_ENDED_NOW,
        ),
    )
    if cancelled:
        task = cancelled[0]
        outbox.add_event(session, task)
        await session.commit()
        try:
            await queue.remove(redis, task_id)
        except QueueUnavailable as exc:
            # The claim refuses a cancelled task, so a stale queue entry is only a wasted pop.
            logger.warning("task %s cancelled but still queued: %s", task_id, exc)
        await _announce_ended(redis, [task])
        logger.info("task %s cancelled while pending", task_id)
        return task

    requested = await _update_returning(
        session,
        update(BackgroundTask)
        .where(BackgroundTask.task_id == task_id, BackgroundTask.status == "running")
        .values(cancellation_requested=True),
    )
    if requested:
        await session.commit()
        await events.signal_cancel(redis, task_id)
        logger.info("cancellation of running task %s requested", task_id)
        return requested[0]

    await session.rollback()
    finished = await session.get(BackgroundTask, task_id, populate_existing=True)
    if finished is None:
        raise TaskNotFound(task_id)
    raise TaskAlreadyFinished(task_id, finished.status)


async def delete_agent(
    session: AsyncSession, redis: aioredis.Redis, *, agent_id: uuid.UUID
) -> None:
    """Delete an agent with its tasks and history; its unfinished tasks end as cancelled first.

    Their webhook events are staged before the rows go (the outbox outlives them). One
    transaction holds the agent's row lock from the cancellation to the delete, so a refresh
    submitted meanwhile waits on that lock and then finds no agent: no task slips in between
    to vanish uncancelled. A worker running one of the tasks finds its lease gone at its next
    heartbeat and stops without recording anything.
    """
    locked = await session.scalar(select(Agent.id).where(Agent.id == agent_id).with_for_update())
    if locked is None:
        raise AgentNotFound(agent_id)
    ended = await _update_returning(
        session,
        update(BackgroundTask)
        .where(
            BackgroundTask.agent_id == agent_id,
            BackgroundTask.status.in_(("pending", "running")),
        )
        .values(
            status="cancelled",
            cancellation_requested=True,
            error="cancelled: its agent was deleted",
            **_ENDED_NOW,
        ),
    )
    for task in ended:
        outbox.add_event(session, task)
    await session.execute(delete(Agent).where(Agent.id == agent_id))
    await session.commit()

    for task in ended:
        try:
            await queue.remove(redis, task.task_id)
        except QueueUnavailable as exc:
            logger.warning("task %s cancelled but still queued: %s", task.task_id, exc)
        await events.signal_cancel(redis, task.task_id)
    await _announce_ended(redis, ended)
    logger.info("agent %s deleted; %d unfinished tasks cancelled", agent_id, len(ended))


async def claim(session: AsyncSession, *, task_id: str, worker_id: str) -> BackgroundTask | None:
    """Take a popped task under a lease; None when it is no longer pending (cancelled, taken)."""
    settings = get_settings()
    claimed = await _update_returning(
        session,
        update(BackgroundTask)
        .where(BackgroundTask.task_id == task_id, BackgroundTask.status == "pending")
        .values(
            status="running",
            started_at=func.now(),
            attempts=BackgroundTask.attempts + 1,
            lease_owner=worker_id,
            lease_expires_at=func.now() + _seconds(settings.lease_ttl_s),
            progress_percentage=0,
            estimated_completion_at=None,
        ),
    )
    await session.commit()
    return claimed[0] if claimed else None


async def heartbeat(
    session: AsyncSession, *, worker_id: str, task_ids: Sequence[str]
) -> dict[str, bool]:
    """Renew the leases of `task_ids` that this worker still holds.

    Returns {task_id: cancellation requested} for the leases kept; a task missing from the
    answer was lost. Only the tasks the worker is running are named, so a task it has lost
    track of keeps no lease alive and is reclaimed.
    """
    if not task_ids:
        return {}
    statement = (
        update(BackgroundTask)
        .where(
            BackgroundTask.task_id.in_(task_ids),
            BackgroundTask.lease_owner == worker_id,
            BackgroundTask.status == "running",
        )
        .values(lease_expires_at=func.now() + _seconds(get_settings().lease_ttl_s))
        .returning(BackgroundTask.task_id, BackgroundTask.cancellation_requested)
    )
    rows = (await session.execute(statement)).all()
    await session.commit()
    return {task_id: requested for task_id, requested in rows}


async def report_progress(
    session: AsyncSession,
    redis: aioredis.Redis,
    *,
    task_id: str,
    worker_id: str,
    progress: int,
) -> bool:
    """Record progress and a fresh ETA from the pace so far; False when the lease was lost."""
    eta = None
    if progress > 0:
        elapsed_s = func.extract("epoch", func.now() - BackgroundTask.started_at)
        eta = BackgroundTask.started_at + _seconds(elapsed_s * (100.0 / progress))
    statement = (
        update(BackgroundTask)
        .where(
            BackgroundTask.task_id == task_id,
            BackgroundTask.lease_owner == worker_id,
            BackgroundTask.status == "running",
        )
        .values(progress_percentage=progress, estimated_completion_at=eta)
        .returning(BackgroundTask.task_id)
    )
    kept = (await session.execute(statement)).first() is not None
    await session.commit()
    if kept:
        await events.publish(redis, events.TaskEvent(task_id, "running", progress))
    return kept


async def finish(
    session: AsyncSession,
    redis: aioredis.Redis,
    *,
    task_id: str,
    worker_id: str,
    status: FinalStatus,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    history: CoverageHistory | None = None,
) -> BackgroundTask | None:
    """End a running task this worker holds; with `history`, record it in the same transaction.

    Returns None when the lease was lost (the task was reclaimed or ended by someone else); then
    nothing is written, which is how a task completes at most once.

    A task whose cancellation was requested ends `cancelled` even when its work got done first:
    the client was told it would be cancelled, so no result or history is recorded for it.
    """
    if history is not None and status != "completed":
        raise ValueError("only a completed task records coverage history")
    requested = BackgroundTask.cancellation_requested
    values: dict[str, Any] = {"status": status, "result": result, "error": error, **_ENDED_NOW}
    if status == "completed":
        values.update(
            status=case((requested, "cancelled"), else_="completed"),
            result=case((requested, None), else_=cast(result, JSONB)),
            error=case((requested, "cancelled while running"), else_=None),
            progress_percentage=case((requested, BackgroundTask.progress_percentage), else_=100),
        )
    finished = await _update_returning(
        session,
        update(BackgroundTask)
        .where(
            BackgroundTask.task_id == task_id,
            BackgroundTask.lease_owner == worker_id,
            BackgroundTask.status == "running",
        )
        .values(**values),
    )
    if not finished:
        await session.rollback()
        logger.warning(
            "task %s was no longer held by %s; its outcome is dropped", task_id, worker_id
        )
        return None

    task = finished[0]
    if history is not None and task.status == "completed":
        await _record_history(session, task, history)
    outbox.add_event(session, task)
    await session.commit()
    await _announce_ended(redis, [task])
    logger.info("task %s ended %s", task_id, task.status)
    return task


async def _record_history(
    session: AsyncSession, task: BackgroundTask, history: CoverageHistory
) -> None:
    """Stage the history row of a completed task and the agent's cached coverage."""
    if task.completed_at is not None:
        history.timestamp = task.completed_at
    session.add(history)
    await session.execute(
        update(Agent)
        .where(Agent.id == task.agent_id)
        .values(
            coverage_percent=history.overall_coverage,
            total_documents=history.total_documents,
            total_chunks=history.total_chunks,
            last_coverage_update=task.completed_at,
        )
    )


async def _announce_ended(redis: aioredis.Redis, tasks: Sequence[BackgroundTask]) -> None:
    """Count ended tasks in the metrics and tell watchers, once their status is committed."""
    for task in tasks:
        metrics.TASKS_FINISHED.labels(task.status).inc()
        if task.started_at is not None and task.completed_at is not None:
            took_s = (task.completed_at - task.started_at).total_seconds()
            metrics.TASK_DURATION.observe(max(took_s, 0.0))
        await events.publish(
            redis, events.TaskEvent(task.task_id, task.status, task.progress_percentage)
        )


async def hand_back(
    session: AsyncSession, redis: aioredis.Redis, *, task_id: str, worker_id: str
) -> bool:
    """Return a running task to the queue without counting the attempt (worker shutting down)."""
    returned = await _update_returning(
        session,
        update(BackgroundTask)
        .where(
            BackgroundTask.task_id == task_id,
            BackgroundTask.lease_owner == worker_id,
            BackgroundTask.status == "running",
        )
        .values(
            status="pending",
            attempts=BackgroundTask.attempts - 1,
            started_at=None,
            lease_owner=None,
            lease_expires_at=None,
            progress_percentage=0,
            estimated_completion_at=None,
        ),
    )
    await session.commit()
    if not returned:
        return False
    await enqueue(redis, returned[0])
    await events.publish(redis, events.TaskEvent(task_id, "pending", 0))
    logger.info("task %s handed back to the queue by %s", task_id, worker_id)
    return True


async def reap_expired(session: AsyncSession, redis: aioredis.Redis) -> list[BackgroundTask]:
    """Take back running tasks whose lease lapsed: re-queue them, or end them after max attempts."""
    max_attempts = get_settings().max_attempts
    lapsed = (
        select(BackgroundTask.task_id)
        .where(BackgroundTask.status == "running", BackgroundTask.lease_expires_at < func.now())
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    exhausted = BackgroundTask.attempts >= max_attempts
    requested = BackgroundTask.cancellation_requested
    new_status = case((requested, "cancelled"), (exhausted, "failed"), else_="pending")
    ends = requested | exhausted
    reaped = await _update_returning(
        session,
        update(BackgroundTask)
        .where(BackgroundTask.task_id.in_(lapsed))
        .values(
            status=new_status,
            error=case(
                (requested, "cancelled; its worker stopped responding"),
                (
                    exhausted,
                    func.format(
                        "its worker stopped responding on each of %s attempts", max_attempts
                    ),
                ),
                else_=None,
            ),
            completed_at=case((ends, func.now()), else_=None),
            started_at=case((ends, BackgroundTask.started_at), else_=None),
            progress_percentage=case((ends, BackgroundTask.progress_percentage), else_=0),
            lease_owner=None,
            lease_expires_at=None,
            estimated_completion_at=None,
        ),
    )
    for task in reaped:
        if task.status != "pending":
            outbox.add_event(session, task)
    await session.commit()

    requeued = [task for task in reaped if task.status == "pending"]
    await _requeue(redis, requeued)
    metrics.TASKS_RECLAIMED.inc(len(reaped))
    for task in reaped:
        logger.warning(
            "task %s lost its worker (attempt %d of %d); now %s",
            task.task_id,
            task.attempts,
            max_attempts,
            task.status,
        )
    for task in requeued:
        await events.publish(redis, events.TaskEvent(task.task_id, "pending", 0))
    await _announce_ended(redis, [task for task in reaped if task.status != "pending"])
    return reaped


async def requeue_lost(session: AsyncSession, redis: aioredis.Redis) -> int:
    """Queue again every pending task that Redis no longer holds (after Redis lost its data).

    Redis normally holds every pending task, so first a count compares the two: only when
    PostgreSQL has more pending tasks than the queue holds are the pending rows read and pushed
    again (a push keeps the place of a task already queued).
    """
    pending = await session.scalar(select(func.count()).where(BackgroundTask.status == "pending"))
    queued = sum((await queue.depth(redis)).values())
    if not pending or pending <= queued:
        await session.commit()
        return 0

    # Rows of resources are queued by the operator; give it time to create the resource first.
    min_age_s = case(
        (BackgroundTask.resource_namespace.is_(None), REQUEUE_MIN_AGE_S),
        else_=CLUSTER_REQUEUE_MIN_AGE_S,
    )
    statement = select(
        BackgroundTask.task_id, BackgroundTask.priority, BackgroundTask.created_at
    ).where(
        BackgroundTask.status == "pending",
        BackgroundTask.created_at < func.now() - _seconds(min_age_s),
    )
    rows = (await session.execute(statement)).all()
    await session.commit()
    added = await queue.push_many(
        redis, [(task_id, priority, at) for task_id, priority, at in rows]
    )
    if added:
        # Usually tasks a worker popped a moment ago and is still claiming (harmless: the claim
        # decides); after a Redis restart without persistence, the whole backlog.
        logger.info("re-queued %d pending tasks missing from Redis", added)
    return added


async def expire_overdue(
    session: AsyncSession, redis: aioredis.Redis, *, grace_s: float
) -> list[str]:
    """End running tasks past their deadline plus `grace_s`, and tell their workers to stop."""
    deadline = BackgroundTask.started_at + _seconds(BackgroundTask.timeout_seconds + grace_s)
    expired = await _update_returning(
        session,
        update(BackgroundTask)
        .where(BackgroundTask.status == "running", deadline < func.now())
        .values(
            status="timeout",
            error=func.format(
                "exceeded its deadline of %s s; its worker did not stop it",
                BackgroundTask.timeout_seconds,
            ),
            **_ENDED_NOW,
        ),
    )
    for task in expired:
        outbox.add_event(session, task)
    await session.commit()
    for task in expired:
        logger.warning("task %s overran its deadline; ended as timeout", task.task_id)
        await events.signal_cancel(redis, task.task_id)
    await _announce_ended(redis, expired)
    return [task.task_id for task in expired]


async def _requeue(redis: aioredis.Redis, tasks: Sequence[BackgroundTask]) -> None:
    try:
        await queue.push_many(
            redis, [(task.task_id, task.priority, task.created_at) for task in tasks]
        )
    except QueueUnavailable as exc:
        # They stay pending in PostgreSQL; `requeue_lost` queues them once Redis is back.
        logger.warning("could not re-queue %d reclaimed tasks: %s", len(tasks), exc)
