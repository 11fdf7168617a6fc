"""attribution: which latent space a verdict guesses made the image

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 03:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the guess alone (indexed: reports count flagged images by family) and the whole
    # attribution (every class's probability) as JSON; NULL for verdicts without a guess
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attribution_guess", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("attribution", sa.JSON(), nullable=True))
        batch_op.create_index("ix_verdicts_attribution_guess", ["attribution_guess"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.drop_index("ix_verdicts_attribution_guess")
        batch_op.drop_column("attribution")
        batch_op.drop_column("attribution_guess")
