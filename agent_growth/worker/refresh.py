"""One coverage refresh: compute the agent's coverage and shape it as a history row.

Progress is reported at the stages `coverage.compute_coverage` announces (25 after the scope is
resolved, 75 after documents are counted); the worker writes 0 when it claims and 100 when it
finishes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth import coverage
from agent_growth.db.models import BackgroundTask, CoverageHistory
from agent_growth.settings import get_settings

Progress = Callable[[int], Awaitable[None]]


async def run(
    task: BackgroundTask, *, session: AsyncSession, progress: Progress
) -> tuple[dict[str, Any], CoverageHistory]:
    """The task's result (as stored and sent by webhook) and its history row."""
    step_delay_s = get_settings().worker_step_delay_s

    async def stage_done(percent: int) -> None:
        await progress(percent)
        if step_delay_s:
            await asyncio.sleep(step_delay_s)

    if step_delay_s:
        await asyncio.sleep(step_delay_s)
    outcome = await coverage.compute_coverage(session, task.agent_id, progress=stage_done)

    result = {
        "overall_coverage": outcome.overall_coverage,
        "total_documents": outcome.total_documents,
        "total_chunks": outcome.total_chunks,
        "version": outcome.version,
        "gaps": len(outcome.gaps),
        "calculated_at": outcome.calculated_at.isoformat(),
    }
    history = CoverageHistory(
        agent_id=task.agent_id,
        task_id=task.task_id,
        overall_coverage=outcome.overall_coverage,
        total_documents=outcome.total_documents,
        total_chunks=outcome.total_chunks,
        version=outcome.version,
        node_coverage=outcome.node_summary(),
    )
    return result, history
