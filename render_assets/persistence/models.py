"""ORM models: renders, organizations with their credit balance, and the credit ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JsonColumn = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class RenderStatus:
    CLAIMED = "claimed"  # a BullMQ job is claimed; its run may not exist yet
    PROCESSING = "processing"
    RETRYING = "retrying"  # an attempt failed and BullMQ will try again
    COMPLETED = "completed"
    FAILED = "failed"
    IN_REVIEW = "in_review"  # QA held the image for a person to approve or reject
    WAITING = "waiting"  # no image provider was available: back in BullMQ, delayed, no attempt spent
    CANCELLED = "cancelled"  # its customer cancelled it (the web app, or the job removed from BullMQ)

    IN_FLIGHT = (CLAIMED, PROCESSING, RETRYING, WAITING)
    ENDED = (COMPLETED, FAILED, CANCELLED)


class Organization(Base):
    __tablename__ = "organizations"
    __table_args__ = (CheckConstraint("credit_balance >= 0", name="ck_organizations_balance_non_negative"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    credit_balance: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Render(Base):
    __tablename__ = "renders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonColumn)
    credit_cost: Mapped[int] = mapped_column(Integer)
    # The current BullMQ claim: which job, which attempt, and the lock token that proves it.
    bull_job_id: Mapped[str | None] = mapped_column(String(64))
    claim_attempt: Mapped[int | None] = mapped_column(Integer)
    max_attempts: Mapped[int | None] = mapped_column(Integer)
    claim_token: Mapped[str | None] = mapped_column(String(128))
    run_key: Mapped[str | None] = mapped_column(String(256))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The deployment (Dagster instance) whose sensor made the current claim: only it re-requests
    # the claim's run or settles it as lost, since only its Dagster storage knows that run.
    # None: a claim made before deployments were recorded, which any deployment may take up.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    # "bullmq" when a customer's job delivered it, "operator" for a backfill or UI re-execution.
    delivered_via: Mapped[str | None] = mapped_column(String(16))
    prompt_hash: Mapped[str | None] = mapped_column(String(64))
    image_url: Mapped[str | None] = mapped_column(Text)
    thumbnail_url: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonColumn)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)  # its first claim
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # While waiting for an image provider (status waiting): when its job is due in BullMQ again.
    waiting_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When a provider first returned its image (the provider has been paid from then on).
    generated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A cancelled render: whether its charge stands (it was cancelled after its image was made).
    cancel_charged: Mapped[bool | None] = mapped_column(Boolean)
    # The delivered version the row's result and URLs are (render_versions.version); None until delivered.
    current_version: Mapped[int | None] = mapped_column(Integer)


class RenderCancellation(Base):
    """A customer's request to cancel a render, kept even when it came before the job was claimed
    (the claim then drops the job), and whether its objects were cleaned up."""

    __tablename__ = "render_cancellations"

    render_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))  # api | cli | bullmq (the job was removed)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    cleaned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RenderVersion(Base):
    """One delivered version of a render, kept for good (the web app may link to any of them):
    the first delivery is version 1; a re-render that delivered different objects is the next."""

    __tablename__ = "render_versions"
    __table_args__ = (UniqueConstraint("render_id", "version", name="uq_render_versions_render_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    render_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    result: Mapped[dict[str, Any]] = mapped_column(JsonColumn)  # the web app's result shape
    image_url: Mapped[str] = mapped_column(Text)
    thumbnail_url: Mapped[str] = mapped_column(Text)
    # The master's object name: the same name is the same bytes (signed URLs differ every time).
    image_key: Mapped[str | None] = mapped_column(Text)
    prompt_hash: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    # The code version of each asset (and the prompt rules' data version) that made it.
    code_versions: Mapped[dict[str, Any] | None] = mapped_column(JsonColumn)
    run_id: Mapped[str | None] = mapped_column(String(64))
    delivered_via: Mapped[str] = mapped_column(String(16))  # bullmq | operator
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookDelivery(Base):
    """One event for the web app's webhook (an outbox row): written with the change it reports,
    POSTed until the receiver accepts it or the attempts run out."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)  # also sent, for the receiver
    event: Mapped[str] = mapped_column(String(64))
    render_id: Mapped[str] = mapped_column(String(64), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JsonColumn)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CreditTransaction(Base):
    """One signed movement of credits; the unique key makes charges and refunds happen once."""

    __tablename__ = "credit_transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    render_id: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # grant | charge | refund
    amount: Mapped[int] = mapped_column(Integer)
    balance_after: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UsageRecord(Base):
    """One delivered, charged render, for billing; at most one per render."""

    __tablename__ = "usage_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    render_id: Mapped[str] = mapped_column(String(64), unique=True)
    record_type: Mapped[str] = mapped_column(String(32), default="render")
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    credits: Mapped[int] = mapped_column(Integer)
    details: Mapped[dict[str, Any] | None] = mapped_column(JsonColumn)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RenderFailure(Base):
    """One failed attempt of a render, with the class of its failure (written by the failure hook)."""

    __tablename__ = "render_failures"
    # A step's failure hook runs once; the key keeps a repeated call from counting twice.
    __table_args__ = (UniqueConstraint("run_id", "stage", name="uq_render_failures_run_stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    render_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int | None] = mapped_column(Integer)  # 1-based BullMQ attempt; None for operator runs
    failure_class: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str | None] = mapped_column(String(64))
    final: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)  # scrubbed of secrets
    qa_score: Mapped[float | None] = mapped_column(Float)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class StageTiming(Base):
    """How long one try of one step took, and what it reported (provider, QA score)."""

    __tablename__ = "render_stage_timings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    render_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # success | failure
    duration_s: Mapped[float] = mapped_column(Float)
    provider: Mapped[str | None] = mapped_column(String(64))
    qa_score: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class FailureAlert(Base):
    """One episode of a failure pattern: fired when it started, cleared when it ended."""

    __tablename__ = "failure_alerts"
    # At most one firing episode per pattern, so two evaluations cannot both fire it.
    __table_args__ = (
        Index(
            "uq_failure_alerts_one_firing",
            "pattern",
            unique=True,
            postgresql_where=text("state = 'firing'"),
            sqlite_where=text("state = 'firing'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pattern: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))  # firing | cleared
    details: Mapped[dict[str, Any]] = mapped_column(JsonColumn)
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PerceptualHash(Base):
    """The pHash of a render's image (passed QA or held for review), for duplicate lookups.

    `hash` is the 64-bit pHash as a signed BIGINT; `band_0`..`band_3` are its four 16-bit bands
    (see domain/phash.py), each indexed with the organization: two hashes within Hamming
    distance 3 share at least one band, so a lookup reads only rows sharing a band."""

    __tablename__ = "perceptual_hashes"
    __table_args__ = tuple(
        Index(f"ix_perceptual_hashes_org_band_{band}", "organization_id", f"band_{band}") for band in range(4)
    )

    render_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    hash: Mapped[int] = mapped_column(BigInteger)
    band_0: Mapped[int] = mapped_column(Integer)
    band_1: Mapped[int] = mapped_column(Integer)
    band_2: Mapped[int] = mapped_column(Integer)
    band_3: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class QualityReview(Base):
    """A render held by QA for a person to look at; one per render (a re-run replaces it)."""

    __tablename__ = "quality_reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    render_id: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending | approved | rejected
    score: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list[str]] = mapped_column(JsonColumn)
    measures: Mapped[dict[str, Any]] = mapped_column(JsonColumn)
    image_key: Mapped[str] = mapped_column(Text)  # the held image in blob storage
    image_url: Mapped[str] = mapped_column(Text)
    prompt_hash: Mapped[str] = mapped_column(String(64))
    # True when a customer's BullMQ attempt was held (its render waits in status in_review).
    customer_attempt: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
