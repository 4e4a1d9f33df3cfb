"""Property: random order lifecycles, with partial and full refunds, duplicated and shuffled,
end as a plain model says (``tests.support.model``)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from loyalty.bootstrap import Loyalty
from loyalty.domain.tiers import tier_for_points
from loyalty.services.events import handle_order_event
from loyalty.services.members import show_member
from loyalty.storage.tables import Customer, LedgerEntry
from tests.support.events import order_event
from tests.support.model import Step, expected

STEPS = [("pending", "unpaid"), ("confirmed", "unpaid"), ("confirmed", "paid"),
         ("shipping", "paid"), ("delivered", "unpaid"), ("delivered", "paid"),
         ("delivered", "paid"), ("delivered", "refunded"), ("cancelled", "refunded"),
         ("cancelled", "unpaid"), ("returned", "refunded")]

# A refund as a share of the total in thousandths (0 to all of it), or none.
refund_share = st.one_of(st.none(), st.none(), st.integers(0, 1000))
lifecycle = st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 50), refund_share),
                     min_size=1, max_size=6)
order = st.tuples(lifecycle, st.integers(0, 3_000_000), st.integers(0, 50_000))


def events_of(order_id: str, customer: str, steps: list, total: int,
              shipping: int) -> tuple[list[dict], list[Step]]:
    """The order's events, and its steps as the model reads them."""
    events, model_steps = [], []
    for (status, paid), minute, share in steps:
        refunded = None if share is None else total * share // 1000
        event = order_event(order_id, customer, status, paid, total=total, shipping=shipping,
                            at=minute)
        if refunded is not None:
            event["refunded_amount"] = refunded
        events.append(event)
        model_steps.append((status, paid, refunded))
    return events, model_steps


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(orders=st.lists(order, min_size=1, max_size=4), data=st.data())
def test_any_arrival_order_ends_as_the_model_says(loyalty: Loyalty, orders: list,
                                                  data: st.DataObject) -> None:
    run = uuid.uuid4().hex[:8]
    customer = f"P-{run}"
    events, models = [], {}
    for n, (steps, total, shipping) in enumerate(orders):
        order_id = f"{run}-{n}"
        order_events, model_steps = events_of(order_id, customer, steps, total, shipping)
        events += order_events
        models[order_id] = expected(model_steps, total, shipping)
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
           for order_id in models}
    for order_id, model in models.items():
        credits = [r for r in rows if r.order_id == order_id and r.kind == "order_credit"]
        assert len(credits) <= 1
        refunds = [r.refunded_to for r in rows
                   if r.order_id == order_id and r.kind == "order_refund"]
        assert refunds == sorted(set(refunds)), "each refund step once, growing"
        if credits:
            [credit] = credits
            # floor(spend / 1000 × the multiplier of the tier held before the credit)
            held = tier_for_points(loyalty.program, credit.balance_after - credit.points)
            assert (credit.tier, Decimal(credit.multiplier)) == (held.code, held.multiplier)
            assert credit.points == int(Decimal(model.earning) / 1000 * held.multiplier)
            assert net[order_id] == model.points(credit.points)
        else:
            assert not model.keeps and net[order_id] == 0
    assert points == sum(net.values()) == sum(r.points for r in rows)
    assert tier == tier_for_points(loyalty.program, points).code
    assert show_member(loyalty, customer).total_spent == sum(m.spend for m in models.values())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=lifecycle, amounts=st.tuples(st.integers(0, 5_000_000), st.integers(0, 50_000)),
       data=st.data())
def test_what_an_order_adds_does_not_depend_on_arrival_order(
        loyalty: Loyalty, steps: list, amounts: tuple[int, int], data: st.DataObject) -> None:
    run = uuid.uuid4().hex[:8]
    outcomes = []
    for side in ("a", "b"):
        events, model_steps = events_of(f"{run}-{side}", f"Q-{run}-{side}", steps, *amounts)
        for event in data.draw(st.permutations(events + events[:1])):
            handle_order_event(loyalty, event, source="test")
        with loyalty.sessions() as session:
            balance = session.get_one(Customer, f"Q-{run}-{side}").points
        outcomes.append((balance, show_member(loyalty, f"Q-{run}-{side}").total_spent))
    model = expected(model_steps, *amounts)
    # A first order is credited at ×1.0.
    assert outcomes == [(model.points(model.earning // 1000), model.spend)] * 2
