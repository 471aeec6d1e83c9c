"""rules versions record who published them and which one the rules file last held; a text
may be published again (rollback)

Revision ID: 4b7e1c2d3f95
Revises: 6b1d2e3f4a51
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4b7e1c2d3f95"
down_revision: str | None = "6b1d2e3f4a51"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "rules_versions",
        sa.Column("source", sa.String(length=8), nullable=False, server_default="file"),
    )
    op.add_column(
        "rules_versions", sa.Column("file_synced_at", sa.DateTime(timezone=True), nullable=True)
    )
    # versions published through the API or the CLI are in the audit log; the rest came from
    # the rules file at start
    op.execute(
        """
        UPDATE rules_versions v
           SET source = CASE WHEN a.actor = 'cli' THEN 'cli' ELSE 'api' END
          FROM audit_entries a
         WHERE a.action = 'rules.published' AND a.target = 'rules:' || v.version
        """
    )
    # the file's baseline: the last version it published
    op.execute(
        """
        UPDATE rules_versions SET file_synced_at = created_at
         WHERE version = (SELECT max(version) FROM rules_versions WHERE source = 'file')
        """
    )
    # the default stays: instances of the previous release (a rolling deploy) insert without it
    # both may be absent/present already after a downgrade that could not restore uniqueness
    op.execute("ALTER TABLE rules_versions DROP CONSTRAINT IF EXISTS uq_rules_versions_sha256")
    op.create_index(
        "ix_rules_versions_sha256", "rules_versions", ["sha256"], unique=False, if_not_exists=True
    )


def downgrade() -> None:
    # a rollback may have published a text twice; those versions are referenced by balls and
    # ledger entries and cannot be dropped, so the unique constraint only comes back when the
    # texts are still unique (the previous release reads either way; it can then not publish
    # a new text until the duplicates are gone)
    duplicates = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) - count(DISTINCT sha256) FROM rules_versions"))
        .scalar_one()
    )
    if not duplicates:
        op.drop_index("ix_rules_versions_sha256", table_name="rules_versions")
        op.create_unique_constraint("uq_rules_versions_sha256", "rules_versions", ["sha256"])
    op.drop_column("rules_versions", "file_synced_at")
    op.drop_column("rules_versions", "source")
