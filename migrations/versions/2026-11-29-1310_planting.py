"""planting: catalog, plantings, orders and reports, webhook outbox

Revision ID: 080c694cb29d
Revises: 7c1e2f4a9b10
Create Date: 2026-11-29 13:11:15.386840

Written at 13:10 off the feed migration; chained after the social game and idempotency
migrations that landed first, so the history stays one line (one head).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "080c694cb29d"
down_revision: str | None = "7c1e2f4a9b10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("species", sa.String(length=120), nullable=True),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("cost_g", sa.BigInteger(), nullable=False),
        sa.Column("region", sa.String(length=120), nullable=False),
        sa.Column("partner_id", sa.UUID(), nullable=False),
        sa.Column("season", sa.String(length=64), nullable=True),
        sa.Column("budget", sa.BigInteger(), nullable=False),
        sa.Column("taken", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('tree', 'conservation', 'virtual')", name=op.f("ck_catalog_items_kind_known")
        ),
        sa.CheckConstraint(
            "status IN ('coming', 'available', 'sold_out', 'closed')",
            name=op.f("ck_catalog_items_status_known"),
        ),
        sa.CheckConstraint("cost_g > 0", name=op.f("ck_catalog_items_cost_positive")),
        sa.CheckConstraint(
            "taken >= 0 AND taken <= budget", name=op.f("ck_catalog_items_taken_within_budget")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_catalog_items_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_items")),
    )
    op.create_index(
        op.f("ix_catalog_items_partner_id"), "catalog_items", ["partner_id"], unique=False
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("partner_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_attempt_id", sa.BigInteger(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed', 'skipped')",
            name=op.f("ck_webhook_deliveries_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_webhook_deliveries_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("event_id", name=op.f("uq_webhook_deliveries_event_id")),
        sa.UniqueConstraint("seq", name=op.f("uq_webhook_deliveries_seq")),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_partner_id"), "webhook_deliveries", ["partner_id"], unique=False
    )
    op.create_index(
        "ix_webhook_deliveries_status_seq", "webhook_deliveries", ["status", "seq"], unique=False
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("partner_id", sa.UUID(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_webhook_endpoints_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("partner_id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_table(
        "planting_orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("partner_id", sa.UUID(), nullable=False),
        sa.Column("item_id", sa.UUID(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("planted_quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("external_ref", sa.String(length=200), nullable=True),
        sa.Column("verified_by", sa.String(length=200), nullable=True),
        sa.Column("verification_note", sa.Text(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("planted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'planted', 'verified', 'cancelled')",
            name=op.f("ck_planting_orders_status_known"),
        ),
        sa.CheckConstraint(
            "planted_quantity >= 0 AND planted_quantity <= quantity",
            name=op.f("ck_planting_orders_planted_in_range"),
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["catalog_items.id"], name=op.f("fk_planting_orders_item_id_catalog_items")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_planting_orders_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planting_orders")),
        sa.UniqueConstraint("seq", name=op.f("uq_planting_orders_seq")),
    )
    op.create_index(
        "ix_planting_orders_partner_id_seq", "planting_orders", ["partner_id", "seq"], unique=False
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(
        "ix_webhook_attempts_delivery_id_id",
        "webhook_attempts",
        ["delivery_id", "id"],
        unique=False,
    )
    op.create_table(
        "order_reports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("partner_id", sa.UUID(), nullable=False),
        sa.Column("planted_quantity", sa.Integer(), nullable=False),
        sa.Column("planted_on", sa.Date(), nullable=False),
        sa.Column("lat", sa.Double(), nullable=False),
        sa.Column("lon", sa.Double(), nullable=False),
        sa.Column("evidence_urls", postgresql.ARRAY(sa.String(length=2048)), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180",
            name=op.f("ck_order_reports_location"),
        ),
        sa.CheckConstraint("planted_quantity > 0", name=op.f("ck_order_reports_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["planting_orders.id"],
            name=op.f("fk_order_reports_order_id_planting_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_order_reports_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_reports")),
        sa.UniqueConstraint("seq", name=op.f("uq_order_reports_seq")),
    )
    op.create_index(
        "ix_order_reports_order_id_seq", "order_reports", ["order_id", "seq"], unique=False
    )
    op.create_table(
        "plantings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("item_id", sa.UUID(), nullable=False),
        sa.Column("partner_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("cost_g", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("certificate_number", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=True),
        sa.Column("history", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("location_lat", sa.Double(), nullable=True),
        sa.Column("location_lon", sa.Double(), nullable=True),
        sa.Column("planted_on", sa.Date(), nullable=True),
        sa.Column("rules_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('reserved', 'ordered', 'acknowledged', 'planted', 'verified', 'cancelled', 'completed')",
            name=op.f("ck_plantings_status_known"),
        ),
        sa.CheckConstraint("cost_g > 0", name=op.f("ck_plantings_cost_positive")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_plantings_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["item_id"], ["catalog_items.id"], name=op.f("fk_plantings_item_id_catalog_items")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["planting_orders.id"], name=op.f("fk_plantings_order_id_planting_orders")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_plantings_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["rules_version"],
            ["rules_versions.version"],
            name=op.f("fk_plantings_rules_version_rules_versions"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_plantings_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plantings")),
        sa.UniqueConstraint("certificate_number", name=op.f("uq_plantings_certificate_number")),
        sa.UniqueConstraint("seq", name=op.f("uq_plantings_seq")),
    )
    op.create_index(
        "ix_plantings_order_id",
        "plantings",
        ["order_id"],
        unique=False,
        postgresql_where=sa.text("order_id IS NOT NULL"),
    )
    op.create_index(
        "ix_plantings_reserved",
        "plantings",
        ["partner_id", "item_id", "seq"],
        unique=False,
        postgresql_where=sa.text("status = 'reserved'"),
    )
    op.create_index("ix_plantings_user_id_seq", "plantings", ["user_id", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_plantings_user_id_seq", table_name="plantings")
    op.drop_index(
        "ix_plantings_reserved",
        table_name="plantings",
        postgresql_where=sa.text("status = 'reserved'"),
    )
    op.drop_index(
        "ix_plantings_order_id",
        table_name="plantings",
        postgresql_where=sa.text("order_id IS NOT NULL"),
    )
    op.drop_table("plantings")
    op.drop_index("ix_order_reports_order_id_seq", table_name="order_reports")
    op.drop_table("order_reports")
    op.drop_index("ix_webhook_attempts_delivery_id_id", table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index("ix_planting_orders_partner_id_seq", table_name="planting_orders")
    op.drop_table("planting_orders")
    op.drop_table("webhook_endpoints")
    op.drop_index("ix_webhook_deliveries_status_seq", table_name="webhook_deliveries")
    op.drop_index(op.f("ix_webhook_deliveries_partner_id"), table_name="webhook_deliveries")
    op.drop_index(
        "ix_webhook_deliveries_due",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_catalog_items_partner_id"), table_name="catalog_items")
    op.drop_table("catalog_items")
