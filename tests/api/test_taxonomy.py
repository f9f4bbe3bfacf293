"""Listing the taxonomy: the keys an agent's scope names, and the documents below each node."""

from __future__ import annotations

import httpx

from tests import factories
from tests.api.conftest import Corpus

URL = "/api/v1/taxonomy/nodes"


async def test_nodes_come_in_key_order_with_the_documents_of_their_subtree(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    response = await client.get(URL)

    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(item["key"], item["documents"]) for item in items] == [
        ("Arts", 0),
        ("Science", 3),
        ("Science.Birds", 2),
        ("Science.Plants", 1),
    ]
    birds = items[2]
    assert birds["id"] == str(corpus.nodes["Science.Birds"])
    assert birds["parent_id"] == str(corpus.nodes["Science"])
    assert (birds["level"], birds["label"], birds["version"]) == (2, "Birds", "1")
    assert response.json()["next_cursor"] is None


async def test_a_document_on_two_nodes_counts_once_for_their_parent(
    client: httpx.AsyncClient, session, corpus: Corpus
) -> None:
    both = [corpus.nodes["Science.Birds"], corpus.nodes["Science.Plants"]]
    await factories.make_document(session, both)

    items = (await client.get(URL, params={"under": "Science"})).json()["items"]

    assert {item["key"]: item["documents"] for item in items} == {
        "Science": 4,
        "Science.Birds": 3,
        "Science.Plants": 2,
    }


async def test_under_narrows_to_a_subtree_of_the_version_asked_for(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    version_1 = (await client.get(URL, params={"under": "Science"})).json()["items"]
    version_2 = (await client.get(URL, params={"version": "2"})).json()["items"]

    assert [item["key"] for item in version_1] == ["Science", "Science.Birds", "Science.Plants"]
    assert [(item["key"], item["id"]) for item in version_2] == [
        ("Science", str(corpus.other_version["Science"]))
    ]


async def test_pages_follow_one_another_without_gaps_or_repeats(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(URL, params=params)).json()
        seen += [item["key"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == ["Arts", "Science", "Science.Birds", "Science.Plants"]


async def test_an_unknown_node_or_a_foreign_cursor_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    unknown = await client.get(URL, params={"under": "science"})
    first = (await client.get(URL, params={"limit": 1})).json()
    other_filters = await client.get(
        URL, params={"limit": 1, "version": "2", "cursor": first["next_cursor"]}
    )
    agents_cursor = await client.get(URL, params={"cursor": first["next_cursor"] + "x"})

    assert unknown.status_code == 422
    [error] = unknown.json()["detail"]
    assert error["loc"] == ["query", "under"]
    assert "'science'" in error["msg"] and "version '1'" in error["msg"]
    for response in (other_filters, agents_cursor):
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_an_unknown_version_is_a_422_naming_the_versions_there_are(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    for params in ({"version": "3"}, {"version": "3", "under": "Science"}):
        response = await client.get(URL, params=params)

        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", "version"]
        assert error["msg"] == "no taxonomy version '3'; there are '1', '2'"


async def test_a_cursor_of_the_agent_list_is_refused(
    client: httpx.AsyncClient, session, corpus: Corpus
) -> None:
    for name in ("a", "b"):
        await factories.make_agent(session, [corpus.nodes["Science"]], name=name)
    agents_cursor = (await client.get("/api/v1/agents", params={"limit": 1})).json()["next_cursor"]

    response = await client.get(URL, params={"cursor": agents_cursor})

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]
