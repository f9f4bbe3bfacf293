"""Fixtures for webhook tests: receivers on loopback, and finished tasks with a staged event."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.db.models import Agent, BackgroundTask
from agent_growth.webhooks import outbox
from tests.webhooks.receiver import Receiver, Reply


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    receivers: list[Receiver] = []

    def start(script: list[Reply] | None = None, *, tls: ssl.SSLContext | None = None) -> Receiver:
        receiver = Receiver(script or [], tls=tls)
        receivers.append(receiver)
        return receiver

    yield start
    for receiver in receivers:
        receiver.close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens, so connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def stage_event(session: AsyncSession) -> Callable[..., Awaitable[BackgroundTask]]:
    """Stage a finished task with a webhook URL and its outbox event, committed."""

    async def stage(
        *, url: str, status: str = "completed", error: str | None = None
    ) -> BackgroundTask:
        agent = Agent(name="Webhook agent", taxonomy_node_ids=[], taxonomy_version="v1")
        session.add(agent)
        await session.flush()

        result: dict[str, Any] | None = {"overall_coverage": 42.5}
        task = BackgroundTask(
            task_id=f"task-{uuid.uuid4().hex[:12]}",
            agent_id=agent.id,
            status=status,
            started_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=3),
            completed_at=dt.datetime.now(dt.UTC),
            result=result if status == "completed" else None,
            error=error,
            webhook_url=url,
        )
        session.add(task)
        await session.flush()
        outbox.add_event(session, task)
        await session.commit()
        return task

    return stage
