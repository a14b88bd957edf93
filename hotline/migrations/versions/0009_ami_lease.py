"""the AMI consumer role: a lease with a fencing token, and who placed each outbound call

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hotline.storage.models import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_leases",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("placed_token", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("dial_target", sa.JSON(), nullable=True))
    # Calls from before the lease were placed (or given up) by their own process: 0 keeps a
    # new holder from dialling one of them again.
    op.execute("UPDATE calls SET placed_token = 0")


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("dial_target")
        batch_op.drop_column("placed_token")
    op.drop_table("service_leases")
