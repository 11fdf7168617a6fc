"""error codes on verdicts, raw bytes of undecodable file names on locations

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 19:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # which kind of failure an error verdict records (ImageError.code): settings-dependent ones
    # (too_many_pixels) are retried on the next scan instead of being skipped as known
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_code", sa.String(length=32), nullable=True))
    # a POSIX file name is bytes: `uri` holds a UTF-8 display form (undecodable bytes as \xNN),
    # raw_uri the exact bytes when they differ, so the file can still be found and moved
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw_uri", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.drop_column("raw_uri")
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.drop_column("error_code")
