"""provider batches: steps whose LLM call goes through a provider's batch API

runs.llm_mode says how a run's steps call the model; steps.llm_mode records it
per committed step. parked_steps holds a parked step's compiled request (keyed by
the step's identity, agent + step number) until its reply is back;
provider_batches the batches uploaded to the provider and where each stands.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('llm_mode', sa.String(length=16), server_default='normal', nullable=False))
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('llm_mode', sa.String(length=16), server_default='normal', nullable=False))
    op.create_table(
        'provider_batches',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('requests', sa.Integer(), nullable=False),
        sa.Column('provider_batch_id', sa.String(length=200), nullable=True),
        sa.Column('input_file_id', sa.String(length=200), nullable=True),
        sa.Column('output_file_id', sa.String(length=200), nullable=True),
        sa.Column('error_file_id', sa.String(length=200), nullable=True),
        sa.Column('provider_status', sa.String(length=32), nullable=True),
        sa.Column('polls', sa.Integer(), nullable=False),
        sa.Column('next_poll_s', sa.Float(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_provider_batches_state_poll', 'provider_batches', ['state', 'next_poll_s'], unique=False)
    op.create_table(
        'parked_steps',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('agent_id', sa.String(length=36), nullable=False),
        sa.Column('step_no', sa.BigInteger(), nullable=False),
        sa.Column('run_id', sa.String(length=36), nullable=False),
        sa.Column('batch_id', sa.String(length=36), nullable=True),
        sa.Column('lease_token', sa.BigInteger(), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('request', sa.JSON(), nullable=False),
        sa.Column('context', sa.JSON(), nullable=False),
        sa.Column('reply', sa.JSON(), nullable=True),
        sa.Column('provider_batch_id', sa.String(length=36), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('agent_id', 'step_no'),
    )
    op.create_index('ix_parked_steps_state_model', 'parked_steps', ['state', 'model', 'id'], unique=False)
    op.create_index('ix_parked_steps_provider_batch', 'parked_steps', ['provider_batch_id'], unique=False)
    op.create_index('ix_parked_steps_run_id', 'parked_steps', ['run_id'], unique=False)
    op.create_index('ix_parked_steps_batch_id', 'parked_steps', ['batch_id'], unique=False)


def downgrade() -> None:
    op.drop_table('parked_steps')
    op.drop_index('ix_provider_batches_state_poll', table_name='provider_batches')
    op.drop_table('provider_batches')
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.drop_column('llm_mode')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('llm_mode')
