"""play together: reviving expired balls (once per ball, per-day counts), the energy rain's
sessions, plays and grants, and groves (joint planting) with members and invitations

Revision ID: 5919ce31ad14
Revises: c27d8e9fa0b5
Create Date: 2026-12-07 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5919ce31ad14"
down_revision: str | None = "c27d8e9fa0b5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grove_invites",
        sa.Column("grove_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("inviter_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("grove_id", "user_id", name=op.f("pk_grove_invites")),
    )
    op.create_index("ix_grove_invites_user_id", "grove_invites", ["user_id"], unique=False)
    op.create_table(
        "grove_members",
        sa.Column("grove_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("contributed_g", sa.BigInteger(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "contributed_g >= 0", name=op.f("ck_grove_members_contributed_not_negative")
        ),
        sa.PrimaryKeyConstraint("grove_id", "user_id", name=op.f("pk_grove_members")),
    )
    op.create_index("ix_grove_members_user_id", "grove_members", ["user_id"], unique=False)
    op.create_table(
        "rain_days",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("plays", sa.Integer(), nullable=False),
        sa.Column("extra", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "day", name=op.f("pk_rain_days")),
    )
    op.create_table(
        "rain_grants",
        sa.Column("granter_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("friend_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("granter_id", "day", name=op.f("pk_rain_grants")),
    )
    op.create_table(
        "rain_sessions",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seed", sa.LargeBinary(), nullable=False),
        sa.Column("balls", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("max_g", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settle_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("energy_g", sa.BigInteger(), nullable=True),
        sa.Column("caught", sa.Integer(), nullable=True),
        sa.Column("rules_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "id", name=op.f("pk_rain_sessions")),
    )
    op.create_table(
        "revive_days",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "day", name=op.f("pk_revive_days")),
    )
    op.create_table(
        "groves",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("item_id", sa.UUID(), nullable=False),
        sa.Column("target_g", sa.BigInteger(), nullable=False),
        sa.Column("raised_g", sa.BigInteger(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("planting_id", sa.Uuid(), nullable=True),
        sa.Column("rules_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("planted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'planted', 'disbanded')", name=op.f("ck_groves_status_known")
        ),
        sa.CheckConstraint(
            "raised_g >= 0 AND raised_g <= target_g", name=op.f("ck_groves_raised_within_target")
        ),
        sa.CheckConstraint("target_g > 0", name=op.f("ck_groves_target_positive")),
        sa.ForeignKeyConstraint(
            ["item_id"], ["catalog_items.id"], name=op.f("fk_groves_item_id_catalog_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groves")),
    )
    op.add_column(
        "energy_balls", sa.Column("revived_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("energy_balls", sa.Column("revived_by", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column("energy_balls", "revived_by")
    op.drop_column("energy_balls", "revived_at")
    op.drop_table("groves")
    op.drop_table("revive_days")
    op.drop_table("rain_sessions")
    op.drop_table("rain_grants")
    op.drop_table("rain_days")
    op.drop_index("ix_grove_members_user_id", table_name="grove_members")
    op.drop_table("grove_members")
    op.drop_index("ix_grove_invites_user_id", table_name="grove_invites")
    op.drop_table("grove_invites")
