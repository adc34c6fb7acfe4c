"""calls: drop the indexes no query uses (completion_id, pricing_class)

Every record pays for each index of `calls` as it is written (about a
microsecond each on SQLite, more on PostgreSQL). No query looks a call up by
completion_id, and pricing_class is only ever filtered with NOT IN over a
time range, which the started_at index serves.

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
        batch_op.drop_index(batch_op.f('ix_calls_completion_id'))


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calls_completion_id'), ['completion_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_pricing_class'), ['pricing_class'], unique=False)
