"""limit_holds: what each process's calls in flight may cost an enforced budget

A hard limit near its end is admitted through the ledger: a process holds
room for its calls in flight in a row of its own, written while the budget's
holds are locked, so that processes cannot both spend the last credit.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models


revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('limit_holds',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('budget', sa.String(length=200), nullable=False),
    sa.Column('period', sa.String(length=100), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=False),
    sa.Column('credits', ledger.store.models.Credits(), nullable=False),
    sa.Column('expires_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_limit_holds'))
    )
    with op.batch_alter_table('limit_holds', schema=None) as batch_op:
        batch_op.create_index('uq_limit_holds_budget_period_holder', ['budget', 'period', 'holder'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('limit_holds', schema=None) as batch_op:
        batch_op.drop_index('uq_limit_holds_budget_period_holder')
    op.drop_table('limit_holds')
