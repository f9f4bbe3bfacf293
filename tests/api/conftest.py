"""The API under test: the real app, lifespan included, served in-process over ASGI.

Requests go through the whole stack (routing, validation, auth, error handlers) to the real
PostgreSQL and Redis of the root conftest; only the network socket is left out. Corpora are
written straight into the database, as an import would leave them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.api.app import create_app
from agent_growth.db.models import BackgroundTask
from agent_growth.tasks import lifecycle, queue
from tests import factories

WORKER_ID = "api-test-worker"

# The root conftest makes this the only accepted key.
API_KEY = os.environ["AGENT_GROWTH_API_KEYS"]


@dataclass(frozen=True)
class Corpus:
    """`Science` with `Birds` and `Plants` below it, `Arts` beside it, in taxonomy version 1;
    `Science` again in version 2. Birds has 2 documents, Plants 1, Arts none."""

    nodes: dict[str, uuid.UUID]
    other_version: dict[str, uuid.UUID]


@pytest.fixture
async def app() -> AsyncIterator[FastAPI]:
    application = create_app()
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api.test", headers={"X-API-Key": API_KEY}
    ) as http:
        yield http


@pytest.fixture
async def corpus(session: AsyncSession) -> Corpus:
    nodes = await factories.make_taxonomy(
        session, ["Science", "Science.Birds", "Science.Plants", "Arts"]
    )
    other = await factories.make_taxonomy(session, ["Science"], version="2")
    await factories.make_document(session, [nodes["Science.Birds"]], chunks=2)
    await factories.make_document(session, [nodes["Science.Birds"]], chunks=1)
    await factories.make_document(session, [nodes["Science.Plants"]], chunks=1)
    return Corpus(nodes=nodes, other_version=other)


@pytest.fixture
async def agent_id(session: AsyncSession, corpus: Corpus) -> uuid.UUID:
    """An agent over `Science` in version 1, two documents wanted per node."""
    return await factories.make_agent(session, [corpus.nodes["Science"]], target=2)


@pytest.fixture
def refresh(
    client: httpx.AsyncClient,
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Submit a refresh through the API; returns the 202 body."""

    async def submit(agent: uuid.UUID, **body: Any) -> dict[str, Any]:
        response = await client.post(f"/api/v1/agents/{agent}/coverage/refresh", json=body)
        assert response.status_code == 202, response.text
        return response.json()

    return submit


async def run_as_worker(
    session: AsyncSession,
    redis: aioredis.Redis,
    task_id: str,
    *,
    status: Literal["completed", "failed", "cancelled", "timeout"] | None = "completed",
) -> BackgroundTask:
    """Take a queued task the way a worker does, and end it with `status` (None: keep running)."""
    await queue.remove(redis, task_id)
    task = await lifecycle.claim(session, task_id=task_id, worker_id=WORKER_ID)
    assert task is not None, f"{task_id} could not be claimed"
    if status is None:
        return task
    finished = await lifecycle.finish(
        session,
        redis,
        task_id=task_id,
        worker_id=WORKER_ID,
        status=status,
        result={"overall_coverage": 50.0} if status == "completed" else None,
        error=None if status == "completed" else "it went wrong",
    )
    assert finished is not None
    return finished
