"""Hourly projects' rollups: the daily table's dimensions per UTC hour

A local month's ends (Asia/Kolkata: 2026-09-30 18:30Z to midnight and
2026-10-31 to 18:30Z) are not whole UTC days: reports by project read them
from `call_rollups`, about a row a call, for no narrower table held a
project below a day. `call_rollups_hourly_projects` sums the calls per UTC
hour by key, project and rate card (the daily table's dimensions). The
upgrade builds it from the ledger's `call_rollups` rows a UTC day at a time
(their sums per hour; the periods retention emptied of raw calls included).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models
from sqlalchemy.orm import Session


revision: str = '0015'
down_revision: Union[str, Sequence[str], None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_KEY = [('key_fingerprint', sa.String(length=64)), ('key_last4', sa.String(length=4)), ('project', sa.String(length=200))]
_TABLES = {
    'call_rollups_hourly_projects': [*_KEY, ('rate_card', sa.String(length=200))],
}
_MEASURES = ('calls', 'failed_calls', 'prompt_tokens', 'completion_tokens', 'reasoning_tokens', 'findings')


def upgrade() -> None:
    for name, dims in _TABLES.items():
        op.create_table(name,
            sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
            sa.Column('bucket_start', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
            sa.Column('recorded_bucket', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
            sa.Column('dims_key', sa.String(length=64), nullable=False),
            *[sa.Column(column, kind, nullable=True) for column, kind in dims],
            *[sa.Column(column, sa.BigInteger(), nullable=False) for column in _MEASURES],
            sa.Column('credits_charged', ledger.store.models.Credits(), nullable=False),
            sa.Column('credits_expected', ledger.store.models.Credits(), nullable=False),
            sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{name}')),
            sa.UniqueConstraint('bucket_start', 'recorded_bucket', 'dims_key',
                                name=op.f(f'uq_{name}_bucket_start_recorded_bucket_dims_key')),
        )
    _build()


def downgrade() -> None:
    for name in reversed(list(_TABLES)):
        op.drop_table(name)


def _build() -> None:
    # Today's code: each table's rows summed from the 15-minute rows, a UTC day at a time (a statement's rows bounded).
    from ledger.store.rollup_stored import build_from_quarters
    from ledger.store.rollup_tables import HOURLY_PROJECTS
    from ledger.store.rollups import days

    if op.get_context().as_sql:  # offline (--sql): no rows to read
        return
    session = Session(bind=op.get_bind())
    try:
        for start, end in days(session):  # each 15-minute row read once, its sums added to its hour's row
            build_from_quarters(session, HOURLY_PROJECTS, start, end)
        session.flush()
    finally:
        session.close()
