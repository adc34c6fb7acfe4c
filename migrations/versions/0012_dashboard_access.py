"""dashboard access: users, sessions, sign-in links, API tokens, sign-in attempts, audit log

Secrets are kept as hashes only (ledger.store.credentials). The audit log is
append-only: a trigger on each database refuses an UPDATE or a DELETE of it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import ledger.store.models


revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('projects', sa.Text(), nullable=True),
    sa.Column('created_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('name', name=op.f('uq_api_tokens_name')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('target', sa.String(length=400), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('address', sa.String(length=100), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)

    op.create_table('dashboard_users',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('projects', sa.Text(), nullable=True),
    sa.Column('password_hash', sa.String(length=200), nullable=True),
    sa.Column('signs_in_with', sa.String(length=20), nullable=False),
    sa.Column('created_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('disabled_at', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dashboard_users')),
    sa.UniqueConstraint('name', name=op.f('uq_dashboard_users_name'))
    )
    op.create_table('sign_in_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('name_hash', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=100), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sign_in_attempts'))
    )
    with op.batch_alter_table('sign_in_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_sign_in_attempts_address_at', ['address', 'at'], unique=False)
        batch_op.create_index('ix_sign_in_attempts_name_hash_at', ['name_hash', 'at'], unique=False)

    op.create_table('sign_in_links',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['dashboard_users.id'], name=op.f('fk_sign_in_links_user_id_dashboard_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sign_in_links')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_sign_in_links_token_hash'))
    )
    with op.batch_alter_table('sign_in_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sign_in_links_user_id'), ['user_id'], unique=False)

    op.create_table('web_sessions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', ledger.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', ledger.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('address', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['dashboard_users.id'], name=op.f('fk_web_sessions_user_id_dashboard_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_web_sessions_token_hash'))
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_sessions_user_id'), ['user_id'], unique=False)

    _append_only('audit_log')



def _append_only(table: str) -> None:
    """Refuse every UPDATE and DELETE of `table` in the database itself, whatever client writes."""
    message = f"{table} is append-only"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$")
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()")
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                   f"BEGIN SELECT RAISE(ABORT, '{message}'); END")


def downgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sessions_user_id'))

    op.drop_table('web_sessions')
    with op.batch_alter_table('sign_in_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sign_in_links_user_id'))

    op.drop_table('sign_in_links')
    with op.batch_alter_table('sign_in_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_sign_in_attempts_name_hash_at')
        batch_op.drop_index('ix_sign_in_attempts_address_at')

    op.drop_table('sign_in_attempts')
    op.drop_table('dashboard_users')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')  # its triggers with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_table('api_tokens')
