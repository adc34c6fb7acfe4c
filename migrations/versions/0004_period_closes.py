"""period_closes: closes and reopens of report periods, rows only ever added

A close fixes a period's figures and the digest of its calls; a call of the
period recorded after the close's cutoff is a prior-period adjustment of a
later period. A reopen is a row too, never an UPDATE or DELETE.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models


revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('period_closes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('period_kind', sa.String(length=20), nullable=False),
    sa.Column('period_label', sa.String(length=40), nullable=False),
    sa.Column('zone', sa.String(length=100), nullable=False),
    sa.Column('period_start', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('period_end', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('cutoff_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('calls', sa.BigInteger(), nullable=True),
    sa.Column('credits_charged', ledger.store.models.Credits(), nullable=True),
    sa.Column('credits_expected', ledger.store.models.Credits(), nullable=True),
    sa.Column('totals', sa.Text(), nullable=True),
    sa.Column('calls_digest', sa.String(length=64), nullable=True),
    sa.Column('reconciliation', sa.String(length=40), nullable=True),
    sa.Column('reconciliation_detail', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('host', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_period_closes'))
    )
    with op.batch_alter_table('period_closes', schema=None) as batch_op:
        batch_op.create_index('ix_period_closes_period_start_period_end', ['period_start', 'period_end'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('period_closes', schema=None) as batch_op:
        batch_op.drop_index('ix_period_closes_period_start_period_end')

    op.drop_table('period_closes')
