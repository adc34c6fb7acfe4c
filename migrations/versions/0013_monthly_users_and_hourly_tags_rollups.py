"""Monthly users' and hourly tags' rollups: sums per UTC month by key, project, user and card, per UTC hour by tags and card

`call_rollups_daily_users` holds about a row for every three calls at
1,000,000 calls (a user makes a few calls a day): a month's report by user
read as many rows as a third of its calls. This table holds a row a user,
key, project and card a UTC month (and recorded month); readers take a local
month's UTC month whole and add or take away the days of its ends from the
daily table. The upgrade builds it from the ledger's `call_rollups_daily_users`
rows (each month's the sum of its days'), as `credit-ledger rollup rebuild`
does.

`call_rollups_hourly_tags` sums the calls per UTC hour by tags and rate card:
a tag's budget over rolling days read `call_rollups`, about a row a call. The
upgrade builds it from the calls a UTC day at a time, as 0011 built its tables.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models
from sqlalchemy.orm import Session


revision: str = '0013'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_NAME = 'call_rollups_monthly_users'
_DIMS = [('key_fingerprint', sa.String(length=64)), ('key_last4', sa.String(length=4)),
         ('project', sa.String(length=200)), ('end_user', sa.String(length=200)), ('rate_card', sa.String(length=200))]
_MEASURES = ('calls', 'failed_calls', 'prompt_tokens', 'completion_tokens', 'reasoning_tokens', 'findings')


_TAGS = 'call_rollups_hourly_tags'


def upgrade() -> None:
    op.create_table(_TAGS,
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('bucket_start', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('recorded_bucket', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('dims_key', sa.String(length=64), nullable=False),
        sa.Column('tags', sa.Text(), nullable=True),
        sa.Column('rate_card', sa.String(length=200), nullable=True),
        *[sa.Column(column, sa.BigInteger(), nullable=False) for column in _MEASURES],
        sa.Column('credits_charged', ledger.store.models.Credits(), nullable=False),
        sa.Column('credits_expected', ledger.store.models.Credits(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{_TAGS}')),
        sa.UniqueConstraint('bucket_start', 'recorded_bucket', 'dims_key',
                            name=op.f(f'uq_{_TAGS}_bucket_start_recorded_bucket_dims_key')),
    )
    op.create_table(_NAME,
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('bucket_start', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('recorded_bucket', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('dims_key', sa.String(length=64), nullable=False),
        *[sa.Column(column, kind, nullable=True) for column, kind in _DIMS],
        *[sa.Column(column, sa.BigInteger(), nullable=False) for column in _MEASURES],
        sa.Column('credits_charged', ledger.store.models.Credits(), nullable=False),
        sa.Column('credits_expected', ledger.store.models.Credits(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{_NAME}')),
        sa.UniqueConstraint('bucket_start', 'recorded_bucket', 'dims_key',
                            name=op.f(f'uq_{_NAME}_bucket_start_recorded_bucket_dims_key')),
    )
    _build()


def downgrade() -> None:
    op.drop_table(_NAME)
    op.drop_table(_TAGS)


def _build() -> None:
    # Today's code: the hourly tags' rows from the calls a UTC day at a time, then every month summed from the daily
    # users' rows, as they are at this revision.
    from ledger.store.rollup_months import rebuild_months
    from ledger.store.rollup_tables import HOURLY_TAGS
    from ledger.store.rollups import days, rebuild

    if op.get_context().as_sql:  # offline (--sql): no rows to read
        return
    session = Session(bind=op.get_bind())
    try:
        for start, end in days(session):
            rebuild(session, start, end, tables=[HOURLY_TAGS])
        rebuild_months(session, None, None)
        session.flush()
    finally:
        session.close()
