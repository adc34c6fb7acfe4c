"""calls: drop the index on pricing_class, which no query uses

Every record pays for each index of `calls` as it is written (about a
microsecond each on SQLite, more on PostgreSQL's server). pricing_class is
only ever filtered with NOT IN over a time range, which the started_at index
serves; a ten-valued column's index does not.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_pricing_class'))


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calls_pricing_class'), ['pricing_class'], unique=False)
