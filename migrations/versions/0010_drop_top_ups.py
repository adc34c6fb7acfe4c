"""top_ups dropped: the balance poller wrote it and no reader read it

Top-ups are a function of the balance snapshots: every report and
reconciliation finds them there (`balances.top_ups_in`), whatever has run
before, so a table of what the poller once saw only went stale beside them.
The downgrade makes it again, empty, as 0001 made it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models


revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('top_ups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_top_ups_account'))

    op.drop_table('top_ups')


def downgrade() -> None:
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
