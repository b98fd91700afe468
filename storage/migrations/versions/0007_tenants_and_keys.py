"""tenants and API keys

Every agent and batch belongs to a tenant; rows that existed before belong to
the `default` tenant, which the CLI and the Python client use. Agents get
tags (a JSON list, as Letta's API has them). Runs, schedules,
passages and messages reach their tenant through their agent. An API key is
stored as the sha256 of its text (the text itself is shown once, at creation).

Revision ID: 0007
Revises: 0006
"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    tenants = op.create_table(
        'tenants',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.bulk_insert(tenants, [{'id': 'default', 'created_at': datetime.now(timezone.utc)}])
    op.create_table(
        'api_keys',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('key_sha256', sa.String(length=64), nullable=False),
        sa.Column('prefix', sa.String(length=16), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key_sha256', name='uq_api_keys_key_sha256'),
    )
    op.create_index('ix_api_keys_tenant_id', 'api_keys', ['tenant_id'])
    for table in ('agents', 'batches'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column('tenant_id', sa.String(length=64), nullable=False, server_default='default')
            )
            batch_op.create_index(f'ix_{table}_tenant_id', ['tenant_id'])
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tags', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_column('tags')
    for table in ('batches', 'agents'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_tenant_id')
            batch_op.drop_column('tenant_id')
    op.drop_index('ix_api_keys_tenant_id', table_name='api_keys')
    op.drop_table('api_keys')
    op.drop_table('tenants')
