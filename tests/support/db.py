"""Reading the database state in tests."""

from __future__ import annotations

from sqlalchemy import func, select

from devtools.processes import wait_for
from loyalty.bootstrap import Loyalty
from loyalty.storage.tables import Customer, LedgerEntry, ProcessedEvent, RejectedEvent


def processed_count(loyalty: Loyalty) -> int:
    with loyalty.sessions() as session:
        return session.scalar(select(func.count()).select_from(ProcessedEvent)) or 0


def refused_count(loyalty: Loyalty) -> int:
    with loyalty.sessions() as session:
        return session.scalar(select(func.count()).select_from(RejectedEvent)) or 0


def wait_until_processed(loyalty: Loyalty, count: int, timeout: float = 120) -> None:
    wait_for(lambda: processed_count(loyalty) >= count, timeout,
             f"workers did not process {count} events in {timeout}s "
             f"(got {processed_count(loyalty)})", interval=0.2)


def balances(loyalty: Loyalty) -> dict[str, int]:
    with loyalty.sessions() as session:
        return {row.id: row.points for row in session.execute(select(Customer.id, Customer.points))}


def assert_ledger_consistent(loyalty: Loyalty) -> None:
    """Every balance equals the sum of its rows, and the last row's balance_after."""
    with loyalty.sessions() as session:
        sums = {row[0]: row[1] for row in session.execute(
            select(LedgerEntry.customer_id, func.sum(LedgerEntry.points))
            .group_by(LedgerEntry.customer_id))}
        for customer in session.scalars(select(Customer)):
            assert customer.points == sums.get(customer.id, 0), customer.id
            last = session.scalars(select(LedgerEntry).where(
                LedgerEntry.customer_id == customer.id).order_by(LedgerEntry.id.desc())
                .limit(1)).first()
            assert customer.points == (last.balance_after if last else 0), customer.id
