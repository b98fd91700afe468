"""messages(run_id, id): a run's messages without reading every agent's

Revision ID: 0012
Revises: 0011

memq runs all its migrations in one transaction (storage/db.py Database.upgrade), where
Postgres cannot build an index CONCURRENTLY, so this build holds off writes to messages
(not reads) while it runs. On a big live table, build it beforehand without that lock:

    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_messages_run_id_id ON messages (run_id, id);

and this migration finds it and does nothing (if that build failed, DROP INDEX the
invalid one first).
"""
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_messages_run_id_id', 'messages', ['run_id', 'id'], if_not_exists=True)


def downgrade() -> None:
    op.drop_index('ix_messages_run_id_id', table_name='messages')
