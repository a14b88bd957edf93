"""every vocabulary column checks its values, read from hotline.core.vocab

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

from alembic import op

from hotline.storage.models import VOCABULARY_COLUMNS, one_of

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The tables this revision knew; later revisions create their own tables with their checks.
TABLES = (
    "elders",
    "emergency_contacts",
    "devices",
    "providers",
    "incidents",
    "offers",
    "escalation_timers",
    "calls",
    "users",
    "dead_letters",
)


def upgrade() -> None:
    # SQLite cannot add a constraint to a table: batch mode rebuilds each one (env.py turns
    # foreign keys off for it, and checks them after).
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, allowed, nullable in VOCABULARY_COLUMNS[table]:
                check = one_of(table, column, allowed, nullable=nullable)
                batch_op.create_check_constraint(str(check.name), check.sqltext)


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, _, _ in VOCABULARY_COLUMNS[table]:
                batch_op.drop_constraint(f"ck_{table}_{column}", type_="check")
