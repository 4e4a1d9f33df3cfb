"""The cross-sell holdout at scan time (SPEC §2 "cross-sell holdout"): every member a scan
selects is recorded as nudged or held out for the day (``domain.holdout`` decides which),
and a member held out is kept out of the scan for a tag period, as a nudged one is, so that
both groups are followed for the same time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import ColumnElement, exists
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from loyalty.domain.campaign_results import windows_end
from loyalty.domain.crosssell import tag_period_start
from loyalty.domain.holdout import split
from loyalty.domain.tiers import next_tier, tier_for_points
from loyalty.program import Program
from loyalty.storage.tables import CrosssellAssignment, Customer


def held_out_lately(program: Program, as_of: datetime) -> ColumnElement[bool]:
    """Members held out within a tag period of ``as_of``."""
    return exists().where(CrosssellAssignment.customer_id == Customer.id,
                          CrosssellAssignment.held_out.is_(True),
                          CrosssellAssignment.assigned_at > tag_period_start(program, as_of))


def holdout_of(program: Program, candidates: Sequence[Customer], day: date) -> set[str]:
    """Which of a scan's candidates the holdout keeps from the nudge on ``day``."""
    return set(split((customer.id for customer in candidates), day,
                     program.crosssell.holdout_percent).held_out)


def assign_groups(session: Session, program: Program, candidates: Sequence[Customer],
                  day: date, as_of: datetime) -> tuple[list[Customer], int]:
    """Record the group of each of a scan's ``candidates`` for ``day``; returns those to
    nudge (in the order given) and how many were held out.

    A member already assigned on ``day`` (a second scan that day, or one running at the
    same time) is neither recorded again nor counted: the unique (day, member) key decides.
    """
    if not candidates:
        return [], 0
    held_out = holdout_of(program, candidates, day)
    window_end, period_end = windows_end(program, as_of)
    rows = []
    for customer in candidates:
        upper = next_tier(program, tier_for_points(program, customer.points))
        assert upper is not None, "the top tier is never selected"
        rows.append({"period": day, "customer_id": customer.id,
                     "held_out": customer.id in held_out, "points": customer.points,
                     "next_threshold": upper.threshold, "assigned_at": as_of,
                     "window_ends_at": window_end, "period_ends_at": period_end})
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = CrosssellAssignment.__table__
    statement = dialect.insert(table).on_conflict_do_nothing(
        index_elements=["period", "customer_id"]).returning(table.c.customer_id)
    assigned = set(session.scalars(statement, rows))
    return ([customer for customer in candidates
             if customer.id in assigned and customer.id not in held_out],
            len(assigned & held_out))
