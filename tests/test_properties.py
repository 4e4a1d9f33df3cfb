"""Property: random order lifecycles, duplicated and shuffled, end as a plain model says."""

from __future__ import annotations

import uuid
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from loyalty.bootstrap import Loyalty
from loyalty.domain.tiers import tier_for_points
from loyalty.services.events import handle_order_event
from loyalty.storage.tables import Customer, LedgerEntry
from tests.support.events import order_event

STEPS = [("pending", "unpaid"), ("confirmed", "unpaid"), ("confirmed", "paid"),
         ("shipping", "paid"), ("delivered", "unpaid"), ("delivered", "paid"),
         ("delivered", "refunded"), ("cancelled", "refunded"), ("cancelled", "unpaid"),
         ("returned", "refunded")]

lifecycle = st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 50)), min_size=1,
                     max_size=6)
order = st.tuples(lifecycle, st.integers(0, 3_000_000), st.integers(0, 50_000))


def expected_net(events: list[tuple[tuple[str, str], int]]) -> bool:
    """The plain model: an order keeps points iff one event shows it delivered and paid and
    none shows it cancelled or returned."""
    steps = {step for step, _ in events}
    final = any(status in ("cancelled", "returned") for status, _ in steps)
    return ("delivered", "paid") in steps and not final


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(orders=st.lists(order, min_size=1, max_size=4), data=st.data())
def test_any_arrival_order_ends_as_the_model_says(loyalty: Loyalty, orders: list,
                                                  data: st.DataObject) -> None:
    run = uuid.uuid4().hex[:8]
    customer = f"P-{run}"
    events, keeps = [], {}
    for n, (steps, total, shipping) in enumerate(orders):
        order_id = f"{run}-{n}"
        keeps[order_id] = (expected_net(steps), total - shipping)
        events += [order_event(order_id, customer, status, paid, total=total,
                               shipping=shipping, at=minute)
                   for (status, paid), minute in steps]
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    arrival = data.draw(st.permutations(events + duplicates))
    for event in arrival:
        handle_order_event(loyalty, event, source="test")

    with loyalty.sessions() as session:
        rows = list(session.scalars(select(LedgerEntry).where(
            LedgerEntry.customer_id == customer).order_by(LedgerEntry.id)))
        points = session.get_one(Customer, customer).points
        tier = session.get_one(Customer, customer).tier
    net = {order_id: sum(r.points for r in rows if r.order_id == order_id)
           for order_id in keeps}
    for order_id, (keeps_points, spend) in keeps.items():
        credits = [r for r in rows if r.order_id == order_id and r.kind == "order_credit"]
        assert len(credits) <= 1
        if keeps_points:
            [credit] = credits
            # floor(spend / 1000 × the multiplier of the tier held before the credit)
            held = tier_for_points(loyalty.program, credit.balance_after - credit.points)
            assert (credit.tier, Decimal(credit.multiplier)) == (held.code, held.multiplier)
            assert credit.points == max(0, int(Decimal(spend) / 1000 * held.multiplier))
            assert net[order_id] == credit.points
        else:
            assert net[order_id] == 0
    assert points == sum(net.values()) == sum(r.points for r in rows)
    assert tier == tier_for_points(loyalty.program, points).code


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=lifecycle, amounts=st.tuples(st.integers(0, 5_000_000), st.integers(0, 50_000)),
       data=st.data())
def test_what_an_order_adds_does_not_depend_on_arrival_order(
        loyalty: Loyalty, steps: list, amounts: tuple[int, int], data: st.DataObject) -> None:
    run = uuid.uuid4().hex[:8]
    balances = []
    for side in ("a", "b"):
        events = [order_event(f"{run}-{side}", f"Q-{run}-{side}", status, paid,
                              total=amounts[0], shipping=amounts[1], at=minute)
                  for (status, paid), minute in steps]
        for event in data.draw(st.permutations(events + events[:1])):
            handle_order_event(loyalty, event, source="test")
        with loyalty.sessions() as session:
            balances.append(session.get_one(Customer, f"Q-{run}-{side}").points)
    expected = max(0, (amounts[0] - amounts[1]) // 1000) if expected_net(steps) else 0
    assert balances == [expected, expected]
