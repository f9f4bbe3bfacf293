"""Coverage refresh tasks: submitting one, following it, listing and cancelling tasks.

Every route goes through `tasks.lifecycle`, the same core the operator uses, so a task behaves
the same whichever door it came in by. In local mode a refresh is submitted to the Redis queue
directly; in cluster mode (`AGENT_GROWTH_KUBERNETES=on`) the API writes the row and creates a
CoverageRefresh resource named after the task, and the operator queues it. Either way the row
is written first, and removed again when the second step fails, so a 503 leaves nothing behind.

The `/agents/tasks` routes live here and are registered before `/agents/{agent_id}`, which would
otherwise read `tasks` as a malformed agent id. For the same reason `DELETE /agents/tasks` has a
route of its own that answers 405, since `DELETE /agents/{agent_id}` would take it otherwise.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.api import pagination, request_body, task_logging
from agent_growth.api.deps import RedisDep, SessionDep, SettingsDep
from agent_growth.api.routes import API_PREFIX
from agent_growth.api.schemas import (
    Problem,
    RefreshRequest,
    TaskConflict,
    TaskId,
    TaskPage,
    TaskStatusName,
    TaskStatusOut,
)
from agent_growth.db.models import Agent, BackgroundTask
from agent_growth.errors import AgentNotFound, TaskNotFound
from agent_growth.settings import Settings
from agent_growth.tasks import lifecycle, status
from agent_growth.webhooks import guard

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix=f"{API_PREFIX}/agents", tags=["tasks"], route_class=request_body.JsonBodyRoute
)

KEYSET = pagination.Keyset(
    kind="tasks", at=BackgroundTask.created_at, ident=BackgroundTask.task_id, newest_first=True
)

TaskIdPath = Annotated[TaskId, Path(examples=["agent-coverage-0d4c..."])]

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "Queue or cluster down; see Retry-After"}
}


async def _task_status_out(
    session: AsyncSession, redis: aioredis.Redis, task: BackgroundTask
) -> TaskStatusOut:
    return TaskStatusOut.model_validate(await status.task_status(session, redis, task=task))


@router.get(
    "/tasks",
    response_model=TaskPage,
    summary="List tasks, newest first",
    description=(
        "A pending task carries its current `queue_position`, and every unfinished task a "
        "current `estimated_completion_at`, read for the whole page at once."
    ),
)
async def list_tasks(
    session: SessionDep,
    redis: RedisDep,
    status_: Annotated[TaskStatusName | None, Query(alias="status")] = None,
    agent_id: uuid.UUID | None = None,
    limit: pagination.PageSize = pagination.DEFAULT_PAGE_SIZE,
    cursor: pagination.CursorParam = None,
) -> TaskPage:
    filters = {"status": status_, "agent_id": agent_id}
    after = pagination.position(KEYSET, cursor, filters=filters)
    statement = select(BackgroundTask)
    if status_ is not None:
        statement = statement.where(BackgroundTask.status == status_)
    if agent_id is not None:
        statement = statement.where(BackgroundTask.agent_id == agent_id)

    page = await pagination.fetch_page(
        session, statement, keyset=KEYSET, after=after, filters=filters, limit=limit
    )
    statuses = await status.task_statuses(session, redis, tasks=page.rows)
    items = [TaskStatusOut.model_validate(statuses[task.task_id]) for task in page.rows]
    return TaskPage(items=items, next_cursor=page.next_cursor)


@router.delete("/tasks", include_in_schema=False)
async def cancel_all_tasks() -> None:
    raise HTTPException(
        status_code=405,
        detail="tasks are cancelled one at a time, with DELETE /api/v1/agents/tasks/{task_id}",
        headers={"Allow": "GET"},
    )


@router.get(
    "/tasks/{task_id}",
    response_model=TaskStatusOut,
    summary="Read a task by id alone",
    responses={404: {"model": Problem}},
)
async def get_task(task_id: TaskIdPath, session: SessionDep, redis: RedisDep) -> TaskStatusOut:
    task_logging.log_as_task(task_id)
    task = await session.get(BackgroundTask, task_id)
    if task is None:
        raise TaskNotFound(task_id)
    return await _task_status_out(session, redis, task)


@router.delete(
    "/tasks/{task_id}",
    status_code=204,
    response_class=Response,
    summary="Cancel a task",
    description=(
        "A pending task is cancelled at once and leaves the queue. A running task is asked to "
        "stop; its worker ends it `cancelled` within about a second. A finished task answers "
        "409 with its status."
    ),
    responses={404: {"model": Problem}, 409: {"model": TaskConflict}},
)
async def cancel_task(task_id: TaskIdPath, session: SessionDep, redis: RedisDep) -> None:
    task_logging.log_as_task(task_id)
    await lifecycle.cancel(session, redis, task_id=task_id)


@router.post(
    "/{agent_id}/coverage/refresh",
    status_code=202,
    response_model=TaskStatusOut,
    summary="Recompute an agent's coverage in the background",
    responses={
        202: {"headers": {"Location": {"description": "URL of the task's status"}}},
        404: {"model": Problem},
        **_UNAVAILABLE,
    },
)
async def refresh_coverage(
    agent_id: uuid.UUID,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
    body: Annotated[RefreshRequest | None, Body()] = None,
) -> TaskStatusOut:
    options = body or RefreshRequest()
    if options.webhook_url is not None:
        guard.check_webhook_url(options.webhook_url)

    if settings.kubernetes:
        task = await _create_in_cluster(
            session, settings=settings, agent_id=agent_id, options=options
        )
    else:
        task_id = lifecycle.new_task_id()
        task_logging.log_as_task(task_id)
        task = await lifecycle.submit(
            session,
            redis,
            agent_id=agent_id,
            priority=options.priority,
            timeout_seconds=options.timeout_seconds,
            webhook_url=options.webhook_url,
            task_id=task_id,
        )

    response.headers["Location"] = request.app.url_path_for(
        "get_task_status", agent_id=str(agent_id), task_id=task.task_id
    )
    return await _task_status_out(session, redis, task)


async def _create_in_cluster(
    session: AsyncSession, *, settings: Settings, agent_id: uuid.UUID, options: RefreshRequest
) -> BackgroundTask:
    """The row, then the CoverageRefresh resource whose operator queues it."""
    from agent_growth import kube  # Only cluster mode needs the Kubernetes client.

    namespace = settings.kubernetes_namespace
    task_id = lifecycle.new_task_id()
    # The id is chosen here, so even the record of the row's creation carries it.
    task_logging.log_as_task(task_id)
    task = await lifecycle.create_task(
        session,
        agent_id=agent_id,
        priority=options.priority,
        timeout_seconds=options.timeout_seconds,
        webhook_url=options.webhook_url,
        task_id=task_id,
        resource_namespace=namespace,
    )
    try:
        await kube.create_coverage_refresh(
            name=task.task_id,
            namespace=namespace,
            agent_id=str(agent_id),
            priority=options.priority,
            active_deadline_s=options.timeout_seconds,
            webhook_url=options.webhook_url,
        )
    except Exception:
        # Without its resource nobody would ever queue the row. Should the resource exist after
        # all (the reply was lost), the operator writes the row again from it.
        await lifecycle.discard(session, task.task_id)
        raise
    logger.info("task %s created as CoverageRefresh in namespace %s", task.task_id, namespace)
    return task


@router.get(
    "/{agent_id}/coverage/status/{task_id}",
    response_model=TaskStatusOut,
    summary="Follow a coverage refresh",
    responses={404: {"model": Problem}},
)
async def get_task_status(
    agent_id: uuid.UUID, task_id: TaskIdPath, session: SessionDep, redis: RedisDep
) -> TaskStatusOut:
    task_logging.log_as_task(task_id)
    task = await session.get(BackgroundTask, task_id)
    if task is None or task.agent_id != agent_id:
        if await session.get(Agent, agent_id) is None:
            raise AgentNotFound(agent_id)
        raise TaskNotFound(task_id)
    return await _task_status_out(session, redis, task)
