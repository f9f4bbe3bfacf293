"""Initial schema: taxonomy, corpus, agents, tasks, coverage history and webhooks.

PostgreSQL is the source of truth for every task; Redis only mirrors the queue, so all task
state, leases included, lives in `background_tasks`.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("taxonomy_node_ids", postgresql.ARRAY(sa.UUID()), nullable=False),
        sa.Column("taxonomy_version", sa.String(length=64), nullable=False),
        sa.Column("scope_description", sa.Text(), nullable=True),
        sa.Column("target_docs_per_node", sa.Integer(), server_default="10", nullable=False),
        sa.Column("min_confidence", sa.Float(), server_default="0.7", nullable=False),
        sa.Column(
            "coverage_percent", sa.Numeric(precision=5, scale=2, asdecimal=False), nullable=True
        ),
        sa.Column("total_documents", sa.Integer(), nullable=True),
        sa.Column("total_chunks", sa.Integer(), nullable=True),
        sa.Column("last_coverage_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "min_confidence >= 0 AND min_confidence <= 1", name=op.f("ck_agents_confidence_range")
        ),
        sa.CheckConstraint("target_docs_per_node >= 1", name=op.f("ck_agents_target_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
    )
    op.create_index(op.f("ix_agents_created_at_id"), "agents", ["created_at", "id"], unique=False)
    op.create_table(
        "documents",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("char_count", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("external_id", name=op.f("uq_documents_external_id")),
    )
    op.create_table(
        "taxonomy_nodes",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("parent_id", sa.UUID(), nullable=True),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["taxonomy_nodes.id"],
            name=op.f("fk_taxonomy_nodes_parent_id_taxonomy_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taxonomy_nodes")),
    )
    op.create_index(
        op.f("ix_taxonomy_nodes_parent_id"), "taxonomy_nodes", ["parent_id"], unique=False
    )
    op.create_index(
        op.f("ix_taxonomy_nodes_version_key"), "taxonomy_nodes", ["version", "key"], unique=True
    )
    op.create_table(
        "background_tasks",
        sa.Column("task_id", sa.String(length=80), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column(
            "task_type", sa.String(length=40), server_default="coverage_refresh", nullable=False
        ),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("priority", sa.String(length=8), server_default="medium", nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), server_default="300", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("webhook_retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancellation_requested", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("progress_percentage", sa.Integer(), server_default="0", nullable=False),
        sa.Column("estimated_completion_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resource_namespace", sa.String(length=253), nullable=True),
        sa.CheckConstraint(
            "priority IN ('high', 'medium', 'low')", name=op.f("ck_background_tasks_priority_known")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled', 'timeout')",
            name=op.f("ck_background_tasks_status_known"),
        ),
        sa.CheckConstraint(
            "progress_percentage BETWEEN 0 AND 100", name=op.f("ck_background_tasks_progress_range")
        ),
        sa.CheckConstraint(
            "timeout_seconds BETWEEN 1 AND 3600", name=op.f("ck_background_tasks_timeout_range")
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_background_tasks_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_background_tasks")),
    )
    op.create_index(
        op.f("ix_background_tasks_agent_id_created_at"),
        "background_tasks",
        ["agent_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_background_tasks_created_at_task_id"),
        "background_tasks",
        ["created_at", "task_id"],
        unique=False,
    )
    op.create_index(
        "ix_background_tasks_finished_recent",
        "background_tasks",
        ["completed_at"],
        unique=False,
        postgresql_where=sa.text("status = 'completed'"),
    )
    op.create_index(
        "ix_background_tasks_running_lease",
        "background_tasks",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_index(
        op.f("ix_background_tasks_status_created_at"),
        "background_tasks",
        ["status", "created_at"],
        unique=False,
    )
    op.create_table(
        "chunks",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("document_id", sa.UUID(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("char_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_chunks_document_id_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chunks")),
    )
    op.create_index(
        op.f("ix_chunks_document_id_ordinal"), "chunks", ["document_id", "ordinal"], unique=True
    )
    op.create_table(
        "coverage_targets",
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("node_id", sa.UUID(), nullable=False),
        sa.Column("target_docs", sa.Integer(), nullable=False),
        sa.CheckConstraint("target_docs >= 1", name=op.f("ck_coverage_targets_target_positive")),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_coverage_targets_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["taxonomy_nodes.id"],
            name=op.f("fk_coverage_targets_node_id_taxonomy_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agent_id", "node_id", name=op.f("pk_coverage_targets")),
    )
    op.create_table(
        "doc_taxonomy",
        sa.Column("document_id", sa.UUID(), nullable=False),
        sa.Column("node_id", sa.UUID(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name=op.f("ck_doc_taxonomy_confidence_range")
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_doc_taxonomy_document_id_documents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["taxonomy_nodes.id"],
            name=op.f("fk_doc_taxonomy_node_id_taxonomy_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("document_id", "node_id", name=op.f("pk_doc_taxonomy")),
    )
    op.create_index(
        op.f("ix_doc_taxonomy_node_id_confidence"),
        "doc_taxonomy",
        ["node_id", "confidence"],
        unique=False,
    )
    op.create_table(
        "coverage_history",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.String(length=80), nullable=True),
        sa.Column(
            "timestamp", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "overall_coverage", sa.Numeric(precision=5, scale=2, asdecimal=False), nullable=False
        ),
        sa.Column("total_documents", sa.Integer(), nullable=False),
        sa.Column("total_chunks", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("node_coverage", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.CheckConstraint(
            "overall_coverage >= 0 AND overall_coverage <= 100",
            name=op.f("ck_coverage_history_coverage_range"),
        ),
        sa.CheckConstraint(
            "total_chunks >= 0", name=op.f("ck_coverage_history_chunks_nonnegative")
        ),
        sa.CheckConstraint(
            "total_documents >= 0", name=op.f("ck_coverage_history_documents_nonnegative")
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_coverage_history_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["background_tasks.task_id"],
            name=op.f("fk_coverage_history_task_id_background_tasks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coverage_history")),
    )
    op.create_index(
        op.f("ix_coverage_history_agent_id_timestamp_id"),
        "coverage_history",
        ["agent_id", "timestamp", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_coverage_history_task_id"), "coverage_history", ["task_id"], unique=True
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.String(length=80), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column(
            "attempted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["background_tasks.task_id"],
            name=op.f("fk_webhook_deliveries_task_id_background_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_task_id_attempt"),
        "webhook_deliveries",
        ["task_id", "attempt"],
        unique=False,
    )
    op.create_table(
        "webhook_outbox",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.String(length=80), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["background_tasks.task_id"],
            name=op.f("fk_webhook_outbox_task_id_background_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_webhook_outbox")),
        sa.UniqueConstraint("task_id", name=op.f("uq_webhook_outbox_task_id")),
    )
    op.create_index(
        "ix_webhook_outbox_due",
        "webhook_outbox",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_webhook_outbox_due",
        table_name="webhook_outbox",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_table("webhook_outbox")
    op.drop_index(op.f("ix_webhook_deliveries_task_id_attempt"), table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_coverage_history_task_id"), table_name="coverage_history")
    op.drop_index(op.f("ix_coverage_history_agent_id_timestamp_id"), table_name="coverage_history")
    op.drop_table("coverage_history")
    op.drop_index(op.f("ix_doc_taxonomy_node_id_confidence"), table_name="doc_taxonomy")
    op.drop_table("doc_taxonomy")
    op.drop_table("coverage_targets")
    op.drop_index(op.f("ix_chunks_document_id_ordinal"), table_name="chunks")
    op.drop_table("chunks")
    op.drop_index(op.f("ix_background_tasks_status_created_at"), table_name="background_tasks")
    op.drop_index(
        "ix_background_tasks_running_lease",
        table_name="background_tasks",
        postgresql_where=sa.text("status = 'running'"),
    )
    op.drop_index(
        "ix_background_tasks_finished_recent",
        table_name="background_tasks",
        postgresql_where=sa.text("status = 'completed'"),
    )
    op.drop_index(op.f("ix_background_tasks_created_at_task_id"), table_name="background_tasks")
    op.drop_index(op.f("ix_background_tasks_agent_id_created_at"), table_name="background_tasks")
    op.drop_table("background_tasks")
    op.drop_index(op.f("ix_taxonomy_nodes_version_key"), table_name="taxonomy_nodes")
    op.drop_index(op.f("ix_taxonomy_nodes_parent_id"), table_name="taxonomy_nodes")
    op.drop_table("taxonomy_nodes")
    op.drop_table("documents")
    op.drop_index(op.f("ix_agents_created_at_id"), table_name="agents")
    op.drop_table("agents")
