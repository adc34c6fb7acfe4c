"""ledger schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models


revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=True),
    sa.Column('account', sa.String(length=200), nullable=True),
    sa.Column('first_seen_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('fingerprint', name=op.f('pk_api_keys'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_account'), ['account'], unique=False)

    op.create_table('balance_snapshots',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account', sa.String(length=200), nullable=False),
    sa.Column('key_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('taken_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('balance', ledger.store.models.Credits(), nullable=True),
    sa.Column('total_purchased', ledger.store.models.Credits(), nullable=True),
    sa.Column('total_consumed', ledger.store.models.Credits(), nullable=True),
    sa.Column('status', sa.String(length=40), nullable=False),
    sa.Column('raw_response', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_balance_snapshots'))
    )
    with op.batch_alter_table('balance_snapshots', schema=None) as batch_op:
        batch_op.create_index('ix_balance_snapshots_account_taken_at', ['account', 'taken_at'], unique=False)

    op.create_table('calls',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('completion_id', sa.String(length=200), nullable=True),
    sa.Column('model_requested', sa.String(length=200), nullable=True),
    sa.Column('model_reported', sa.String(length=200), nullable=True),
    sa.Column('stream', sa.Boolean(), nullable=False),
    sa.Column('reasoning_effort', sa.String(length=20), nullable=True),
    sa.Column('include_thoughts', sa.Boolean(), nullable=True),
    sa.Column('tools', sa.String(length=200), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('started_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('first_byte_at', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('error_code', sa.String(length=200), nullable=True),
    sa.Column('error_type', sa.String(length=200), nullable=True),
    sa.Column('finish_reason', sa.String(length=200), nullable=True),
    sa.Column('refunded', sa.Boolean(), nullable=False),
    sa.Column('prompt_tokens', sa.BigInteger(), nullable=True),
    sa.Column('completion_tokens', sa.BigInteger(), nullable=True),
    sa.Column('reasoning_tokens', sa.BigInteger(), nullable=True),
    sa.Column('audio_tokens', sa.BigInteger(), nullable=True),
    sa.Column('text_tokens', sa.BigInteger(), nullable=True),
    sa.Column('total_tokens', sa.BigInteger(), nullable=True),
    sa.Column('credits_charged', ledger.store.models.Credits(), nullable=True),
    sa.Column('credits_expected', ledger.store.models.Credits(), nullable=True),
    sa.Column('pricing_class', sa.String(length=40), nullable=False),
    sa.Column('rate_card', sa.String(length=200), nullable=True),
    sa.Column('key_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('key_last4', sa.String(length=4), nullable=True),
    sa.Column('project', sa.String(length=200), nullable=True),
    sa.Column('end_user', sa.String(length=200), nullable=True),
    sa.Column('tags', sa.Text(), nullable=True),
    sa.Column('anomalies', sa.Text(), nullable=True),
    sa.Column('record_digest', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calls')),
    sa.UniqueConstraint('call_id', name=op.f('uq_calls_call_id'))
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calls_completion_id'), ['completion_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_key_fingerprint'), ['key_fingerprint'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_pricing_class'), ['pricing_class'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_project'), ['project'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_started_at'), ['started_at'], unique=False)

    op.create_table('job_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job', sa.String(length=100), nullable=False),
    sa.Column('started_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('host', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs'))
    )
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_runs_job'), ['job'], unique=False)

    op.create_table('rate_cards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('effective_from', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('endpoint', sa.String(length=200), nullable=False),
    sa.Column('input_per_million', ledger.store.models.Credits(), nullable=False),
    sa.Column('output_per_million', ledger.store.models.Credits(), nullable=False),
    sa.Column('usd_per_credit', ledger.store.models.Credits(), nullable=False),
    sa.Column('loaded_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rate_cards'))
    )
    with op.batch_alter_table('rate_cards', schema=None) as batch_op:
        batch_op.create_index('uq_rate_cards_name_model', ['name', 'model'], unique=True)

    op.create_table('rejected_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('received_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rejected_records'))
    )
    with op.batch_alter_table('rejected_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rejected_records_call_id'), ['call_id'], unique=False)

    op.create_table('call_corrections',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('credits_charged_delta', ledger.store.models.Credits(), nullable=True),
    sa.Column('credits_expected', ledger.store.models.Credits(), nullable=True),
    sa.Column('pricing_class', sa.String(length=40), nullable=True),
    sa.Column('rate_card', sa.String(length=200), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.call_id'], name=op.f('fk_call_corrections_call_id_calls')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_corrections'))
    )
    with op.batch_alter_table('call_corrections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_corrections_call_id'), ['call_id'], unique=False)

    op.create_table('top_ups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account', sa.String(length=200), nullable=False),
    sa.Column('snapshot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('detected_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('credits', ledger.store.models.Credits(), nullable=False),
    sa.ForeignKeyConstraint(['snapshot_id'], ['balance_snapshots.id'], name=op.f('fk_top_ups_snapshot_id_balance_snapshots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_top_ups')),
    sa.UniqueConstraint('snapshot_id', name=op.f('uq_top_ups_snapshot_id'))
    )
    with op.batch_alter_table('top_ups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_top_ups_account'), ['account'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('top_ups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_top_ups_account'))

    op.drop_table('top_ups')
    with op.batch_alter_table('call_corrections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_corrections_call_id'))

    op.drop_table('call_corrections')
    with op.batch_alter_table('rejected_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rejected_records_call_id'))

    op.drop_table('rejected_records')
    with op.batch_alter_table('rate_cards', schema=None) as batch_op:
        batch_op.drop_index('uq_rate_cards_name_model')

    op.drop_table('rate_cards')
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_runs_job'))

    op.drop_table('job_runs')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_started_at'))
        batch_op.drop_index(batch_op.f('ix_calls_project'))
        batch_op.drop_index(batch_op.f('ix_calls_pricing_class'))
        batch_op.drop_index(batch_op.f('ix_calls_key_fingerprint'))
        batch_op.drop_index(batch_op.f('ix_calls_completion_id'))

    op.drop_table('calls')
    with op.batch_alter_table('balance_snapshots', schema=None) as batch_op:
        batch_op.drop_index('ix_balance_snapshots_account_taken_at')

    op.drop_table('balance_snapshots')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_account'))

    op.drop_table('api_keys')
