"""documents: content hash, so re-ingesting a file adds nothing

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_sha256', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint('uq_documents_agent_id_content_sha256', ['agent_id', 'content_sha256'])


def downgrade() -> None:
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_constraint('uq_documents_agent_id_content_sha256', type_='unique')
        batch_op.drop_column('content_sha256')
