"""The credit ledger on SQLite and PostgreSQL: charges and refunds happen once, balances never go negative."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from render_assets.persistence import ledger
from render_assets.persistence.database import Database
from render_assets.persistence.models import CreditTransaction, Organization

T = TypeVar("T")
ORG = "org-ledger"


def _balance(db: Database, organization_id: str = ORG) -> int | None:
    with db.session() as session:
        return session.execute(
            select(Organization.credit_balance).where(Organization.id == organization_id)
        ).scalar_one_or_none()


def _rows(db: Database, organization_id: str = ORG) -> list[tuple[str, str | None, int, int]]:
    with db.session() as session:
        rows = session.execute(
            select(CreditTransaction).where(CreditTransaction.organization_id == organization_id)
        ).scalars()
        return sorted((row.kind, row.render_id, row.amount, row.balance_after) for row in rows)


def _charge(db: Database, render_id: str, cost: int = 3, initial: int = 10, org: str = ORG) -> ledger.LedgerEntry:
    with db.session() as session:
        return ledger.charge(session, render_id=render_id, organization_id=org, cost=cost, initial_credits=initial)


def _refund(db: Database, render_id: str) -> ledger.LedgerEntry | None:
    with db.session() as session:
        return ledger.refund(session, render_id=render_id, reason="provider failed")


def test_unknown_organization_is_created_with_its_initial_credits(database: Database) -> None:
    assert _balance(database) is None
    entry = _charge(database, "r1", cost=3, initial=10)
    assert entry == ledger.LedgerEntry(kind="charge", amount=-3, balance_after=7, created=True)
    assert _balance(database) == 7
    assert _rows(database) == [("charge", "r1", -3, 7)]


def test_initial_credits_never_reset_a_known_organization(database: Database) -> None:
    _charge(database, "r1", cost=3, initial=10)
    entry = _charge(database, "r2", cost=2, initial=1000)
    assert entry.balance_after == 5
    assert _balance(database) == 5


def test_charge_takes_credits_once(database: Database) -> None:
    first = _charge(database, "r1", cost=4)
    second = _charge(database, "r1", cost=4)
    assert first.created and not second.created
    assert (second.kind, second.amount, second.balance_after) == ("charge", -4, 6)
    assert _balance(database) == 6
    assert _rows(database) == [("charge", "r1", -4, 6)]
    with database.session() as session:
        assert ledger.is_charged(session, "r1")
        assert not ledger.is_charged(session, "r2")


def test_insufficient_credits_changes_nothing(database: Database) -> None:
    _charge(database, "r1", cost=8, initial=10)
    with pytest.raises(ledger.InsufficientCredits, match=r"^insufficient credits: need 3, have 2$") as caught:
        _charge(database, "r2", cost=3)
    assert (caught.value.organization_id, caught.value.need, caught.value.have) == (ORG, 3, 2)
    assert _balance(database) == 2
    assert _rows(database) == [("charge", "r1", -8, 2)]
    with database.session() as session:
        assert not ledger.is_charged(session, "r2")


def test_insufficient_credits_for_an_unknown_organization_creates_nothing(database: Database) -> None:
    with pytest.raises(ledger.InsufficientCredits, match="need 5, have 4"):
        _charge(database, "r1", cost=5, initial=4)
    assert _balance(database) is None
    assert _rows(database) == []


def test_charge_of_the_whole_balance_leaves_zero(database: Database) -> None:
    assert _charge(database, "r1", cost=10, initial=10).balance_after == 0
    assert _balance(database) == 0


def test_refund_without_charge_moves_nothing(database: Database) -> None:
    _charge(database, "other", cost=3)
    assert _refund(database, "never-charged") is None
    assert _balance(database) == 7
    assert _rows(database) == [("charge", "other", -3, 7)]


def test_refund_after_charge_restores_the_balance_once(database: Database) -> None:
    _charge(database, "r1", cost=4)
    _charge(database, "r2", cost=1)
    first = _refund(database, "r1")
    second = _refund(database, "r1")
    assert first == ledger.LedgerEntry(kind="refund", amount=4, balance_after=9, created=True)
    assert second is not None and not second.created
    assert (second.amount, second.balance_after) == (4, 9)
    assert _balance(database) == 9
    assert _rows(database) == [("charge", "r1", -4, 6), ("charge", "r2", -1, 5), ("refund", "r1", 4, 9)]


def test_a_refunded_render_is_not_charged_again(database: Database) -> None:
    _charge(database, "r1", cost=4)
    _refund(database, "r1")
    assert not _charge(database, "r1", cost=4).created
    assert _balance(database) == 10


def test_refund_reason_is_kept_and_capped(database: Database) -> None:
    _charge(database, "r1")
    with database.session() as session:
        ledger.refund(session, render_id="r1", reason="x" * 2000)
    with database.session() as session:
        [refund] = [row for row in ledger.history(session, ORG) if row.kind == "refund"]
        assert refund.description == "x" * 500


def test_grant_adds_credits(database: Database) -> None:
    with database.session() as session:
        created = ledger.grant(session, organization_id=ORG, amount=5, initial_credits=10)
    with database.session() as session:
        topped = ledger.grant(session, organization_id=ORG, amount=2, initial_credits=10)
    assert created == ledger.LedgerEntry(kind="grant", amount=5, balance_after=15, created=True)
    assert topped.balance_after == 17
    assert _balance(database) == 17
    assert _rows(database) == [("grant", None, 2, 17), ("grant", None, 5, 15)]


@pytest.mark.parametrize("amount", [0, -1, -50])
def test_grant_rejects_non_positive_amounts(database: Database, amount: int) -> None:
    with pytest.raises(ValueError, match=f"must be positive, got {amount}"), database.session() as session:
        ledger.grant(session, organization_id=ORG, amount=amount, initial_credits=10)
    assert _balance(database) is None
    assert _rows(database) == []


def test_history_is_newest_first_and_limited(database: Database) -> None:
    for index in range(4):
        _charge(database, f"r{index}", cost=1)
    with database.session() as session:
        assert [row.render_id for row in ledger.history(session, ORG, limit=3)] == ["r3", "r2", "r1"]
        assert ledger.history(session, "org-nobody") == []


def test_balance_cannot_go_negative(database: Database) -> None:
    _charge(database, "r1", cost=1)
    with pytest.raises(IntegrityError), database.session() as session:
        session.execute(update(Organization).where(Organization.id == ORG).values(credit_balance=-1))
    assert _balance(database) == 9


# Concurrency, on PostgreSQL (production's database) with one session per thread.


@pytest.fixture
def postgres(postgres_url: str) -> Iterator[Database]:
    db = Database(postgres_url)
    yield db
    db.dispose()


def _all_at_once(count: int, work: Callable[[int], T]) -> list[T | Exception]:
    """Run `work(i)` in `count` threads released together; exceptions are returned, not raised."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T | Exception:
        barrier.wait()
        try:
            return work(index)
        except Exception as error:
            return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def _count(db: Database, organization_id: str, kind: str) -> int:
    with db.session() as session:
        return session.execute(
            select(func.count())
            .select_from(CreditTransaction)
            .where(CreditTransaction.organization_id == organization_id, CreditTransaction.kind == kind)
        ).scalar_one()


def test_concurrent_charges_of_one_render_take_credits_once(postgres: Database) -> None:
    org = f"org-{uuid.uuid4().hex[:12]}"
    results = _all_at_once(20, lambda _: _charge(postgres, "render-same-" + org, cost=3, initial=10, org=org))
    assert all(isinstance(result, ledger.LedgerEntry) for result in results), results
    assert sum(1 for result in results if isinstance(result, ledger.LedgerEntry) and result.created) == 1
    assert {result.balance_after for result in results if isinstance(result, ledger.LedgerEntry)} == {7}
    assert _count(postgres, org, "charge") == 1
    assert _balance(postgres, org) == 7


def test_concurrent_refunds_of_one_render_give_back_once(postgres: Database) -> None:
    org = f"org-{uuid.uuid4().hex[:12]}"
    render_id = "render-refund-" + org
    _charge(postgres, render_id, cost=4, initial=10, org=org)
    results = _all_at_once(50, lambda _: _refund(postgres, render_id))
    entries = [result for result in results if isinstance(result, ledger.LedgerEntry)]
    assert len(entries) == 50, [result for result in results if not isinstance(result, ledger.LedgerEntry)]
    assert sum(entry.created for entry in entries) == 1
    assert {(entry.amount, entry.balance_after) for entry in entries} == {(4, 10)}
    assert _count(postgres, org, "refund") == 1
    assert _balance(postgres, org) == 10


@pytest.mark.parametrize(("cost", "initial", "remainder"), [(1, 7, 0), (3, 22, 1)])
def test_concurrent_charges_never_overdraw(postgres: Database, cost: int, initial: int, remainder: int) -> None:
    org = f"org-{uuid.uuid4().hex[:12]}"
    results = _all_at_once(20, lambda index: _charge(postgres, f"{org}-r{index}", cost=cost, initial=initial, org=org))
    charged = [result for result in results if isinstance(result, ledger.LedgerEntry)]
    refused = [result for result in results if isinstance(result, ledger.InsufficientCredits)]
    assert len(charged) == 7 and len(refused) == 13, results
    assert all(entry.created for entry in charged)
    assert sorted(entry.balance_after for entry in charged) == [remainder + cost * k for k in range(7)]
    assert all(error.have == remainder for error in refused)
    assert _count(postgres, org, "charge") == 7
    assert _balance(postgres, org) == remainder
