"""call_corrections dropped: nothing ever wrote it

A later fact about a call is a row of its own where the ledger keeps one (a
late call is a prior-period adjustment, a rejected record is kept aside); this
table was made for corrections and never held a row. The downgrade makes it
again, empty.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models


revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('call_corrections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_corrections_call_id'))

    op.drop_table('call_corrections')


def downgrade() -> None:
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
