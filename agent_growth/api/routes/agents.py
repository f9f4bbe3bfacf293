"""Agents: creating one over a set of taxonomy nodes, reading, listing and deleting them.

The scope can be named by node ids or by node keys, since keys are what people read in the
taxonomy, and ids are what other systems store. Either way it is resolved and checked against
one taxonomy version before anything is written, and every unknown node is named in the 422.

Deleting an agent first cancels its open tasks through the task lifecycle, so no worker keeps
computing coverage for an agent that is gone; their webhook events are staged before the rows
go by cascade. Of concurrent deletes of one agent exactly one answers 204 and the others 404.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth import coverage
from agent_growth.api import pagination, request_body
from agent_growth.api.deps import RedisDep, SessionDep
from agent_growth.api.routes import API_PREFIX
from agent_growth.api.schemas import (
    AgentCreate,
    AgentOut,
    AgentPage,
    NameFilter,
    Problem,
    VersionName,
)
from agent_growth.db.models import Agent, CoverageTarget, TaxonomyNode
from agent_growth.errors import AgentNotFound, InvalidInput
from agent_growth.tasks import lifecycle

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix=f"{API_PREFIX}/agents", tags=["agents"], route_class=request_body.JsonBodyRoute
)

KEYSET = pagination.Keyset(
    kind="agents", at=Agent.created_at, ident=Agent.id, newest_first=False, uuid_ident=True
)

# Enough to recognise the unknown nodes in an error message without echoing a thousand of them.
MAX_NAMED_IN_ERROR = 20


def _listed(values: list[str]) -> str:
    shown = ", ".join(values[:MAX_NAMED_IN_ERROR])
    more = len(values) - MAX_NAMED_IN_ERROR
    return f"{shown} and {more} more" if more > 0 else shown


async def _scope_node_ids(session: AsyncSession, body: AgentCreate) -> list[uuid.UUID]:
    version = body.taxonomy_version
    if body.taxonomy_node_ids is not None and body.taxonomy_node_keys is not None:
        raise InvalidInput(
            "taxonomy_node_keys", "give taxonomy_node_ids or taxonomy_node_keys, not both"
        )

    async def check_version() -> None:
        # Unknown nodes of a version that does not exist: the version is what is wrong.
        known = await coverage.taxonomy_versions(session)
        message = coverage.unknown_version_message(version, known)
        if message is not None:
            raise InvalidInput("taxonomy_version", message)

    if body.taxonomy_node_ids is not None:
        unknown_ids = await coverage.find_unknown_nodes(
            session, version=version, node_ids=body.taxonomy_node_ids
        )
        if unknown_ids:
            await check_version()
            raise InvalidInput(
                "taxonomy_node_ids",
                f"no nodes with these ids in taxonomy version {version!r}: "
                f"{_listed([str(node_id) for node_id in unknown_ids])}",
            )
        return list(dict.fromkeys(body.taxonomy_node_ids))

    if body.taxonomy_node_keys is not None:
        node_ids, unknown_keys = await coverage.node_ids_for_keys(
            session, version=version, keys=body.taxonomy_node_keys
        )
        if unknown_keys:
            await check_version()
            raise InvalidInput(
                "taxonomy_node_keys",
                f"no nodes with these keys in taxonomy version {version!r}: "
                f"{_listed(unknown_keys)}; GET /api/v1/taxonomy/nodes lists the keys",
            )
        return node_ids

    raise InvalidInput(
        "taxonomy_node_ids", "give the agent's scope as taxonomy_node_ids or taxonomy_node_keys"
    )


async def _resolve_targets(
    session: AsyncSession, *, body: AgentCreate, node_ids: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Per-node targets by node id; every node must be in the agent's scope."""
    if not body.coverage_targets:
        return {}

    def canonical(ref: str) -> str:
        try:
            return str(uuid.UUID(ref))
        except ValueError:
            return ref

    refs = {canonical(ref): target for ref, target in body.coverage_targets.items()}
    named = await coverage.scope_nodes_named(
        session, version=body.taxonomy_version, node_ids=node_ids, refs=list(refs)
    )
    targets: dict[uuid.UUID, int] = {}
    matched: set[str] = set()
    for node_id, key in named.items():
        for ref in (key, str(node_id)):
            if ref not in refs:
                continue
            if node_id in targets and targets[node_id] != refs[ref]:
                raise InvalidInput("coverage_targets", f"node {key} is given two different targets")
            targets[node_id] = refs[ref]
            matched.add(ref)

    unmatched = [ref for ref in refs if ref not in matched]
    if unmatched:
        raise InvalidInput(
            "coverage_targets",
            f"these nodes are not in the agent's scope (the nodes it names and those below "
            f"them, in taxonomy version {body.taxonomy_version!r}): {_listed(unmatched)}",
        )
    return targets


async def _targets_by_agent(
    session: AsyncSession, agent_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    rows = await session.execute(
        select(CoverageTarget.agent_id, TaxonomyNode.key, CoverageTarget.target_docs)
        .join(TaxonomyNode, TaxonomyNode.id == CoverageTarget.node_id)
        .where(CoverageTarget.agent_id.in_(agent_ids))
        .order_by(TaxonomyNode.key)
    )
    by_agent: dict[uuid.UUID, dict[str, int]] = {agent_id: {} for agent_id in agent_ids}
    for agent_id, key, target in rows:
        by_agent[agent_id][key] = target
    return by_agent


AGENT_COLUMNS = tuple(name for name in AgentOut.model_fields if name != "coverage_targets")


def _agent_out(agent: Agent, targets: dict[str, int]) -> AgentOut:
    return AgentOut.model_validate(
        {
            **{name: getattr(agent, name) for name in AGENT_COLUMNS},
            "coverage_targets": targets,
        }
    )


@router.post(
    "",
    status_code=201,
    response_model=AgentOut,
    summary="Create an agent",
    responses={201: {"headers": {"Location": {"description": "URL of the new agent"}}}},
)
async def create_agent(
    body: AgentCreate, session: SessionDep, request: Request, response: Response
) -> AgentOut:
    node_ids = await _scope_node_ids(session, body)
    targets = await _resolve_targets(session, body=body, node_ids=node_ids)

    agent = Agent(
        name=body.name,
        taxonomy_node_ids=node_ids,
        taxonomy_version=body.taxonomy_version,
        scope_description=body.scope_description,
        target_docs_per_node=body.target_docs_per_node,
        min_confidence=body.min_confidence,
    )
    session.add(agent)
    await session.flush()
    session.add_all(
        CoverageTarget(agent_id=agent.id, node_id=node_id, target_docs=target)
        for node_id, target in targets.items()
    )
    await session.commit()
    await session.refresh(agent)
    logger.info("agent %s created over %d nodes", agent.id, len(node_ids))

    response.headers["Location"] = request.app.url_path_for("get_agent", agent_id=str(agent.id))
    by_agent = await _targets_by_agent(session, [agent.id])
    return _agent_out(agent, by_agent[agent.id])


@router.get(
    "",
    response_model=AgentPage,
    summary="List agents, oldest first",
)
async def list_agents(
    session: SessionDep,
    limit: pagination.PageSize = pagination.DEFAULT_PAGE_SIZE,
    cursor: pagination.CursorParam = None,
    name: Annotated[
        NameFilter | None, Query(description="Case-insensitive substring of the name.")
    ] = None,
    taxonomy_version: Annotated[VersionName | None, Query()] = None,
) -> AgentPage:
    filters = {"name": name, "taxonomy_version": taxonomy_version}
    after = pagination.position(KEYSET, cursor, filters=filters)
    statement = select(Agent)
    if name is not None:
        statement = statement.where(Agent.name.icontains(name, autoescape=True))
    if taxonomy_version is not None:
        statement = statement.where(Agent.taxonomy_version == taxonomy_version)

    page = await pagination.fetch_page(
        session, statement, keyset=KEYSET, after=after, filters=filters, limit=limit
    )
    by_agent = await _targets_by_agent(session, [agent.id for agent in page.rows])
    return AgentPage(
        items=[_agent_out(agent, by_agent[agent.id]) for agent in page.rows],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{agent_id}",
    response_model=AgentOut,
    summary="Read an agent",
    responses={404: {"model": Problem}},
)
async def get_agent(agent_id: uuid.UUID, session: SessionDep) -> AgentOut:
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise AgentNotFound(agent_id)
    by_agent = await _targets_by_agent(session, [agent.id])
    return _agent_out(agent, by_agent[agent.id])


@router.delete(
    "/{agent_id}",
    status_code=204,
    response_class=Response,
    summary="Delete an agent, its tasks and its history",
    responses={404: {"model": Problem}},
)
async def delete_agent(agent_id: uuid.UUID, session: SessionDep, redis: RedisDep) -> None:
    await lifecycle.delete_agent(session, redis, agent_id=agent_id)
