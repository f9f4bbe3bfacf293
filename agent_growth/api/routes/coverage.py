"""An agent's coverage: computed on request, its gaps, and its recorded history.

`GET .../coverage` computes coverage now, in the request, with the set-based SQL of
`agent_growth.coverage`; a refresh task (see `routes/tasks.py`) computes the same thing in the
background and records it in the history that `GET .../coverage/history` pages through.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from agent_growth import coverage
from agent_growth.api import pagination, request_body, time_range
from agent_growth.api.deps import SessionDep
from agent_growth.api.routes import API_PREFIX
from agent_growth.api.schemas import (
    CoverageOut,
    GapOut,
    GapsOut,
    HistoryEntry,
    HistoryPage,
    Problem,
)
from agent_growth.db.models import Agent, CoverageHistory
from agent_growth.errors import AgentNotFound

router = APIRouter(
    prefix=f"{API_PREFIX}/agents/{{agent_id}}/coverage",
    tags=["coverage"],
    responses={404: {"model": Problem}},
    route_class=request_body.JsonBodyRoute,
)

KEYSET = pagination.Keyset(
    kind="history",
    at=CoverageHistory.timestamp,
    ident=CoverageHistory.id,
    newest_first=True,
    uuid_ident=True,
)

MAX_BOUND_CHARS = 64
"""Longer than any ISO 8601 date-time, fractions and offset included."""

BOUND_DESCRIPTION = (
    "A date (YYYY-MM-DD, the whole UTC day) or an ISO 8601 date-time (UTC when it has no "
    "offset); the bound is included."
)


@router.get("", response_model=CoverageOut, summary="Compute an agent's coverage now")
async def get_coverage(agent_id: uuid.UUID, session: SessionDep) -> CoverageOut:
    result = await coverage.compute_coverage(session, agent_id)
    return CoverageOut.model_validate(result.as_dict())


@router.get("/gaps", response_model=GapsOut, summary="Nodes below a share of their target")
async def get_gaps(
    agent_id: uuid.UUID,
    session: SessionDep,
    threshold: Annotated[
        float,
        Query(
            ge=0,
            le=1,
            allow_inf_nan=False,
            description="A node is a gap below this share of its target.",
        ),
    ] = coverage.DEFAULT_THRESHOLD,
) -> GapsOut:
    result = await coverage.compute_coverage(session, agent_id, threshold=threshold)
    gaps = [GapOut.model_validate(gap, from_attributes=True) for gap in result.gaps]
    return GapsOut(agent_id=agent_id, threshold=threshold, gaps=gaps)


@router.get("/history", response_model=HistoryPage, summary="Recorded coverage, newest first")
async def get_history(
    agent_id: uuid.UUID,
    session: SessionDep,
    start_date: Annotated[
        str | None, Query(max_length=MAX_BOUND_CHARS, description=BOUND_DESCRIPTION)
    ] = None,
    end_date: Annotated[
        str | None, Query(max_length=MAX_BOUND_CHARS, description=BOUND_DESCRIPTION)
    ] = None,
    limit: pagination.PageSize = pagination.DEFAULT_PAGE_SIZE,
    cursor: pagination.CursorParam = None,
) -> HistoryPage:
    start_at, end_before = time_range.window(start_date=start_date, end_date=end_date)
    filters = {"agent_id": agent_id, "start_at": start_at, "end_before": end_before}
    after = pagination.position(KEYSET, cursor, filters=filters)
    if await session.get(Agent, agent_id) is None:
        raise AgentNotFound(agent_id)

    within = [CoverageHistory.agent_id == agent_id]
    if start_at is not None:
        within.append(CoverageHistory.timestamp >= start_at)
    if end_before is not None:
        within.append(CoverageHistory.timestamp < end_before)
    total = await session.scalar(select(func.count()).select_from(CoverageHistory).where(*within))
    page = await pagination.fetch_page(
        session,
        select(CoverageHistory).where(*within),
        keyset=KEYSET,
        after=after,
        filters=filters,
        limit=limit,
    )

    return HistoryPage(
        agent_id=agent_id,
        history=[HistoryEntry.model_validate(row, from_attributes=True) for row in page.rows],
        total_entries=total or 0,
        next_cursor=page.next_cursor,
    )
