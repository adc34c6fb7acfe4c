"""Narrower rollups: calls' sums per 15 minutes, UTC hour and UTC day with fewer dimensions, built from the calls there

`call_rollups` holds nearly a row a call where users, tags and models spread
the calls; these hold far fewer: per 15 minutes and per UTC hour by models,
rate card and pricing class,
per UTC day by key, project and rate card, per UTC day by key, project, user
and rate card (each with the recording floored to its width). Readers take a
range's whole days and hours from them and the rest from `call_rollups`. The
upgrade builds them from the calls already in the ledger the way
`credit-ledger rollup rebuild` does (the 15-minute groups of each day summed
again), a UTC day at a time.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models
from sqlalchemy.orm import Session


revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_TABLES = {
    'call_rollups_quarter_models': [
        ('model_requested', sa.String(length=200), True), ('model_reported', sa.String(length=200), True),
        ('rate_card', sa.String(length=200), True), ('pricing_class', sa.String(length=40), False)],
    'call_rollups_hourly': [
        ('model_requested', sa.String(length=200), True), ('model_reported', sa.String(length=200), True),
        ('rate_card', sa.String(length=200), True), ('pricing_class', sa.String(length=40), False)],
    'call_rollups_daily': [
        ('key_fingerprint', sa.String(length=64), True), ('key_last4', sa.String(length=4), True),
        ('project', sa.String(length=200), True), ('rate_card', sa.String(length=200), True)],
    'call_rollups_daily_users': [
        ('key_fingerprint', sa.String(length=64), True), ('key_last4', sa.String(length=4), True),
        ('project', sa.String(length=200), True), ('end_user', sa.String(length=200), True),
        ('rate_card', sa.String(length=200), True)],
}
_MEASURES = ('calls', 'failed_calls', 'prompt_tokens', 'completion_tokens', 'reasoning_tokens', 'findings')


def upgrade() -> None:
    for name, dims in _TABLES.items():
        op.create_table(name,
            sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
            sa.Column('bucket_start', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
            sa.Column('recorded_bucket', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
            sa.Column('dims_key', sa.String(length=64), nullable=False),
            *[sa.Column(column, kind, nullable=nullable) for column, kind, nullable in dims],
            *[sa.Column(column, sa.BigInteger(), nullable=False) for column in _MEASURES],
            sa.Column('credits_charged', ledger.store.models.Credits(), nullable=False),
            sa.Column('credits_expected', ledger.store.models.Credits(), nullable=False),
            sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{name}')),
            sa.UniqueConstraint('bucket_start', 'recorded_bucket', 'dims_key',
                                name=op.f(f'uq_{name}_bucket_start_recorded_bucket_dims_key')),
        )
    _build_rollups()


def downgrade() -> None:
    for name in reversed(list(_TABLES)):
        op.drop_table(name)


def _build_rollups() -> None:
    # The rebuild of today's code, a UTC day at a time: it reads the calls and writes every rollup table as they are at
    # this revision (a later migration that changes them must build them its own way).
    from ledger.store.rollup_tables import WIDER
    from ledger.store.rollups import days, rebuild

    if op.get_context().as_sql:  # offline (--sql): no calls to read
        return
    session = Session(bind=op.get_bind())
    try:
        for start, end in days(session):
            rebuild(session, start, end, tables=[table for table in WIDER if table.name in _TABLES])
        session.flush()
    finally:
        session.close()
