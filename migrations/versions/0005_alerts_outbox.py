"""alerts and their outbox (deliveries, attempts); calls indexes that serve a budget's sum

A budget's spend is SUM(credits_charged) over a scope and a period. The
single-column indexes on calls.started_at, calls.project and
calls.key_fingerprint become (started_at, credits_charged), (project,
started_at, credits_charged, end_user) and (key_fingerprint, started_at,
credits_charged): the sum of every call, a project's, a project's user's or
a key's calls in a period is read from an index alone, and what used the old
indexes (a query by time, project or key) uses the new ones. A record still
pays for the same number of indexes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models


revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('alert_key', sa.String(length=400), nullable=False),
    sa.Column('condition_id', sa.String(length=300), nullable=False),
    sa.Column('subject', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=True),
    sa.Column('period_label', sa.String(length=100), nullable=True),
    sa.Column('period_end', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('raised_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('raised_by', sa.String(length=200), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('facts', sa.Text(), nullable=False),
    sa.Column('resolved_at', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_message', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('alert_key', name=op.f('uq_alerts_alert_key'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_condition_id'), ['condition_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_raised_at'), ['raised_at'], unique=False)

    op.create_table('alert_deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('alert_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('channel', sa.String(length=100), nullable=False),
    sa.Column('message_id', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('lease_until', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_deliveries_alert_id_alerts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_deliveries'))
    )
    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_alert_deliveries_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('uq_alert_deliveries_alert_id_kind_channel', ['alert_id', 'kind', 'channel'], unique=True)

    op.create_table('delivery_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('delivery_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('started_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('host', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['alert_deliveries.id'], name=op.f('fk_delivery_attempts_delivery_id_alert_deliveries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_attempts'))
    )
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_attempts_delivery_id'), ['delivery_id'], unique=False)

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_key_fingerprint'))
        batch_op.drop_index(batch_op.f('ix_calls_project'))
        batch_op.drop_index(batch_op.f('ix_calls_started_at'))
        batch_op.create_index('ix_calls_started_at_credits_charged', ['started_at', 'credits_charged'], unique=False)
        batch_op.create_index('ix_calls_key_fingerprint_started_at', ['key_fingerprint', 'started_at', 'credits_charged'], unique=False)
        batch_op.create_index('ix_calls_project_started_at', ['project', 'started_at', 'credits_charged', 'end_user'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_project_started_at')
        batch_op.drop_index('ix_calls_key_fingerprint_started_at')
        batch_op.drop_index('ix_calls_started_at_credits_charged')
        batch_op.create_index(batch_op.f('ix_calls_started_at'), ['started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_project'), ['project'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_key_fingerprint'), ['key_fingerprint'], unique=False)

    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_attempts_delivery_id'))

    op.drop_table('delivery_attempts')
    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.drop_index('uq_alert_deliveries_alert_id_kind_channel')
        batch_op.drop_index('ix_alert_deliveries_status_next_attempt_at')

    op.drop_table('alert_deliveries')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_raised_at'))
        batch_op.drop_index(batch_op.f('ix_alerts_condition_id'))

    op.drop_table('alerts')
