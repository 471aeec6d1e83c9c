"""beyond trees: the personal carbon account (a monthly rollup kept by ingestion), rewards with
code pools and redemptions, campaigns with donations and donors

Revision ID: c27d8e9fa0b5
Revises: b16c7d8e9fa4
Create Date: 2026-12-06 04:00:00

The rollup is filled from the activities already recorded, each counted in its user's local month
(the zone the user has now); erased users get none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c27d8e9fa0b5"
down_revision: str | None = "b16c7d8e9fa4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "carbon_months",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("rules_version", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("co2e_g", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "events >= 0 AND co2e_g >= 0", name=op.f("ck_carbon_months_not_negative")
        ),
        sa.PrimaryKeyConstraint(
            "user_id", "month", "kind", "rules_version", "region", name=op.f("pk_carbon_months")
        ),
    )
    op.execute(
        """
        INSERT INTO carbon_months (user_id, month, kind, rules_version, region, events, co2e_g)
        SELECT a.user_id,
               CAST(date_trunc('month', a.occurred_at AT TIME ZONE u.timezone) AS date),
               a.kind, a.rules_version, coalesce(a.region, ''), count(*), sum(a.energy_g)
        FROM activities a JOIN users u ON u.id = a.user_id
        WHERE u.erased_at IS NULL
        GROUP BY 1, 2, 3, 4, 5
        """
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("goal_g", sa.BigInteger(), nullable=False),
        sa.Column("raised_g", sa.BigInteger(), nullable=False),
        sa.Column("donors", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("partner_id", sa.UUID(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_campaigns_ends_after_start")),
        sa.CheckConstraint("goal_g > 0", name=op.f("ck_campaigns_goal_positive")),
        sa.CheckConstraint("raised_g >= 0 AND donors >= 0", name=op.f("ck_campaigns_not_negative")),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_campaigns_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("seq", name=op.f("uq_campaigns_seq")),
    )
    op.create_table(
        "rewards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("partner_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("cost_g", sa.BigInteger(), nullable=False),
        sa.Column("budget", sa.BigInteger(), nullable=False),
        sa.Column("taken", sa.BigInteger(), nullable=False),
        sa.Column("per_user_limit", sa.Integer(), nullable=True),
        sa.Column("limit_period", sa.String(length=8), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fulfilment", sa.String(length=8), nullable=False),
        sa.Column("fulfil_timeout_s", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "fulfilment IN ('codes', 'partner')", name=op.f("ck_rewards_fulfilment_known")
        ),
        sa.CheckConstraint(
            "kind IN ('voucher', 'transit_ride', 'merchant_discount', 'bank_benefit', 'other')",
            name=op.f("ck_rewards_kind_known"),
        ),
        sa.CheckConstraint(
            "limit_period IN ('day', 'week', 'month', 'year', 'ever')",
            name=op.f("ck_rewards_limit_period_known"),
        ),
        sa.CheckConstraint(
            "status IN ('available', 'closed')", name=op.f("ck_rewards_status_known")
        ),
        sa.CheckConstraint("cost_g > 0", name=op.f("ck_rewards_cost_positive")),
        sa.CheckConstraint(
            "per_user_limit IS NULL OR per_user_limit > 0", name=op.f("ck_rewards_limit_positive")
        ),
        sa.CheckConstraint(
            "taken >= 0 AND taken <= budget", name=op.f("ck_rewards_taken_within_budget")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_rewards_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
        sa.UniqueConstraint("seq", name=op.f("uq_rewards_seq")),
    )
    op.create_index(op.f("ix_rewards_partner_id"), "rewards", ["partner_id"], unique=False)
    op.create_table(
        "campaign_donations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("amount_g", sa.BigInteger(), nullable=False),
        sa.Column("rules_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_g > 0", name=op.f("ck_campaign_donations_amount_positive")),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_donations_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_campaign_donations_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_donations")),
        sa.UniqueConstraint("seq", name=op.f("uq_campaign_donations_seq")),
    )
    op.create_index(
        op.f("ix_campaign_donations_campaign_id"),
        "campaign_donations",
        ["campaign_id"],
        unique=False,
    )
    op.create_index(
        "ix_campaign_donations_user_id_created_at",
        "campaign_donations",
        ["user_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "campaign_donors",
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("donated_g", sa.BigInteger(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("donated_g > 0", name=op.f("ck_campaign_donors_donated_positive")),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_donors_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_campaign_donors_user_id_users")
        ),
        sa.PrimaryKeyConstraint("campaign_id", "user_id", name=op.f("pk_campaign_donors")),
    )
    op.create_index(
        "ix_campaign_donors_campaign_id_donated_g",
        "campaign_donors",
        ["campaign_id", "donated_g"],
        unique=False,
    )
    op.create_table(
        "redemptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("reward_id", sa.UUID(), nullable=False),
        sa.Column("partner_id", sa.UUID(), nullable=False),
        sa.Column("cost_g", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("code_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("failure_reason", sa.String(length=200), nullable=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rules_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fulfilled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('issued', 'pending', 'failed')", name=op.f("ck_redemptions_status_known")
        ),
        sa.CheckConstraint("cost_g > 0", name=op.f("ck_redemptions_cost_positive")),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_redemptions_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_redemptions_reward_id_rewards")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_redemptions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
        sa.UniqueConstraint("seq", name=op.f("uq_redemptions_seq")),
    )
    op.create_index(
        "ix_redemptions_partner_id_seq", "redemptions", ["partner_id", "seq"], unique=False
    )
    op.create_index(
        "ix_redemptions_pending",
        "redemptions",
        ["deadline"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(op.f("ix_redemptions_reward_id"), "redemptions", ["reward_id"], unique=False)
    op.create_index(
        "ix_redemptions_user_id_created_at", "redemptions", ["user_id", "created_at"], unique=False
    )
    op.create_index("ix_redemptions_user_id_seq", "redemptions", ["user_id", "seq"], unique=False)
    op.create_table(
        "reward_codes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("reward_id", sa.UUID(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("code_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("redemption_id", sa.Uuid(), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_reward_codes_reward_id_rewards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_codes")),
        sa.UniqueConstraint("redemption_id", name=op.f("uq_reward_codes_redemption_id")),
    )
    op.create_index(
        "ix_reward_codes_free",
        "reward_codes",
        ["reward_id", "id"],
        unique=False,
        postgresql_where=sa.text("redemption_id IS NULL"),
    )
    op.create_index(
        "uq_reward_codes_reward_id_code_hash",
        "reward_codes",
        ["reward_id", "code_hash"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_reward_codes_reward_id_code_hash", table_name="reward_codes")
    op.drop_index(
        "ix_reward_codes_free",
        table_name="reward_codes",
        postgresql_where=sa.text("redemption_id IS NULL"),
    )
    op.drop_table("reward_codes")
    op.drop_index("ix_redemptions_user_id_seq", table_name="redemptions")
    op.drop_index("ix_redemptions_user_id_created_at", table_name="redemptions")
    op.drop_index(op.f("ix_redemptions_reward_id"), table_name="redemptions")
    op.drop_index(
        "ix_redemptions_pending",
        table_name="redemptions",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_redemptions_partner_id_seq", table_name="redemptions")
    op.drop_table("redemptions")
    op.drop_index("ix_campaign_donors_campaign_id_donated_g", table_name="campaign_donors")
    op.drop_table("campaign_donors")
    op.drop_index("ix_campaign_donations_user_id_created_at", table_name="campaign_donations")
    op.drop_index(op.f("ix_campaign_donations_campaign_id"), table_name="campaign_donations")
    op.drop_table("campaign_donations")
    op.drop_index(op.f("ix_rewards_partner_id"), table_name="rewards")
    op.drop_table("rewards")
    op.drop_table("campaigns")
    op.drop_table("carbon_months")
