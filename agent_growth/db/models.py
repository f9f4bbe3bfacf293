"""The tables of Agent Growth. PostgreSQL is the source of truth; Redis only mirrors the queue.

The Alembic migrations under `migrations/` create exactly these tables; a test compares them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TASK_STATUSES = ("pending", "running", "completed", "failed", "cancelled", "timeout")
FINISHED_STATUSES = ("completed", "failed", "cancelled", "timeout")
PRIORITIES = ("high", "medium", "low")
DEFAULT_PRIORITY: Final = "medium"
DEFAULT_TIMEOUT_S: Final = 300
"""A refresh's deadline when none is given: ample for a taxonomy of thousands of nodes."""

# Constraint names follow one pattern so that migrations can name what they drop.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


Timestamp = DateTime(timezone=True)


class TaxonomyNode(Base):
    __tablename__ = "taxonomy_nodes"
    __table_args__ = (Index(None, "version", "key", unique=True), Index(None, "parent_id"))

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(Text)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID, ForeignKey("taxonomy_nodes.id", ondelete="CASCADE")
    )
    label: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    level: Mapped[int] = mapped_column(Integer)


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint("target_docs_per_node >= 1", name="target_positive"),
        CheckConstraint("min_confidence >= 0 AND min_confidence <= 1", name="confidence_range"),
        Index(None, "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    taxonomy_node_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID))
    taxonomy_version: Mapped[str] = mapped_column(String(64))
    scope_description: Mapped[str | None] = mapped_column(Text)
    target_docs_per_node: Mapped[int] = mapped_column(Integer, server_default="10")
    min_confidence: Mapped[float] = mapped_column(Float, server_default="0.7")
    coverage_percent: Mapped[float | None] = mapped_column(Numeric(5, 2, asdecimal=False))
    total_documents: Mapped[int | None] = mapped_column(Integer)
    total_chunks: Mapped[int | None] = mapped_column(Integer)
    last_coverage_update: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        Timestamp, server_default=func.now(), onupdate=func.now()
    )


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, unique=True)
    title: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    char_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (Index(None, "document_id", "ordinal", unique=True),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    document_id: Mapped[uuid.UUID] = mapped_column(
        UUID, ForeignKey("documents.id", ondelete="CASCADE")
    )
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    char_count: Mapped[int] = mapped_column(Integer)


class DocTaxonomy(Base):
    __tablename__ = "doc_taxonomy"
    __table_args__ = (
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        Index(None, "node_id", "confidence"),
    )

    document_id: Mapped[uuid.UUID] = mapped_column(
        UUID, ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[uuid.UUID] = mapped_column(
        UUID, ForeignKey("taxonomy_nodes.id", ondelete="CASCADE"), primary_key=True
    )
    confidence: Mapped[float] = mapped_column(Float)


class CoverageTarget(Base):
    __tablename__ = "coverage_targets"
    __table_args__ = (CheckConstraint("target_docs >= 1", name="target_positive"),)

    agent_id: Mapped[uuid.UUID] = mapped_column(
        UUID, ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[uuid.UUID] = mapped_column(
        UUID, ForeignKey("taxonomy_nodes.id", ondelete="CASCADE"), primary_key=True
    )
    target_docs: Mapped[int] = mapped_column(Integer)


class BackgroundTask(Base):
    __tablename__ = "background_tasks"
    __table_args__ = (
        CheckConstraint(f"status IN ({_quoted(TASK_STATUSES)})", name="status_known"),
        CheckConstraint(f"priority IN ({_quoted(PRIORITIES)})", name="priority_known"),
        CheckConstraint("timeout_seconds BETWEEN 1 AND 3600", name="timeout_range"),
        CheckConstraint("progress_percentage BETWEEN 0 AND 100", name="progress_range"),
        Index(None, "agent_id", "created_at"),
        Index(None, "status", "created_at"),
        Index(None, "created_at", "task_id"),
        Index(
            "ix_background_tasks_running_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'running'"),
        ),
        Index(
            "ix_background_tasks_finished_recent",
            "completed_at",
            postgresql_where=text("status = 'completed'"),
        ),
    )

    task_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("agents.id", ondelete="CASCADE"))
    task_type: Mapped[str] = mapped_column(String(40), server_default="coverage_refresh")
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    priority: Mapped[str] = mapped_column(String(8), server_default=DEFAULT_PRIORITY)
    timeout_seconds: Mapped[int] = mapped_column(Integer, server_default=str(DEFAULT_TIMEOUT_S))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    completed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_retry_count: Mapped[int] = mapped_column(Integer, server_default="0")
    cancellation_requested: Mapped[bool] = mapped_column(Boolean, server_default="false")
    progress_percentage: Mapped[int] = mapped_column(Integer, server_default="0")
    estimated_completion_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    resource_namespace: Mapped[str | None] = mapped_column(String(253))
    """Namespace of the CoverageRefresh resource that mirrors this task, in cluster mode."""


class CoverageHistory(Base):
    __tablename__ = "coverage_history"
    __table_args__ = (
        CheckConstraint("overall_coverage >= 0 AND overall_coverage <= 100", name="coverage_range"),
        CheckConstraint("total_documents >= 0", name="documents_nonnegative"),
        CheckConstraint("total_chunks >= 0", name="chunks_nonnegative"),
        Index(None, "agent_id", "timestamp", "id"),
        Index(None, "task_id", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    agent_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("agents.id", ondelete="CASCADE"))
    task_id: Mapped[str | None] = mapped_column(
        String(80), ForeignKey("background_tasks.task_id", ondelete="SET NULL")
    )
    timestamp: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
    overall_coverage: Mapped[float] = mapped_column(Numeric(5, 2, asdecimal=False))
    total_documents: Mapped[int] = mapped_column(Integer)
    total_chunks: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(64))
    node_coverage: Mapped[dict[str, Any]] = mapped_column(JSONB)
    """Per node key: `{"documents": n, "target": t, "coverage": percent}`."""


class WebhookDelivery(Base):
    """One attempt to deliver one webhook event; an event has one to `webhook_max_attempts`."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index(None, "task_id", "attempt"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID)
    # No foreign key: the record of a delivery outlives its task (an agent's deletion).
    task_id: Mapped[str] = mapped_column(String(80))
    url: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    """`delivered`, `retry` (another attempt follows) or `failed` (given up)."""
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())


class WebhookOutbox(Base):
    """Webhook events waiting to be delivered, written with the task's terminal status."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (
        Index(
            "ix_webhook_outbox_due",
            "next_attempt_at",
            postgresql_where=text("state = 'pending'"),
        ),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    # No foreign key: a task ended because its agent is deleted still has its event delivered.
    task_id: Mapped[str] = mapped_column(String(80), unique=True)
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    """`pending`, `delivered` or `failed`."""
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
