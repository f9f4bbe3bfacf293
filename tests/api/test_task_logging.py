"""Log records written while a request acts on one task carry that task's id, and only then."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth import logs
from agent_growth.api.app import create_app
from agent_growth.settings import get_settings
from agent_growth.tasks import lifecycle
from tests.api.conftest import API_KEY

Refresh = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Captured records, stamped by the same filter the entrypoints install."""
    stamp = logs.TaskIdFilter()
    caplog.handler.addFilter(stamp)
    caplog.set_level(logging.INFO, logger="agent_growth")
    yield caplog
    caplog.handler.removeFilter(stamp)


def about(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if text in record.getMessage()]


async def test_cancelling_stamps_the_core_records_with_the_task_id(
    client: httpx.AsyncClient,
    agent_id: uuid.UUID,
    refresh: Refresh,
    records: pytest.LogCaptureFixture,
) -> None:
    task_id = (await refresh(agent_id))["task_id"]
    records.clear()

    response = await client.delete(f"/api/v1/agents/tasks/{task_id}")

    assert response.status_code == 204
    [cancelled] = about(records, "cancelled while pending")
    assert getattr(cancelled, "task_id", None) == task_id


async def test_the_task_id_ends_with_its_request(
    client: httpx.AsyncClient,
    agent_id: uuid.UUID,
    refresh: Refresh,
    records: pytest.LogCaptureFixture,
) -> None:
    first = (await refresh(agent_id))["task_id"]
    await client.delete(f"/api/v1/agents/tasks/{first}")
    records.clear()

    # The in-process client runs each request in the test's own context, where a value left
    # behind by the previous request would show.
    second = (await refresh(agent_id))["task_id"]

    assert logs.current_task_id.get() is None
    [created] = about(records, f"task {second} created")
    assert getattr(created, "task_id", None) == second


async def test_reading_a_status_stamps_the_records_of_the_read(
    monkeypatch: pytest.MonkeyPatch,
    session: AsyncSession,
    agent_id: uuid.UUID,
    records: pytest.LogCaptureFixture,
) -> None:
    task = await lifecycle.create_task(session, agent_id=agent_id)
    # With Redis down, the queue position of a pending task cannot be read, which is logged.
    monkeypatch.setenv("AGENT_GROWTH_REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    app = create_app()

    async with (
        LifespanManager(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api.test",
            headers={"X-API-Key": API_KEY},
        ) as http,
    ):
        by_agent = await http.get(f"/api/v1/agents/{agent_id}/coverage/status/{task.task_id}")
        by_id = await http.get(f"/api/v1/agents/tasks/{task.task_id}")

    assert (by_agent.status_code, by_id.status_code) == (200, 200)
    unknown = about(records, f"queue position of task {task.task_id} unknown")
    assert len(unknown) == 2
    assert all(getattr(record, "task_id", None) == task.task_id for record in unknown)
