"""claims: which process is scoring an image, so several watchers on one folder score it once

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("detector_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=160), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["detector_id"],
            ["detectors.id"],
            name=op.f("fk_claims_detector_id_detectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sha256", "detector_id", name=op.f("pk_claims")),
    )


def downgrade() -> None:
    op.drop_table("claims")
