"""The taxonomy as clients pick an agent's scope from it: node keys, and documents under each.

Nodes are listed in key order, a page at a time; `under` narrows the list to one node and
everything below it: the scope that coverage would count for it. Each node's `documents`
is the coverage definition's `doc[n]` at any confidence, read for the page's nodes only.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth import coverage
from agent_growth.api import pagination
from agent_growth.api.deps import SessionDep
from agent_growth.api.errors import InvalidQuery
from agent_growth.api.routes import API_PREFIX
from agent_growth.api.schemas import (
    NodeKey,
    Problem,
    TaxonomyNodeOut,
    TaxonomyNodePage,
    VersionName,
)
from agent_growth.db.models import TaxonomyNode

router = APIRouter(prefix=f"{API_PREFIX}/taxonomy", tags=["taxonomy"])

KEYSET = pagination.Keyset(
    kind="taxonomy-nodes", at=None, ident=TaxonomyNode.key, newest_first=False
)


async def _subtree(session: AsyncSession, *, version: str, key: str) -> list[uuid.UUID]:
    """The ids of the node `key` and of every node below it; InvalidQuery if there is none."""
    root_ids, _ = await coverage.node_ids_for_keys(session, version=version, keys=[key])
    if not root_ids:
        await _check_version(session, version)
        raise InvalidQuery(
            "under",
            f"no node with key {key!r} in taxonomy version {version!r}; "
            "list the nodes without `under` to see the keys",
        )
    return await coverage.scope_node_ids(session, version=version, node_ids=root_ids)


async def _check_version(session: AsyncSession, version: str) -> None:
    """InvalidQuery naming the versions there are, unless taxonomy version `version` exists."""
    message = coverage.unknown_version_message(version, await coverage.taxonomy_versions(session))
    if message is not None:
        raise InvalidQuery("version", message)


@router.get(
    "/nodes",
    response_model=TaxonomyNodePage,
    summary="List taxonomy nodes in key order, with the documents under each",
    responses={
        422: {"model": Problem, "description": "Unknown version or `under` node, or bad cursor"}
    },
)
async def list_nodes(
    session: SessionDep,
    version: Annotated[VersionName, Query(description="Taxonomy version.")] = "1",
    under: Annotated[
        NodeKey | None, Query(description="Only this node and the nodes below it.")
    ] = None,
    limit: pagination.PageSize = pagination.DEFAULT_PAGE_SIZE,
    cursor: pagination.CursorParam = None,
) -> TaxonomyNodePage:
    filters = {"version": version, "under": under}
    after = pagination.position(KEYSET, cursor, filters=filters)
    statement = select(TaxonomyNode).where(TaxonomyNode.version == version)
    if under is not None:
        statement = statement.where(
            TaxonomyNode.id.in_(await _subtree(session, version=version, key=under))
        )

    page = await pagination.fetch_page(
        session, statement, keyset=KEYSET, after=after, filters=filters, limit=limit
    )
    if not page.rows and after is None:
        await _check_version(session, version)
    documents = await coverage.documents_per_node(
        session, version=version, node_ids=[node.id for node in page.rows]
    )
    return TaxonomyNodePage(
        items=[
            TaxonomyNodeOut(
                id=node.id,
                key=node.key,
                version=node.version,
                label=node.label,
                path=node.path,
                level=node.level,
                parent_id=node.parent_id,
                documents=documents.get(node.id, 0),
            )
            for node in page.rows
        ],
        next_cursor=page.next_cursor,
    )
