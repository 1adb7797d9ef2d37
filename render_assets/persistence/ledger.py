"""The credit ledger: charges and refunds that happen at most once per render.

Idempotency keys (`charge:<renderId>`, `refund:<renderId>`) are unique in the database, so a
retried or concurrent call finds the first one's row instead of moving credits again. Balance
changes lock the organization's row for the length of the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from render_assets.persistence.models import CreditTransaction, Organization, Render, RenderStatus, UsageRecord


class InsufficientCredits(Exception):
    def __init__(self, organization_id: str, need: int, have: int) -> None:
        super().__init__(f"insufficient credits: need {need}, have {have}")
        self.organization_id = organization_id
        self.need = need
        self.have = have


@dataclass(frozen=True)
class LedgerEntry:
    kind: str
    amount: int
    balance_after: int
    created: bool  # False when an earlier call had already made this entry


def charge_key(render_id: str) -> str:
    return f"charge:{render_id}"


def refund_key(render_id: str) -> str:
    return f"refund:{render_id}"


def ensure_organization(session: Session, organization_id: str, initial_credits: int) -> None:
    """Create an unknown organization with its starting credits; never touch an existing one."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Organization)
        .values(id=organization_id, credit_balance=initial_credits)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    session.execute(statement)


def _locked_organization(session: Session, organization_id: str) -> Organization:
    return session.execute(
        select(Organization).where(Organization.id == organization_id).with_for_update()
    ).scalar_one()


def _existing(session: Session, key: str) -> CreditTransaction | None:
    return session.execute(
        select(CreditTransaction).where(CreditTransaction.idempotency_key == key)
    ).scalar_one_or_none()


def _as_entry(row: CreditTransaction, created: bool) -> LedgerEntry:
    return LedgerEntry(kind=row.kind, amount=row.amount, balance_after=row.balance_after, created=created)


def _move(
    session: Session,
    organization: Organization,
    *,
    kind: str,
    amount: int,
    render_id: str | None,
    key: str | None,
    description: str,
) -> LedgerEntry:
    organization.credit_balance += amount
    row = CreditTransaction(
        organization_id=organization.id,
        render_id=render_id,
        kind=kind,
        amount=amount,
        balance_after=organization.credit_balance,
        idempotency_key=key,
        description=description,
    )
    session.add(row)
    session.flush()
    return _as_entry(row, created=True)


def charge(session: Session, *, render_id: str, organization_id: str, cost: int, initial_credits: int) -> LedgerEntry:
    """Take `cost` credits for a render, once. Raises InsufficientCredits and changes nothing."""
    ensure_organization(session, organization_id, initial_credits)
    organization = _locked_organization(session, organization_id)
    if existing := _existing(session, charge_key(render_id)):
        return _as_entry(existing, created=False)
    if organization.credit_balance < cost:
        raise InsufficientCredits(organization_id, need=cost, have=organization.credit_balance)
    return _move(
        session,
        organization,
        kind="charge",
        amount=-cost,
        render_id=render_id,
        key=charge_key(render_id),
        description="render",
    )


def refund(session: Session, *, render_id: str, reason: str) -> LedgerEntry | None:
    """Give back what a render was charged, once; None when it was never charged."""
    charged = _existing(session, charge_key(render_id))
    if charged is None:
        return None
    organization = _locked_organization(session, charged.organization_id)
    if existing := _existing(session, refund_key(render_id)):
        return _as_entry(existing, created=False)
    return _move(
        session,
        organization,
        kind="refund",
        amount=-charged.amount,
        render_id=render_id,
        key=refund_key(render_id),
        description=reason[:500],
    )


def grant(session: Session, *, organization_id: str, amount: int, initial_credits: int) -> LedgerEntry:
    if amount <= 0:
        raise ValueError(f"a grant must be positive, got {amount}")
    ensure_organization(session, organization_id, initial_credits)
    organization = _locked_organization(session, organization_id)
    return _move(
        session,
        organization,
        kind="grant",
        amount=amount,
        render_id=None,
        key=None,
        description="manual grant",
    )


def is_charged(session: Session, render_id: str) -> bool:
    return _existing(session, charge_key(render_id)) is not None


def history(session: Session, organization_id: str, limit: int = 50) -> list[CreditTransaction]:
    return list(
        session.execute(
            select(CreditTransaction)
            .where(CreditTransaction.organization_id == organization_id)
            .order_by(CreditTransaction.id.desc())
            .limit(limit)
        ).scalars()
    )


def render_moves(session: Session) -> list[CreditTransaction]:
    """Every move tied to a render (charges and refunds; grants name none), for the credit audit."""
    return list(session.execute(select(CreditTransaction).where(CreditTransaction.render_id.is_not(None))).scalars())


def moves_between(session: Session, since: datetime, until: datetime) -> dict[str, tuple[int, int]]:
    """Charges and refunds made in the window, by kind: (how many, their amounts summed; a charge's
    amount is negative)."""
    rows = session.execute(
        select(CreditTransaction.kind, func.count(), func.coalesce(func.sum(CreditTransaction.amount), 0))
        .where(CreditTransaction.created_at >= since, CreditTransaction.created_at <= until)
        .where(CreditTransaction.kind.in_(["charge", "refund"]))
        .group_by(CreditTransaction.kind)
    ).all()
    return {kind: (count, total) for kind, count, total in rows}


def record_usage(session: Session, *, render_id: str, details: dict[str, object] | None = None) -> bool:
    """Record a delivered render for billing, once, when it was charged. Returns whether it did now."""
    charged = _existing(session, charge_key(render_id))
    if charged is None:
        return False
    if session.execute(select(UsageRecord.id).where(UsageRecord.render_id == render_id)).first():
        return False
    session.add(
        UsageRecord(
            organization_id=charged.organization_id,
            render_id=render_id,
            record_type="render",
            quantity=1,
            credits=-charged.amount,
            details=details,
        )
    )
    session.flush()
    return True


def charged_failures_without_refund(session: Session) -> list[str]:
    """Failed renders that were charged and not refunded: what a crash between the two leaves."""
    refunds = select(CreditTransaction.render_id).where(CreditTransaction.kind == "refund")
    rows = session.execute(
        select(CreditTransaction.render_id)
        .join(Render, Render.id == CreditTransaction.render_id)
        .where(
            CreditTransaction.kind == "charge",
            Render.status == RenderStatus.FAILED,
            CreditTransaction.render_id.not_in(refunds),
        )
    )
    return [render_id for (render_id,) in rows if render_id]
