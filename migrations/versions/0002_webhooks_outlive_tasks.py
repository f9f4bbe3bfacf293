"""Webhook events and delivery records outlive their task.

Deleting an agent deletes its tasks; the cancellation events of those tasks must still reach
their receivers, so the outbox and the delivery log no longer cascade from `background_tasks`.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEYS = {
    "webhook_outbox": "fk_webhook_outbox_task_id_background_tasks",
    "webhook_deliveries": "fk_webhook_deliveries_task_id_background_tasks",
}


def upgrade() -> None:
    for table, name in FOREIGN_KEYS.items():
        op.drop_constraint(name, table, type_="foreignkey")


def downgrade() -> None:
    for table, name in FOREIGN_KEYS.items():
        # Rows whose task is gone would break the constraint; they go with it.
        op.execute(
            f"DELETE FROM {table} t WHERE NOT EXISTS "
            f"(SELECT 1 FROM background_tasks b WHERE b.task_id = t.task_id)"
        )
        op.create_foreign_key(
            name, table, "background_tasks", ["task_id"], ["task_id"], ondelete="CASCADE"
        )
