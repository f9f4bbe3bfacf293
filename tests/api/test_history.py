"""Coverage history through the API: date bounds at day edges and across time zones, and cursor
paging that neither skips nor repeats rows sharing a timestamp."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.db.models import CoverageHistory
from agent_growth.tasks import lifecycle
from tests import factories
from tests.api.conftest import WORKER_ID, Corpus, run_as_worker

Refresh = Callable[..., Awaitable[dict[str, Any]]]

LAST_MOMENT_OF_MARCH_1 = dt.datetime(2026, 3, 1, 23, 59, 59, 999000, tzinfo=dt.UTC)
MIDNIGHT_MARCH_2 = dt.datetime(2026, 3, 2, 0, 0, 0, tzinfo=dt.UTC)


async def add_history(
    session: AsyncSession, agent_id: uuid.UUID, *timestamps: dt.datetime
) -> list[uuid.UUID]:
    rows = [
        CoverageHistory(
            id=uuid.uuid4(),
            agent_id=agent_id,
            timestamp=timestamp,
            overall_coverage=50,
            total_documents=3,
            total_chunks=4,
            version="1",
            node_coverage={"Science": {"documents": 3, "target": 2, "coverage": 100.0}},
        )
        for timestamp in timestamps
    ]
    session.add_all(rows)
    await session.commit()
    return [row.id for row in rows]


def history_getter(
    client: httpx.AsyncClient, agent_id: uuid.UUID
) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def get(**params: Any) -> dict[str, Any]:
        response = await client.get(f"/api/v1/agents/{agent_id}/coverage/history", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    return get


def stamps(page: dict[str, Any]) -> list[dt.datetime]:
    return [dt.datetime.fromisoformat(entry["timestamp"]) for entry in page["history"]]


async def test_a_date_bound_covers_its_whole_utc_day(
    client: httpx.AsyncClient, session: AsyncSession, agent_id: uuid.UUID
) -> None:
    await add_history(session, agent_id, LAST_MOMENT_OF_MARCH_1, MIDNIGHT_MARCH_2)
    get = history_getter(client, agent_id)

    assert stamps(await get(end_date="2026-03-01")) == [LAST_MOMENT_OF_MARCH_1]
    assert stamps(await get(start_date="2026-03-02")) == [MIDNIGHT_MARCH_2]
    assert stamps(await get(start_date="2026-03-01", end_date="2026-03-01")) == [
        LAST_MOMENT_OF_MARCH_1
    ]
    assert stamps(await get(start_date="2026-03-02", end_date="2026-03-02")) == [MIDNIGHT_MARCH_2]
    both = await get(start_date="2026-03-01", end_date="2026-03-02")
    assert stamps(both) == [MIDNIGHT_MARCH_2, LAST_MOMENT_OF_MARCH_1]
    assert both["total_entries"] == 2


async def test_datetime_bounds_are_instants_converted_to_utc(
    client: httpx.AsyncClient, session: AsyncSession, agent_id: uuid.UUID
) -> None:
    await add_history(session, agent_id, LAST_MOMENT_OF_MARCH_1, MIDNIGHT_MARCH_2)
    get = history_getter(client, agent_id)

    # 01:59:59.999 at +02:00 is the last moment of March 1 in UTC, and is included.
    assert stamps(await get(end_date="2026-03-02T01:59:59.999+02:00")) == [LAST_MOMENT_OF_MARCH_1]
    assert stamps(await get(end_date="2026-03-02T02:00:00+02:00")) == [
        MIDNIGHT_MARCH_2,
        LAST_MOMENT_OF_MARCH_1,
    ]
    assert stamps(await get(start_date="2026-03-01T19:00:00-05:00")) == [MIDNIGHT_MARCH_2]
    # Without an offset a date-time is UTC.
    assert stamps(await get(start_date="2026-03-01T23:59:59.9995")) == [MIDNIGHT_MARCH_2]
    assert stamps(await get(end_date="2026-03-01T23:59:59.999")) == [LAST_MOMENT_OF_MARCH_1]


async def test_an_unescaped_plus_in_an_offset_is_still_read_as_one(
    client: httpx.AsyncClient, session: AsyncSession, agent_id: uuid.UUID
) -> None:
    await add_history(session, agent_id, LAST_MOMENT_OF_MARCH_1, MIDNIGHT_MARCH_2)

    raw_query = "end_date=2026-03-02T01:59:59.999+02:00"
    response = await client.get(f"/api/v1/agents/{agent_id}/coverage/history?{raw_query}")

    assert response.status_code == 200, response.text
    assert stamps(response.json()) == [LAST_MOMENT_OF_MARCH_1]


async def test_paging_over_rows_sharing_one_timestamp_sees_each_once(
    client: httpx.AsyncClient, session: AsyncSession, agent_id: uuid.UUID
) -> None:
    inserted = await add_history(session, agent_id, *[MIDNIGHT_MARCH_2] * 5)
    await add_history(session, agent_id, LAST_MOMENT_OF_MARCH_1)
    get = history_getter(client, agent_id)

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2, "start_date": "2026-03-02"}
    pages = 0
    while True:
        page = await get(**params)
        pages += 1
        assert page["total_entries"] == 5
        seen += [entry["id"] for entry in page["history"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert sorted(seen) == sorted(str(row_id) for row_id in inserted)
    assert len(seen) == 5
    assert pages == 3


async def test_history_is_newest_first_with_utc_offsets(
    client: httpx.AsyncClient, session: AsyncSession, agent_id: uuid.UUID
) -> None:
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    await add_history(session, agent_id, *[base + dt.timedelta(hours=h) for h in (3, 1, 2)])

    page = await history_getter(client, agent_id)()

    assert stamps(page) == [base + dt.timedelta(hours=h) for h in (3, 2, 1)]
    assert all(entry["timestamp"].endswith("+00:00") for entry in page["history"])
    assert page["history"][0]["node_coverage"]["Science"]["documents"] == 3
    assert page["next_cursor"] is None


async def test_a_finished_refresh_appears_in_the_history(
    client: httpx.AsyncClient,
    session: AsyncSession,
    redis_client: aioredis.Redis,
    agent_id: uuid.UUID,
    refresh: Refresh,
) -> None:
    task_id = (await refresh(agent_id))["task_id"]
    await run_as_worker(session, redis_client, task_id, status=None)
    await lifecycle.finish(
        session,
        redis_client,
        task_id=task_id,
        worker_id=WORKER_ID,
        status="completed",
        history=CoverageHistory(
            agent_id=agent_id,
            task_id=task_id,
            overall_coverage=83.33,
            total_documents=3,
            total_chunks=4,
            version="1",
            node_coverage={},
        ),
    )

    page = await history_getter(client, agent_id)()
    agent = (await client.get(f"/api/v1/agents/{agent_id}")).json()

    assert [entry["task_id"] for entry in page["history"]] == [task_id]
    assert page["history"][0]["overall_coverage"] == 83.33
    assert agent["coverage_percent"] == 83.33
    assert agent["last_coverage_update"] == page["history"][0]["timestamp"]


async def test_bad_bounds_and_cursors_are_422_naming_the_parameter(
    client: httpx.AsyncClient, agent_id: uuid.UUID
) -> None:
    url = f"/api/v1/agents/{agent_id}/coverage/history"
    cases: list[tuple[dict[str, str | int], str]] = [
        ({"start_date": "2026-03-02", "end_date": "2026-03-01"}, "start_date"),
        ({"start_date": "2026-03-02T00:00:01", "end_date": "2026-03-02T00:00:00"}, "start_date"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"end_date": "2026-02-30"}, "end_date"),
        ({"start_date": "9999-12-31T23:00:00-02:00"}, "start_date"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
    ]

    for params, field in cases:
        response = await client.get(url, params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["detail"][0]["loc"] == ["query", field], params


async def test_the_last_day_of_the_calendar_is_a_valid_end(
    client: httpx.AsyncClient, agent_id: uuid.UUID
) -> None:
    response = await client.get(
        f"/api/v1/agents/{agent_id}/coverage/history", params={"end_date": "9999-12-31"}
    )

    assert response.status_code == 200, response.text


async def test_a_cursor_from_another_list_is_refused(
    client: httpx.AsyncClient, agent_id: uuid.UUID, refresh: Refresh
) -> None:
    for _ in range(2):
        await refresh(agent_id)
    tasks_cursor = (await client.get("/api/v1/agents/tasks", params={"limit": 1})).json()[
        "next_cursor"
    ]

    response = await client.get(
        f"/api/v1/agents/{agent_id}/coverage/history", params={"cursor": tasks_cursor}
    )

    assert tasks_cursor is not None
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_history_of_an_unknown_agent_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/agents/{uuid.uuid4()}/coverage/history")

    assert response.status_code == 404


async def test_a_cursor_is_refused_for_another_agent_or_other_bounds(
    client: httpx.AsyncClient, session: AsyncSession, corpus: Corpus, agent_id: uuid.UUID
) -> None:
    other_agent = await factories.make_agent(session, [corpus.nodes["Arts"]], name="other")
    day = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    for agent in (agent_id, other_agent):
        await add_history(session, agent, day, day + dt.timedelta(hours=1))
    page = await history_getter(client, agent_id)(limit=1, start_date="2026-03-01")
    cursor = page["next_cursor"]
    assert cursor is not None

    misuses: list[tuple[uuid.UUID, dict[str, str]]] = [
        (other_agent, {"start_date": "2026-03-01"}),
        (agent_id, {}),
        (agent_id, {"start_date": "2026-02-01"}),
    ]
    for agent, bounds in misuses:
        response = await client.get(
            f"/api/v1/agents/{agent}/coverage/history",
            params={"limit": 1, "cursor": cursor, **bounds},
        )
        assert response.status_code == 422, (agent, bounds, response.text)
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", "cursor"]
        assert "was returned for other filters" in error["msg"]

    same = await client.get(
        f"/api/v1/agents/{agent_id}/coverage/history",
        params={"limit": 1, "cursor": cursor, "start_date": "2026-03-01T00:00:00Z"},
    )
    assert same.status_code == 200, same.text
    assert stamps(same.json()) == [day]
