"""Agents through the API: creating over node ids or keys, reading, paging, deleting."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import redis.asyncio as aioredis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.db.models import BackgroundTask, CoverageHistory, CoverageTarget, WebhookOutbox
from agent_growth.tasks import queue
from tests.api.conftest import Corpus, run_as_worker

AGENTS = "/api/v1/agents"


def loc_fields(response: httpx.Response) -> list[str]:
    return [error["loc"][-1] for error in response.json()["detail"]]


async def create(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post(AGENTS, json={"name": "Naturalist", **body})


async def test_created_from_keys_and_readable_at_its_location(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    response = await create(
        client,
        taxonomy_node_keys=["Science"],
        scope_description="Birds and plants",
        target_docs_per_node=4,
        min_confidence=0.5,
    )

    assert response.status_code == 201, response.text
    agent = response.json()
    assert response.headers["Location"] == f"{AGENTS}/{agent['id']}"
    assert agent["taxonomy_node_ids"] == [str(corpus.nodes["Science"])]
    assert agent["taxonomy_version"] == "1"
    assert agent["target_docs_per_node"] == 4
    assert agent["min_confidence"] == 0.5
    assert agent["coverage_percent"] is None
    assert agent["created_at"].endswith("+00:00")

    fetched = await client.get(response.headers["Location"])
    assert fetched.status_code == 200
    assert fetched.json() == agent


async def test_created_from_ids_with_defaults(client: httpx.AsyncClient, corpus: Corpus) -> None:
    birds, plants = corpus.nodes["Science.Birds"], corpus.nodes["Science.Plants"]

    response = await create(client, taxonomy_node_ids=[str(birds), str(plants), str(birds)])

    assert response.status_code == 201, response.text
    agent = response.json()
    assert agent["taxonomy_node_ids"] == [str(birds), str(plants)]
    assert agent["target_docs_per_node"] == 10
    assert agent["min_confidence"] == 0.7
    assert agent["coverage_targets"] == {}


async def test_per_node_targets_by_key_or_id_are_stored_and_used(
    client: httpx.AsyncClient, session: AsyncSession, corpus: Corpus
) -> None:
    response = await create(
        client,
        taxonomy_node_keys=["Science"],
        target_docs_per_node=2,
        coverage_targets={"Science.Birds": 8, str(corpus.nodes["Science.Plants"]): 1},
    )

    assert response.status_code == 201, response.text
    agent = response.json()
    assert agent["coverage_targets"] == {"Science.Birds": 8, "Science.Plants": 1}
    stored = await session.scalar(select(func.count()).select_from(CoverageTarget))
    assert stored == 2

    coverage = (await client.get(f"{AGENTS}/{agent['id']}/coverage")).json()
    assert coverage["target_counts"] == {"Science": 2, "Science.Birds": 8, "Science.Plants": 1}
    assert coverage["node_coverage"]["Science.Birds"] == 25.0
    assert coverage["node_coverage"]["Science.Plants"] == 100.0


async def test_unknown_keys_are_named(client: httpx.AsyncClient, corpus: Corpus) -> None:
    response = await create(client, taxonomy_node_keys=["Science", "Poetry", "Science.Fish"])

    assert response.status_code == 422
    assert loc_fields(response) == ["taxonomy_node_keys"]
    message = response.json()["detail"][0]["msg"]
    assert "Poetry" in message and "Science.Fish" in message
    assert "Science," not in message


async def test_unknown_ids_are_named(client: httpx.AsyncClient, corpus: Corpus) -> None:
    stranger = uuid.uuid4()

    response = await create(client, taxonomy_node_ids=[str(corpus.nodes["Arts"]), str(stranger)])

    assert response.status_code == 422
    assert loc_fields(response) == ["taxonomy_node_ids"]
    assert str(stranger) in response.json()["detail"][0]["msg"]


async def test_a_version_that_does_not_exist_is_the_field_named(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    for scope in ({"taxonomy_node_keys": ["Science"]}, {"taxonomy_node_ids": [str(uuid.uuid4())]}):
        response = await create(client, taxonomy_version="9", **scope)

        assert response.status_code == 422
        assert loc_fields(response) == ["taxonomy_version"]
        assert response.json()["detail"][0]["msg"] == (
            "no taxonomy version '9'; there are '1', '2'"
        )


async def test_nodes_must_belong_to_the_chosen_version(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    version_two = str(corpus.other_version["Science"])

    refused = await create(client, taxonomy_node_ids=[version_two])
    accepted = await create(client, taxonomy_node_ids=[version_two], taxonomy_version="2")

    assert refused.status_code == 422
    assert version_two in refused.json()["detail"][0]["msg"]
    assert accepted.status_code == 201
    assert accepted.json()["taxonomy_version"] == "2"


async def test_scope_needs_exactly_one_of_ids_or_keys(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    neither = await create(client)
    both = await create(
        client, taxonomy_node_ids=[str(corpus.nodes["Arts"])], taxonomy_node_keys=["Arts"]
    )
    empty = await create(client, taxonomy_node_keys=[])

    assert neither.status_code == 422
    assert loc_fields(neither) == ["taxonomy_node_ids"]
    assert both.status_code == 422
    assert loc_fields(both) == ["taxonomy_node_keys"]
    assert empty.status_code == 422
    assert loc_fields(empty) == ["taxonomy_node_keys"]


async def test_targets_outside_the_scope_are_refused(
    client: httpx.AsyncClient, session: AsyncSession, corpus: Corpus
) -> None:
    response = await create(
        client,
        taxonomy_node_keys=["Science.Birds"],
        coverage_targets={"Science.Birds": 3, "Arts": 3, "Science": 3},
    )

    assert response.status_code == 422
    assert loc_fields(response) == ["coverage_targets"]
    message = response.json()["detail"][0]["msg"]
    assert "Arts" in message and "Science" in message and "Science.Birds" not in message
    assert await session.scalar(select(func.count()).select_from(CoverageTarget)) == 0


async def test_unknown_agent_is_404_and_malformed_id_is_422(client: httpx.AsyncClient) -> None:
    missing = await client.get(f"{AGENTS}/{uuid.uuid4()}")
    malformed = await client.get(f"{AGENTS}/not-a-uuid")

    assert missing.status_code == 404
    assert "not found" in missing.json()["detail"]
    assert malformed.status_code == 422
    assert loc_fields(malformed) == ["agent_id"]


async def test_listing_pages_through_every_agent_once_in_creation_order(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    created = []
    for number in range(5):
        response = await create(client, name=f"agent {number}", taxonomy_node_keys=["Arts"])
        created.append(response.json()["id"])

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(AGENTS, params=params)).json()
        pages += 1
        seen += [agent["id"] for agent in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == created
    assert pages == 3


async def test_listing_filters_by_name_and_version(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    await create(client, name="Bird watcher", taxonomy_node_keys=["Science.Birds"])
    await create(client, name="Gardener 100%", taxonomy_node_keys=["Science.Plants"])
    await create(client, name="Old birds", taxonomy_node_keys=["Science"], taxonomy_version="2")

    async def names(**params: str) -> list[str]:
        response = await client.get(AGENTS, params=params)
        assert response.status_code == 200, response.text
        return [agent["name"] for agent in response.json()["items"]]

    assert await names(name="BIRD") == ["Bird watcher", "Old birds"]
    assert await names(name="bird", taxonomy_version="2") == ["Old birds"]
    assert await names(name="100%") == ["Gardener 100%"]
    assert await names(name="0%") == ["Gardener 100%"]
    assert await names(name="_") == []


async def test_delete_cancels_open_tasks_and_removes_tasks_and_history(
    client: httpx.AsyncClient,
    session: AsyncSession,
    redis_client: aioredis.Redis,
    agent_id: uuid.UUID,
) -> None:
    url = f"{AGENTS}/{agent_id}/coverage/refresh"
    finished = (await client.post(url)).json()["task_id"]
    await run_as_worker(session, redis_client, finished)
    hook = {"webhook_url": "https://hooks.example.com/agent-growth"}
    running = (await client.post(url, json=hook)).json()["task_id"]
    await run_as_worker(session, redis_client, running, status=None)
    pending = (await client.post(url, json=hook)).json()["task_id"]
    session.add(
        CoverageHistory(
            agent_id=agent_id,
            overall_coverage=10,
            total_documents=1,
            total_chunks=1,
            version="1",
            node_coverage={},
        )
    )
    await session.commit()
    assert await queue.position(redis_client, task_id=pending, priority="medium") == 1

    async with redis_client.pubsub() as pubsub:
        await pubsub.subscribe(queue.cancel_channel())
        assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
        response = await client.delete(f"{AGENTS}/{agent_id}")
        signals = set()
        while (message := await pubsub.get_message(timeout=1)) is not None:
            signals.add(message["data"].decode())

    assert response.status_code == 204
    assert running in signals
    assert await queue.depth(redis_client) == {"high": 0, "medium": 0, "low": 0}
    assert await session.scalar(select(func.count()).select_from(BackgroundTask)) == 0
    assert await session.scalar(select(func.count()).select_from(CoverageHistory)) == 0
    assert (await client.get(f"{AGENTS}/{agent_id}")).status_code == 404
    assert (await client.delete(f"{AGENTS}/{agent_id}")).status_code == 404
    # The receivers of the ended tasks still hear of it.
    events = (await session.scalars(select(WebhookOutbox))).all()
    assert {event.task_id: event.payload["status"] for event in events} == {
        running: "cancelled",
        pending: "cancelled",
    }
    assert {event.payload["error"] for event in events} == {"cancelled: its agent was deleted"}


async def test_coverage_is_computed_now(client: httpx.AsyncClient, agent_id: uuid.UUID) -> None:
    response = await client.get(f"{AGENTS}/{agent_id}/coverage")

    assert response.status_code == 200, response.text
    coverage = response.json()
    assert coverage["agent_id"] == str(agent_id)
    assert coverage["document_counts"] == {"Science": 3, "Science.Birds": 2, "Science.Plants": 1}
    assert coverage["node_coverage"] == {
        "Science": 100.0,
        "Science.Birds": 100.0,
        "Science.Plants": 50.0,
    }
    assert coverage["total_chunks"] == 4
    assert coverage["calculated_at"].endswith("+00:00")


async def test_gaps_follow_the_threshold(client: httpx.AsyncClient, agent_id: uuid.UUID) -> None:
    url = f"{AGENTS}/{agent_id}/coverage/gaps"

    default = (await client.get(url)).json()
    strict = (await client.get(url, params={"threshold": 0.9})).json()

    assert default == {"agent_id": str(agent_id), "threshold": 0.5, "gaps": []}
    assert [gap["node_key"] for gap in strict["gaps"]] == ["Science.Plants"]
    assert strict["gaps"][0]["missing_docs"] == 1
    assert strict["threshold"] == 0.9
    assert (await client.get(f"{AGENTS}/{uuid.uuid4()}/coverage/gaps")).status_code == 404


async def test_of_concurrent_deletes_of_one_agent_exactly_one_succeeds(
    client: httpx.AsyncClient,
    session: AsyncSession,
    redis_client: aioredis.Redis,
    agent_id: uuid.UUID,
) -> None:
    for _ in range(3):
        response = await client.post(f"{AGENTS}/{agent_id}/coverage/refresh")
        assert response.status_code == 202, response.text

    answers = await asyncio.gather(*(client.delete(f"{AGENTS}/{agent_id}") for _ in range(20)))

    codes = sorted(response.status_code for response in answers)
    assert codes == [204] + [404] * 19, codes
    assert await session.scalar(select(func.count()).select_from(BackgroundTask)) == 0
    assert await queue.depth(redis_client) == {"high": 0, "medium": 0, "low": 0}


async def test_a_refresh_racing_a_delete_is_either_refused_or_cancelled(
    client: httpx.AsyncClient, session: AsyncSession, agent_id: uuid.UUID
) -> None:
    url = f"{AGENTS}/{agent_id}/coverage/refresh"
    hook = {"webhook_url": "https://hooks.example.com/agent-growth"}

    async def submit() -> httpx.Response:
        return await client.post(url, json=hook)

    async def delete_soon() -> httpx.Response:
        await asyncio.sleep(0.01)
        return await client.delete(f"{AGENTS}/{agent_id}")

    *refreshes, deleted = await asyncio.gather(*(submit() for _ in range(30)), delete_soon())

    assert deleted.status_code == 204
    accepted = {r.json()["task_id"] for r in refreshes if r.status_code == 202}
    assert {r.status_code for r in refreshes} <= {202, 404}
    # Every accepted refresh was cancelled, and its receiver will hear of it.
    events = (await session.scalars(select(WebhookOutbox))).all()
    assert {event.task_id for event in events} == accepted
    assert {event.payload["status"] for event in events} <= {"cancelled"}
