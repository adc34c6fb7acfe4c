"""The ledger's tables (SQLAlchemy 2.0 typed ORM) and its exact money column.

Amounts are stored as integer nano-credits (`Credits` maps them to Decimal),
so SQLite and PostgreSQL sum them exactly. Rows are written once: nothing
updates an amount.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..money import from_nano, to_nano

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Credits(TypeDecorator[Decimal]):
    """A credit amount: Decimal in Python, BIGINT nano-credits in the database."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = Decimal(value)
        return to_nano(value)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else from_nano(int(value))


def as_utc(value: datetime | None) -> datetime | None:
    """The instant in UTC; a naive datetime is refused (the ledger never guesses a zone)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the ledger")
    return value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        return as_utc(value)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Call(Base):
    """One chat call attempt, as recorded and priced."""

    __tablename__ = "calls"
    # A budget's spend is a sum over a scope and a period: these serve it from the index alone (a budget
    # of a project, of a project's user, of keys or of every call reads only its own calls of the period),
    # and every query by time, project or key as the single-column indexes did.
    __table_args__ = (
        Index("ix_calls_started_at_credits_charged", "started_at", "credits_charged"),
        Index("ix_calls_project_started_at", "project", "started_at", "credits_charged", "end_user"),
        Index("ix_calls_key_fingerprint_started_at", "key_fingerprint", "started_at", "credits_charged"),
        Index("ix_calls_recorded_at", "recorded_at"),  # a close's cutoff: the raw rows of the one recorded bucket
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    completion_id: Mapped[str | None] = mapped_column(String(200), index=True)
    model_requested: Mapped[str | None] = mapped_column(String(200))
    model_reported: Mapped[str | None] = mapped_column(String(200))
    stream: Mapped[bool] = mapped_column(Boolean)
    reasoning_effort: Mapped[str | None] = mapped_column(String(20))
    include_thoughts: Mapped[bool | None] = mapped_column(Boolean)
    tools: Mapped[str | None] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_byte_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(200))
    error_type: Mapped[str | None] = mapped_column(String(200))
    finish_reason: Mapped[str | None] = mapped_column(String(200))
    refunded: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt_tokens: Mapped[int | None] = mapped_column(BigInteger)
    completion_tokens: Mapped[int | None] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int | None] = mapped_column(BigInteger)
    audio_tokens: Mapped[int | None] = mapped_column(BigInteger)
    text_tokens: Mapped[int | None] = mapped_column(BigInteger)
    total_tokens: Mapped[int | None] = mapped_column(BigInteger)
    credits_charged: Mapped[Decimal | None] = mapped_column(Credits)
    credits_expected: Mapped[Decimal | None] = mapped_column(Credits)
    pricing_class: Mapped[str] = mapped_column(String(40))
    rate_card: Mapped[str | None] = mapped_column(String(200))
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    key_last4: Mapped[str | None] = mapped_column(String(4))
    project: Mapped[str | None] = mapped_column(String(200))
    end_user: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[str | None] = mapped_column(Text)  # JSON object, keys sorted
    anomalies: Mapped[str | None] = mapped_column(Text)  # comma-separated names
    record_digest: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RejectedRecord(Base):
    """A record kept aside: a replayed call id with other content, or worse."""

    __tablename__ = "rejected_records"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RateCardRow(Base):
    """A rate card as it was in force; one row per (card, model)."""

    __tablename__ = "rate_cards"
    __table_args__ = (Index("uq_rate_cards_name_model", "name", "model", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime)
    model: Mapped[str] = mapped_column(String(200))
    endpoint: Mapped[str] = mapped_column(String(200))
    input_per_million: Mapped[Decimal] = mapped_column(Credits)
    output_per_million: Mapped[Decimal] = mapped_column(Credits)
    usd_per_credit: Mapped[Decimal] = mapped_column(Credits)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """A key known by its keyed fingerprint and last four characters, never itself."""

    __tablename__ = "api_keys"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    last4: Mapped[str] = mapped_column(String(4))
    label: Mapped[str | None] = mapped_column(String(200))
    account: Mapped[str | None] = mapped_column(String(200), index=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BalanceSnapshot(Base):
    """One answer of GET /v1/credits for an account."""

    __tablename__ = "balance_snapshots"
    __table_args__ = (Index("ix_balance_snapshots_account_taken_at", "account", "taken_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    account: Mapped[str] = mapped_column(String(200))
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the answered request was sent
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when its answer came back
    balance: Mapped[Decimal | None] = mapped_column(Credits)
    total_purchased: Mapped[Decimal | None] = mapped_column(Credits)
    total_consumed: Mapped[Decimal | None] = mapped_column(Credits)
    status: Mapped[str] = mapped_column(String(40))  # ok, or the anomaly's name
    raw_response: Mapped[str | None] = mapped_column(Text)


class JobRun(Base):
    """One run of a scheduled job."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job: Mapped[str] = mapped_column(String(100), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(200))


class PeriodClose(Base):
    """A period closed (its figures and the digest of its calls, fixed) or reopened: rows are only added.

    A period's state is its latest row. `cutoff_at` is, for a close, the
    instant its figures stop: a call of the period recorded after it is a
    prior-period adjustment of a later period, never part of these figures;
    for a reopen, the instant the period was opened again.
    """

    __tablename__ = "period_closes"
    __table_args__ = (Index("ix_period_closes_period_start_period_end", "period_start", "period_end"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    action: Mapped[str] = mapped_column(String(20))  # close, reopen
    period_kind: Mapped[str] = mapped_column(String(20))
    period_label: Mapped[str] = mapped_column(String(40))
    zone: Mapped[str] = mapped_column(String(100))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    cutoff_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    calls: Mapped[int | None] = mapped_column(BigInteger)
    credits_charged: Mapped[Decimal | None] = mapped_column(Credits)
    credits_expected: Mapped[Decimal | None] = mapped_column(Credits)
    totals: Mapped[str | None] = mapped_column(Text)  # JSON: every figure of the close, exact decimals as strings
    calls_digest: Mapped[str | None] = mapped_column(String(64))
    reconciliation: Mapped[str | None] = mapped_column(String(40))  # reconciled, gap_accepted, no_snapshots
    reconciliation_detail: Mapped[str | None] = mapped_column(Text)  # JSON of the reconciliation
    reason: Mapped[str | None] = mapped_column(Text)  # --accept-gap's reason, or why it was reopened
    host: Mapped[str | None] = mapped_column(String(200))


class Alert(Base):
    """One alert: a budget past a threshold or its forecast in a period, a balance condition's episode.

    `alert_key` is unique: whichever replica raises it first writes it, the
    others find it there. It is written before it is sent (`alert_deliveries`).
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    alert_key: Mapped[str] = mapped_column(String(400), unique=True)
    condition_id: Mapped[str] = mapped_column(String(300), index=True)
    subject: Mapped[str] = mapped_column(String(20))  # budget | balance
    name: Mapped[str] = mapped_column(String(200))  # the budget's name or the account
    kind: Mapped[str] = mapped_column(String(20))  # threshold | forecast | below | runway
    threshold: Mapped[int | None] = mapped_column(Integer)
    period_label: Mapped[str | None] = mapped_column(String(100))
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    raised_by: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    facts: Mapped[str] = mapped_column(Text)  # JSON, amounts as exact decimal strings
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_message: Mapped[str | None] = mapped_column(Text)


class AlertDelivery(Base):
    """The outbox: one alert (or its resolved notice) to one channel, pending until a sender delivers it.

    A sender claims a delivery for one attempt by a conditional UPDATE of its
    lease, so two senders never send it at once.
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        Index("uq_alert_deliveries_alert_id_kind_channel", "alert_id", "kind", "channel", unique=True),
        Index("ix_alert_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    kind: Mapped[str] = mapped_column(String(20))  # alert | resolved
    channel: Mapped[str] = mapped_column(String(100))
    message_id: Mapped[str] = mapped_column(String(100))  # the same on every attempt (webhook-id)
    status: Mapped[str] = mapped_column(String(20))  # pending | delivered
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class DeliveryAttempt(Base):
    """One try of a delivery and how it went (never the URL or a secret)."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("alert_deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(20))  # delivered | unconfirmed | failed
    detail: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(200))  # the sender that made the attempt


class LimitHold(Base):
    """What one process's calls in flight may cost an enforced budget: the room it holds until its calls are in `calls`.

    One row per (budget, period, holder), rewritten by its holder while the
    budget's rows are locked (`ledger.store.limit_holds`): every process admits
    calls within its hold, so together they cannot spend the last credit twice.
    A hold past `expires_at` (its process is gone) holds nothing.
    """

    __tablename__ = "limit_holds"
    __table_args__ = (Index("uq_limit_holds_budget_period_holder", "budget", "period", "holder", unique=True),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    budget: Mapped[str] = mapped_column(String(200))
    period: Mapped[str] = mapped_column(String(100))  # the period's label
    holder: Mapped[str] = mapped_column(String(64))  # the process's call-id prefix
    credits: Mapped[Decimal] = mapped_column(Credits)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CallRollup(Base):
    """Exact sums of the calls of one 15-minute UTC bucket, one recorded bucket and one set of dimensions.

    `bucket_start` floors a call's `started_at`, `recorded_bucket` its
    `recorded_at`, to 15 minutes UTC. `dims_key` names the dimension columns'
    values (`ledger.store.rollups.dims_key`, NULL distinct from ""), the
    unique key with the two buckets since SQL's UNIQUE treats NULLs as
    distinct. The writer adds each call it wrote, in the same transaction.
    """

    __tablename__ = "call_rollups"
    __table_args__ = (UniqueConstraint("bucket_start", "recorded_bucket", "dims_key"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_bucket: Mapped[datetime] = mapped_column(UTCDateTime)
    dims_key: Mapped[str] = mapped_column(String(64))
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    key_last4: Mapped[str | None] = mapped_column(String(4))
    project: Mapped[str | None] = mapped_column(String(200))
    end_user: Mapped[str | None] = mapped_column(String(200))
    model_requested: Mapped[str | None] = mapped_column(String(200))
    model_reported: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[str | None] = mapped_column(Text)  # JSON object, keys sorted (as calls.tags)
    rate_card: Mapped[str | None] = mapped_column(String(200))
    pricing_class: Mapped[str] = mapped_column(String(40))
    failed: Mapped[bool] = mapped_column(Boolean)
    calls: Mapped[int] = mapped_column(BigInteger)
    failed_calls: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger)
    findings: Mapped[int] = mapped_column(BigInteger)
    credits_charged: Mapped[Decimal] = mapped_column(Credits)
    credits_expected: Mapped[Decimal] = mapped_column(Credits)


class _WiderRollup:
    """The columns every wider rollup shares: its buckets (the start and the recording floored to its width, UTC),
    `dims_key` over its own dimensions, and the sums `call_rollups` holds."""

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_bucket: Mapped[datetime] = mapped_column(UTCDateTime)
    dims_key: Mapped[str] = mapped_column(String(64))
    calls: Mapped[int] = mapped_column(BigInteger)
    failed_calls: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger)
    findings: Mapped[int] = mapped_column(BigInteger)
    credits_charged: Mapped[Decimal] = mapped_column(Credits)
    credits_expected: Mapped[Decimal] = mapped_column(Credits)


class CallRollupQuarterModels(_WiderRollup, Base):
    """The calls' sums per 15-minute UTC bucket, recorded bucket, models, rate card and pricing class: the quarter
    hours of reports by time and model where a local bound cuts an hour (+05:30, +05:45)."""

    __tablename__ = "call_rollups_quarter_models"
    __table_args__ = (UniqueConstraint("bucket_start", "recorded_bucket", "dims_key"),)

    model_requested: Mapped[str | None] = mapped_column(String(200))
    model_reported: Mapped[str | None] = mapped_column(String(200))
    rate_card: Mapped[str | None] = mapped_column(String(200))
    pricing_class: Mapped[str] = mapped_column(String(40))


class CallRollupHourly(_WiderRollup, Base):
    """The calls' sums per UTC hour, recorded hour, models, rate card and pricing class: reports by time and model,
    budgets of a model and of the whole ledger."""

    __tablename__ = "call_rollups_hourly"
    __table_args__ = (UniqueConstraint("bucket_start", "recorded_bucket", "dims_key"),)

    model_requested: Mapped[str | None] = mapped_column(String(200))
    model_reported: Mapped[str | None] = mapped_column(String(200))
    rate_card: Mapped[str | None] = mapped_column(String(200))
    pricing_class: Mapped[str] = mapped_column(String(40))


class CallRollupHourlyTags(_WiderRollup, Base):
    """The calls' sums per UTC hour, recorded hour, tags and rate card: budgets of a tag (rolling days and hours) and
    reports by tag."""

    __tablename__ = "call_rollups_hourly_tags"
    __table_args__ = (UniqueConstraint("bucket_start", "recorded_bucket", "dims_key"),)

    tags: Mapped[str | None] = mapped_column(Text)  # JSON object, keys sorted (as calls.tags)
    rate_card: Mapped[str | None] = mapped_column(String(200))


class CallRollupHourlyProject(_WiderRollup, Base):
    """The calls' sums per UTC hour, recorded hour, key, project and rate card (the daily table's dimensions): the
    hours at a local period's ends of reports and budgets by project, key or account."""

    __tablename__ = "call_rollups_hourly_projects"
    __table_args__ = (UniqueConstraint("bucket_start", "recorded_bucket", "dims_key"),)

    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    key_last4: Mapped[str | None] = mapped_column(String(4))
    project: Mapped[str | None] = mapped_column(String(200))
    rate_card: Mapped[str | None] = mapped_column(String(200))


class CallRollupDaily(_WiderRollup, Base):
    """The calls' sums per UTC day, recorded day, key, project and rate card: reports and budgets by project, key,
    account, time."""

    __tablename__ = "call_rollups_daily"
    __table_args__ = (UniqueConstraint("bucket_start", "recorded_bucket", "dims_key"),)

    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    key_last4: Mapped[str | None] = mapped_column(String(4))
    project: Mapped[str | None] = mapped_column(String(200))
    rate_card: Mapped[str | None] = mapped_column(String(200))


class CallRollupDailyUser(_WiderRollup, Base):
    """The calls' sums per UTC day, recorded day, key, project, user and rate card: reports and budgets by user."""

    __tablename__ = "call_rollups_daily_users"
    __table_args__ = (UniqueConstraint("bucket_start", "recorded_bucket", "dims_key"),)

    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    key_last4: Mapped[str | None] = mapped_column(String(4))
    project: Mapped[str | None] = mapped_column(String(200))
    end_user: Mapped[str | None] = mapped_column(String(200))
    rate_card: Mapped[str | None] = mapped_column(String(200))


class CallRollupMonthlyUser(_WiderRollup, Base):
    """The calls' sums per UTC month, recorded month, key, project, user and rate card: a month's reports and budgets
    by user (the days of a local month's ends added or taken away from `call_rollups_daily_users`)."""

    __tablename__ = "call_rollups_monthly_users"
    __table_args__ = (UniqueConstraint("bucket_start", "recorded_bucket", "dims_key"),)

    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    key_last4: Mapped[str | None] = mapped_column(String(4))
    project: Mapped[str | None] = mapped_column(String(200))
    end_user: Mapped[str | None] = mapped_column(String(200))
    rate_card: Mapped[str | None] = mapped_column(String(200))


class RetentionRun(Base):
    """One run of retention (`credit-ledger retention run`, the service's daily job): raw calls of closed periods
    started before `deleted_before` may be gone from then on; their sums stay in the rollups, their digests in the
    closes. `calls_deleted` grows with each batch, in the batch's transaction."""

    __tablename__ = "retention_runs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_before: Mapped[datetime] = mapped_column(UTCDateTime)
    calls_days: Mapped[int] = mapped_column(Integer)
    calls_deleted: Mapped[int] = mapped_column(BigInteger)


class RetiredCall(Base):
    """A call whose raw row retention deleted: its id and record digest, kept so that a replay of the same record
    (a journal segment, a proxy's spool, the same call id again) stays a no-op, and one with other content a
    conflict, instead of counting the call again. Written in the batch's transaction that deletes the row."""

    __tablename__ = "retired_calls"

    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    record_digest: Mapped[str] = mapped_column(String(64))
    retention_run_id: Mapped[int] = mapped_column(BigInteger)  # the run that deleted the row
