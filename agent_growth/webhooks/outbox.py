"""The outbox: a webhook event is written in the same transaction as the task's terminal status.

Writing the event with the status means a crash can lose neither: a delivery loop (see
`delivery.py`) sends what the outbox holds, outside the workers' task slots.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.db.models import BackgroundTask, WebhookOutbox


def event_payload(task: BackgroundTask, event_id: uuid.UUID) -> dict[str, Any]:
    return {
        "event_id": str(event_id),
        "task_id": task.task_id,
        "agent_id": str(task.agent_id),
        "status": task.status,
        "result": task.result,
        "error": task.error,
        "completed_at": task.completed_at.isoformat() if task.completed_at else None,
    }


def add_event(session: AsyncSession, task: BackgroundTask) -> None:
    """Stage the terminal-status event of `task` when it has a webhook URL; the caller commits."""
    if not task.webhook_url:
        return
    event_id = uuid.uuid4()
    session.add(
        WebhookOutbox(
            event_id=event_id,
            task_id=task.task_id,
            url=task.webhook_url,
            payload=event_payload(task, event_id),
        )
    )
