"""balance snapshots: when the poll's answer came back

A snapshot's figures hold at some instant between the poll's request
(taken_at) and its answer (answered_at): the reconciliation treats a call as
ambiguous only when it overlaps that interval. Snapshots taken before this
column have none; the check then takes the request's time for both.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('balance_snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('answered_at', ledger.store.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('balance_snapshots', schema=None) as batch_op:
        batch_op.drop_column('answered_at')
