"""retired_calls: the ids (and record digests) of the calls whose raw rows retention deleted

A replay of a record whose row retention had deleted found no conflicting
call id and was written again, counted twice in the rollups. The writer now
reads the ids retention removed (for the rows of a batch started before the
retention horizon only) and takes such a record for a replay (same digest)
or a conflict (another). Ledgers whose retention ran before this revision
have no ids of the rows it deleted then: nothing can bring them back.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0014'
down_revision: Union[str, Sequence[str], None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('retired_calls',
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('record_digest', sa.String(length=64), nullable=False),
    sa.Column('retention_run_id', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('call_id', name=op.f('pk_retired_calls'))
    )


def downgrade() -> None:
    op.drop_table('retired_calls')
