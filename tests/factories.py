"""Small hand-made corpora for tests: a few taxonomy nodes, documents and an agent."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.db.models import Agent, Chunk, DocTaxonomy, Document, TaxonomyNode


async def make_taxonomy(
    session: AsyncSession, keys: Iterable[str], *, version: str = "1"
) -> dict[str, uuid.UUID]:
    """Nodes for dotted keys, parents first; returns {key: id}."""
    ids: dict[str, uuid.UUID] = {}
    for key in sorted(keys, key=lambda k: k.count(".")):
        parent_key = key.rpartition(".")[0] or None
        ids[key] = uuid.uuid4()
        session.add(
            TaxonomyNode(
                id=ids[key],
                version=version,
                key=key,
                parent_id=ids[parent_key] if parent_key else None,
                label=key.rsplit(".", 1)[-1],
                path=key.replace(".", " / "),
                level=key.count(".") + 1,
            )
        )
        await session.flush()
    await session.commit()
    return ids


async def make_document(
    session: AsyncSession,
    node_ids: Iterable[uuid.UUID],
    *,
    chunks: int = 1,
    confidence: float = 1.0,
) -> uuid.UUID:
    doc_id = uuid.uuid4()
    session.add(Document(id=doc_id, external_id=str(doc_id), title="t", url=None, char_count=10))
    await session.flush()
    for ordinal in range(chunks):
        session.add(Chunk(document_id=doc_id, ordinal=ordinal, text="x", char_count=1))
    for node_id in node_ids:
        session.add(DocTaxonomy(document_id=doc_id, node_id=node_id, confidence=confidence))
    await session.commit()
    return doc_id


async def make_agent(
    session: AsyncSession,
    node_ids: Iterable[uuid.UUID],
    *,
    name: str = "agent",
    target: int = 10,
    min_confidence: float = 0.7,
    version: str = "1",
) -> uuid.UUID:
    agent = Agent(
        name=name,
        taxonomy_node_ids=list(node_ids),
        taxonomy_version=version,
        target_docs_per_node=target,
        min_confidence=min_confidence,
    )
    session.add(agent)
    await session.commit()
    return agent.id


async def small_corpus_agent(session: AsyncSession) -> uuid.UUID:
    """An agent over `Science` (with two children) and three documents under it."""
    nodes = await make_taxonomy(session, ["Science", "Science.Birds", "Science.Plants"])
    await make_document(session, [nodes["Science.Birds"]], chunks=2)
    await make_document(session, [nodes["Science.Birds"], nodes["Science.Plants"]], chunks=3)
    await make_document(session, [nodes["Science.Plants"]])
    return await make_agent(session, [nodes["Science"]], target=2)
