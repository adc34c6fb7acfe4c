"""retention_runs: when retention deleted raw calls of closed periods, and before which instant

Readers of raw rows (`calls`, `report --calls`, a closed period's digest)
read the latest `deleted_before` of a run that deleted calls, to say that
the rows before it are gone instead of returning fewer.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models


revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('retention_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('ran_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('deleted_before', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('calls_days', sa.Integer(), nullable=False),
    sa.Column('calls_deleted', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retention_runs'))
    )


def downgrade() -> None:
    op.drop_table('retention_runs')
