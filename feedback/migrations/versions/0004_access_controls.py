"""Access controls: login throttling, forced alias moves, and raw text replaced after the retention period.

- ``login_failures``: failed logins per account and per client address (``user:<name>``, ``addr:<ip>``),
  so that a restart does not reset a lockout;
- ``alias_moves.forced``: the move overrode a missing or failed gate decision (``--force``);
- ``redacted_at`` on messages, ratings and reviews: when ``python -m feedback.retention`` replaced the
  row's free text by its scrubbed form.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_REDACTED = ("messages", "ratings", "reviews")


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    )
    with op.batch_alter_table("alias_moves") as batch:
        batch.add_column(sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()))
    for table in _REDACTED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("redacted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in _REDACTED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("redacted_at")
    with op.batch_alter_table("alias_moves") as batch:
        batch.drop_column("forced")
    op.drop_table("login_failures")
