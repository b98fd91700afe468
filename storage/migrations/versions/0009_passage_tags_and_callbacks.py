"""passage tags and the callback outbox

Archival passages get tags (a JSON list, as Letta's archival API has them).
`callbacks` is the outbox of `create_async(..., callback_url=...)`: one row per
run, written in the run's own transaction, claimed by a deliverer once the run
has finished, posted with retries; attempts and the last answer are recorded.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('passages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tags', sa.JSON(), nullable=True))
    op.create_table(
        'callbacks',
        sa.Column('run_id', sa.String(length=36), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_status', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id'),
    )
    op.create_index('ix_callbacks_pending', 'callbacks', ['next_attempt_at'], unique=False,
                    postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))


def downgrade() -> None:
    op.drop_index('ix_callbacks_pending', table_name='callbacks')
    op.drop_table('callbacks')
    with op.batch_alter_table('passages', schema=None) as batch_op:
        batch_op.drop_column('tags')
