"""call_rollups: exact sums of calls per 15-minute UTC bucket and dimensions, built from the calls there

Readers take whole buckets from the rollups instead of scanning the raw rows;
the writer adds each call it writes in the same transaction. The upgrade
builds the rollups of the calls already in the ledger with the code of
`credit-ledger rollup rebuild` (`ledger.store.rollups.rebuild`), and indexes
calls.recorded_at for the raw rows of a close's cutoff bucket.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models
from sqlalchemy.orm import Session


revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('call_rollups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bucket_start', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recorded_bucket', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('dims_key', sa.String(length=64), nullable=False),
    sa.Column('key_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('key_last4', sa.String(length=4), nullable=True),
    sa.Column('project', sa.String(length=200), nullable=True),
    sa.Column('end_user', sa.String(length=200), nullable=True),
    sa.Column('model_requested', sa.String(length=200), nullable=True),
    sa.Column('model_reported', sa.String(length=200), nullable=True),
    sa.Column('tags', sa.Text(), nullable=True),
    sa.Column('rate_card', sa.String(length=200), nullable=True),
    sa.Column('pricing_class', sa.String(length=40), nullable=False),
    sa.Column('failed', sa.Boolean(), nullable=False),
    sa.Column('calls', sa.BigInteger(), nullable=False),
    sa.Column('failed_calls', sa.BigInteger(), nullable=False),
    sa.Column('prompt_tokens', sa.BigInteger(), nullable=False),
    sa.Column('completion_tokens', sa.BigInteger(), nullable=False),
    sa.Column('reasoning_tokens', sa.BigInteger(), nullable=False),
    sa.Column('findings', sa.BigInteger(), nullable=False),
    sa.Column('credits_charged', ledger.store.models.Credits(), nullable=False),
    sa.Column('credits_expected', ledger.store.models.Credits(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_rollups')),
    sa.UniqueConstraint('bucket_start', 'recorded_bucket', 'dims_key', name=op.f('uq_call_rollups_bucket_start_recorded_bucket_dims_key'))
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_recorded_at', ['recorded_at'], unique=False)
    _build_rollups()


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_recorded_at')

    op.drop_table('call_rollups')


def _build_rollups() -> None:
    # The rebuild of today's code: it reads the calls and writes call_rollups as they are at this revision
    # (a later migration that changes either must build the rollups its own way).
    from ledger.store.rollups import rebuild
    from ledger.store.rollup_tables import QUARTERLY

    if op.get_context().as_sql:  # offline (--sql): no calls to read
        return
    session = Session(bind=op.get_bind())
    try:
        rebuild(session, tables=(QUARTERLY,))  # the wider tables come with 0011
        session.flush()
    finally:
        session.close()
