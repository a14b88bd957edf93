"""the service loop: catalogue, eligibility, entitlement rules, work orders and settlement,
follow-ups, complaints, referrals, ratings, campaigns and consultations

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hotline.storage.models import UTCDateTime, checks

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Existing elders' eligibility, read from the fields the register already had.
_DEGREE = {"mild": "mild", "moderate": "moderate", "severe": "severe", "partly_disabled": "moderate"}
_CATEGORIES = ("dibao", "dibao_edge", "sanwu", "wubao", "family_planning_special")


def _id() -> sa.Column[str]:
    return sa.Column("id", sa.String(length=40), nullable=False)


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name_zh", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=8), nullable=False),
        sa.Column("price_yuan", sa.Float(), nullable=False),
        sa.Column("payers", sa.JSON(), nullable=False),
        sa.Column("needs_assessment", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("code"),
        *checks("services"),
    )
    op.create_table(
        "entitlement_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("region", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("effective_from", sa.String(length=7), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("region", "version", name="uq_entitlement_rules_region_version"),
    )
    op.create_index("ix_entitlement_rules_region", "entitlement_rules", ["region"])
    op.create_table(
        "service_requests",
        _id(),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=8), nullable=False),
        sa.Column("scheduled_for", UTCDateTime(), nullable=True),
        sa.Column("payer", sa.String(length=16), nullable=True),
        sa.Column("remainder_payer", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=True),
        sa.Column("call_id", sa.String(length=40), nullable=True),
        sa.Column("consultation_id", sa.String(length=40), nullable=True),
        sa.Column("campaign_target_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("assessment", sa.JSON(), nullable=True),
        sa.Column("check_in", sa.JSON(), nullable=True),
        sa.Column("check_out", sa.JSON(), nullable=True),
        sa.Column("far_check_in", sa.Boolean(), nullable=False),
        sa.Column("no_shows", sa.Integer(), nullable=False),
        sa.Column("settled_month", sa.String(length=7), nullable=True),
        sa.Column("closed_reason", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"]),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.ForeignKeyConstraint(["service"], ["services.code"]),
        sa.PrimaryKeyConstraint("id"),
        *checks("service_requests"),
    )
    op.create_index("ix_service_requests_elder_id", "service_requests", ["elder_id"])
    op.create_index("ix_service_requests_provider_id", "service_requests", ["provider_id"])
    op.create_index("ix_service_requests_call_id", "service_requests", ["call_id"])
    op.create_index("ix_service_requests_created_at", "service_requests", ["created_at"])
    op.create_index("ix_service_requests_status", "service_requests", ["status", "scheduled_for"])
    op.create_table(
        "service_request_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_request_id", sa.String(length=40), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["service_request_id"], ["service_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_service_request_events_service_request_id", "service_request_events", ["service_request_id"])
    op.create_table(
        "settlement_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_request_id", sa.String(length=40), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("payer", sa.String(length=16), nullable=False),
        sa.Column("funder", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=True),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("yuan", sa.Float(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["service_request_id"], ["service_requests.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"]),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("service_request_id", "payer", "funder", name="uq_settlement_lines_order_payer"),
        *checks("settlement_lines"),
    )
    op.create_index("ix_settlement_lines_elder_month", "settlement_lines", ["elder_id", "month"])
    op.create_index("ix_settlement_lines_provider_id", "settlement_lines", ["provider_id"])
    op.create_table(
        "care_timers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "subject_id", name="uq_care_timers_kind_subject"),
        *checks("care_timers"),
    )
    op.create_index("ix_care_timers_due", "care_timers", ["state", "due_at"])
    op.create_table(
        "follow_ups",
        _id(),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("service_request_id", sa.String(length=40), nullable=True),
        sa.Column("consultation_id", sa.String(length=40), nullable=True),
        sa.Column("provider_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("call_key", sa.String(length=200), nullable=True),
        sa.Column("reached", sa.Boolean(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("done_by", sa.String(length=64), nullable=True),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"]),
        sa.ForeignKeyConstraint(["service_request_id"], ["service_requests.id"]),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.PrimaryKeyConstraint("id"),
        *checks("follow_ups"),
    )
    op.create_index("ix_follow_ups_elder_id", "follow_ups", ["elder_id"])
    op.create_index("ix_follow_ups_service_request_id", "follow_ups", ["service_request_id"])
    op.create_index("ix_follow_ups_provider_id", "follow_ups", ["provider_id"])
    op.create_index("ix_follow_ups_status_due", "follow_ups", ["status", "due_at"])
    op.create_table(
        "quality_reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("ref_id", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quality_reviews_provider_id", "quality_reviews", ["provider_id"])
    op.create_table(
        "complaints",
        _id(),
        sa.Column("elder_id", sa.String(length=40), nullable=True),
        sa.Column("provider_id", sa.String(length=40), nullable=True),
        sa.Column("service_request_id", sa.String(length=40), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("handler", sa.String(length=64), nullable=True),
        sa.Column("deadline_at", UTCDateTime(), nullable=False),
        sa.Column("escalated_at", UTCDateTime(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("finding", sa.Text(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"]),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.ForeignKeyConstraint(["service_request_id"], ["service_requests.id"]),
        sa.PrimaryKeyConstraint("id"),
        *checks("complaints"),
    )
    op.create_index("ix_complaints_elder_id", "complaints", ["elder_id"])
    op.create_index("ix_complaints_provider_id", "complaints", ["provider_id"])
    op.create_index("ix_complaints_created_at", "complaints", ["created_at"])
    op.create_table(
        "referrals",
        _id(),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("service_request_id", sa.String(length=40), nullable=True),
        sa.Column("agency", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"]),
        sa.ForeignKeyConstraint(["service_request_id"], ["service_requests.id"]),
        sa.PrimaryKeyConstraint("id"),
        *checks("referrals"),
    )
    op.create_index("ix_referrals_elder_id", "referrals", ["elder_id"])
    op.create_table(
        "provider_ratings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("stars", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider_id", "period", name="uq_provider_ratings_provider_period"),
    )
    op.create_index("ix_provider_ratings_provider_id", "provider_ratings", ["provider_id"])
    op.create_table(
        "campaigns",
        _id(),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("rrule", sa.String(length=500), nullable=False),
        sa.Column("dtstart", UTCDateTime(), nullable=False),
        sa.Column("calling_hours", sa.String(length=200), nullable=False),
        sa.Column("max_concurrent_calls", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retry_after_min", sa.Float(), nullable=False),
        sa.Column("mode", sa.String(length=12), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        *checks("campaigns"),
    )
    op.create_table(
        "campaign_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("scheduled_for", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "scheduled_for", name="uq_campaign_runs_campaign_time"),
    )
    op.create_index("ix_campaign_runs_campaign_id", "campaign_runs", ["campaign_id"])
    op.create_table(
        "campaign_targets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("call_key", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("recorded_by", sa.String(length=64), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("visit_request_id", sa.String(length=40), nullable=True),
        sa.Column("family_notified", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["campaign_runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "elder_id", name="uq_campaign_targets_run_elder"),
        *checks("campaign_targets"),
    )
    op.create_index("ix_campaign_targets_run_id", "campaign_targets", ["run_id"])
    op.create_index("ix_campaign_targets_campaign_id", "campaign_targets", ["campaign_id"])
    op.create_index("ix_campaign_targets_elder_id", "campaign_targets", ["elder_id"])
    op.create_index("ix_campaign_targets_state", "campaign_targets", ["state", "next_attempt_at"])
    op.create_table(
        "consultations",
        _id(),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("needs", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("advisor", sa.String(length=64), nullable=False),
        sa.Column("follow_up_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_consultations_elder_id", "consultations", ["elder_id"])

    with op.batch_alter_table("elders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("region", sa.String(length=16), nullable=False, server_default="yuyao"))
        batch_op.add_column(sa.Column("eligibility", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bad_credit", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("routing_decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("service_request_id", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_routing_decisions_service_request_id", ["service_request_id"])
        batch_op.create_foreign_key(
            "fk_routing_decisions_service_request_id",
            "service_requests",
            ["service_request_id"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.alter_column("incident_id", existing_type=sa.String(length=40), nullable=True)
        batch_op.add_column(sa.Column("service_request_id", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_offers_service_request_id", ["service_request_id"])
        batch_op.create_foreign_key(
            "fk_offers_service_request_id", "service_requests", ["service_request_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_check_constraint(
            "ck_offers_subject", sa.text("(incident_id IS NULL) <> (service_request_id IS NULL)")
        )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("service_request_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("digits", sa.String(length=16), nullable=True))
        batch_op.create_index("ix_calls_service_request_id", ["service_request_id"])
        batch_op.create_foreign_key("fk_calls_service_request_id", "service_requests", ["service_request_id"], ["id"])

    # Existing elders: the eligibility facts the register already held.
    elders = sa.table(
        "elders",
        sa.column("id", sa.String()),
        sa.column("care_level", sa.String()),
        sa.column("economic_category", sa.String()),
        sa.column("eligibility", sa.JSON()),
    )
    conn = op.get_bind()
    for row in conn.execute(sa.select(elders.c.id, elders.c.care_level, elders.c.economic_category)).all():
        conn.execute(
            elders.update()
            .where(elders.c.id == row.id)
            .values(eligibility=_eligibility(row.care_level, row.economic_category))
        )


def _eligibility(care_level: str, economic_category: str) -> dict[str, object]:
    return {
        "local_hukou": True,
        "resident": True,
        "categories": [economic_category] if economic_category in _CATEGORIES else [],
        "disability": _DEGREE.get(care_level, "none"),
        "dementia": "moderate" if care_level == "dementia" else "none",
        "disability_nursing_subsidy": False,
        "severe_chronic_disease": False,
    }


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_constraint("fk_calls_service_request_id", type_="foreignkey")
        batch_op.drop_index("ix_calls_service_request_id")
        batch_op.drop_column("digits")
        batch_op.drop_column("service_request_id")
    op.execute("DELETE FROM offers WHERE incident_id IS NULL")
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_constraint("ck_offers_subject", type_="check")
        batch_op.drop_constraint("fk_offers_service_request_id", type_="foreignkey")
        batch_op.drop_index("ix_offers_service_request_id")
        batch_op.drop_column("service_request_id")
        batch_op.alter_column("incident_id", existing_type=sa.String(length=40), nullable=False)
    with op.batch_alter_table("routing_decisions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_routing_decisions_service_request_id", type_="foreignkey")
        batch_op.drop_index("ix_routing_decisions_service_request_id")
        batch_op.drop_column("service_request_id")
    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.drop_column("bad_credit")
    with op.batch_alter_table("elders", schema=None) as batch_op:
        batch_op.drop_column("eligibility")
        batch_op.drop_column("region")
    for table in (
        "consultations",
        "campaign_targets",
        "campaign_runs",
        "campaigns",
        "provider_ratings",
        "referrals",
        "complaints",
        "quality_reviews",
        "follow_ups",
        "care_timers",
        "settlement_lines",
        "service_request_events",
        "service_requests",
        "entitlement_rules",
        "services",
    ):
        op.drop_table(table)
