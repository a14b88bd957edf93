"""devices: retirement and the time their credential last changed (the broker's auth sync)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hotline.storage.models import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("credentials_changed_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("retired_at", UTCDateTime(), nullable=True))
    # Nullable in the schema, so SQLite adds it in place rather than rebuilding the table.
    op.execute("UPDATE devices SET credentials_changed_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("retired_at")
        batch_op.drop_column("credentials_changed_at")
