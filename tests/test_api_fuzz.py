"""The webhook and the member routes under arbitrary input: never a 500.

Documents are signed correctly, so that they get past the signature to the parsing,
validation and storing behind it. The queue is replaced by a recorder in the fast cases;
the last case goes through the real producer to real workers.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from devtools.processes import WorkerProcess, wait_for
from loyalty.api import MAX_DEPTH, create_app, signature_of
from loyalty.bootstrap import Loyalty
from loyalty.domain.events import MAX_AMOUNT, is_customer_id, parse_event
from loyalty.producer import enqueue_order_events
from loyalty.services.events import handle_order_event, list_refused
from loyalty.services.members import show_member
from loyalty.storage.tables import ProcessedEvent
from tests.support.db import assert_ledger_consistent

SECRET = "test-webhook-secret"
TOKEN = {"Authorization": "Bearer test-api-token"}
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.large_base_example])

# Every code point, lone surrogates and controls included.
any_text = st.text(st.characters(exclude_categories=()), max_size=40) | st.sampled_from([
    "", "\x00", "\ud800", "a\udfff", "\u202e", "Nguyễn Thị Lan 👩‍👩‍👧", "ể" * 300,
    "ể" * 100_000])
scalars = (st.none() | st.booleans() | any_text | st.floats()
           | st.integers() | st.sampled_from([-1, 2**63, 2**64, MAX_AMOUNT + 1, 10**300]))


def nested(depth: int) -> Any:
    document: Any = {}
    for _ in range(depth):
        document = [document]
    return document


json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner,
                                                                          max_size=4),
    max_leaves=20) | st.integers(0, 3 * MAX_DEPTH).map(nested)


def _iso(moment: datetime, minutes: int) -> str:
    return moment.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat()


# Any time Python can write, at any offset: years 1 and 9999 at ±23:59 included.
times = st.builds(_iso, st.datetimes(), st.integers(-(24 * 60 - 1), 24 * 60 - 1))
ids = st.text(st.characters(exclude_categories=()), min_size=1, max_size=70)
amounts = st.integers(-1, 2**64) | st.sampled_from([0, MAX_AMOUNT, MAX_AMOUNT + 1, 2**63])


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a value of the field's type, sometimes any JSON value at all."""
    return st.one_of(valid, valid, valid, json_values)


customers = st.fixed_dictionaries({"id": mostly(ids)}, optional={
    "phone": mostly(st.from_regex(r"\+?[0-9]{8,15}", fullmatch=True) | any_text),
    "zalo_user_id": mostly(ids), "name": mostly(any_text),
    "birthday": mostly(st.dates().map(str))})
events = st.fixed_dictionaries({
    "event_id": mostly(ids), "order_id": mostly(ids), "customer": mostly(customers),
    "status": mostly(st.sampled_from(["pending", "delivered", "cancelled", "lost", ""])),
    "payment_status": mostly(st.sampled_from(["unpaid", "paid", "refunded", "PAID"])),
    "total_payable": mostly(amounts), "shipping_fee": mostly(amounts),
    "placed_at": mostly(times), "occurred_at": mostly(times)},
    optional={"extra": json_values})
# Near the edges of every range, mostly inside them: what a worker gets to store.
edge_times = st.one_of(
    st.sampled_from(["2000-01-01T00:00:00+00:00", "2000-01-01T14:00:00+14:00",
                     "2200-12-31T23:59:59.999999+00:00", "2200-12-31T09:59:59.999999-14:00"]),
    st.builds(_iso, st.datetimes(datetime(2000, 1, 2), datetime(2200, 12, 30)),
              st.integers(-(24 * 60 - 1), 24 * 60 - 1)))
edge_amounts = st.sampled_from([0, MAX_AMOUNT]) | st.integers(0, MAX_AMOUNT)
printable = st.characters(exclude_categories=("Cc", "Cs"))
edge_events = st.fixed_dictionaries({
    "event_id": st.text(printable, min_size=1, max_size=100),
    "order_id": st.text(printable, min_size=1, max_size=100),
    "customer": st.fixed_dictionaries({"id": st.text(printable, min_size=1, max_size=64)},
                                      optional={"name": st.text(printable, max_size=200),
                                                "zalo_user_id": st.text(printable, min_size=1,
                                                                        max_size=64),
                                                "birthday": st.dates().map(str)}),
    "status": st.sampled_from(["pending", "delivered", "cancelled", "returned"]),
    "payment_status": st.sampled_from(["unpaid", "paid", "refunded"]),
    "total_payable": st.one_of(edge_amounts, edge_amounts, amounts),
    "shipping_fee": edge_amounts,
    "placed_at": edge_times, "occurred_at": st.one_of(edge_times, edge_times, times)})


any_events = events | edge_events
documents = st.one_of(any_events,
                      st.fixed_dictionaries({"events": st.lists(any_events, max_size=5)}),
                      json_values)


@pytest.fixture
def sent(celery_sender: Celery, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The events the real producer publishes (in batches), recorded instead of sent."""
    published: list[dict[str, Any]] = []
    monkeypatch.setattr(celery_sender, "send_task",
                        lambda *args, **kwargs: published.extend(kwargs["args"][0]))
    return published


@pytest.fixture
def client(loyalty: Loyalty, celery_sender: Celery) -> TestClient:
    return TestClient(create_app(
        loyalty, enqueue=lambda batch: enqueue_order_events(batch, celery=celery_sender)))


def post_signed(client: TestClient, body: bytes) -> Any:
    return client.post("/v1/order-events", content=body,
                       headers={"X-Loyalty-Signature": signature_of(body, SECRET)})


def check_answer(answer: Any, body: bytes, limit: int, sent: list[dict[str, Any]],
                 sent_before: int) -> None:
    # A 500 would also surface as the server's exception in the test client.
    assert answer.status_code in (202, 413, 422), answer.text
    event(f"answered {answer.status_code}")  # shown by --hypothesis-show-statistics
    assert (answer.status_code == 413) == (len(body) > limit)
    if answer.status_code == 202:
        accepted = sent[sent_before:]
        assert answer.json() == {"accepted": len(accepted)}
        for queued in accepted:  # only what passes validation is queued
            parse_event(queued)
    else:
        assert len(sent) == sent_before  # nothing of a refused request is queued
    if answer.status_code == 422:
        for problem in answer.json()["detail"]:
            assert set(problem) >= {"index", "errors"}
            assert all(set(error) == {"field", "message"} for error in problem["errors"])


@FAST
@given(document=documents)
@example(document={"events": [{"name": "ể" * 1_000_000}]})  # 6 MB once written: 413
def test_any_json_document_is_answered_202_413_or_422(
        loyalty: Loyalty, client: TestClient, sent: list[Any], document: Any) -> None:
    before, body = len(sent), json.dumps(document).encode()
    check_answer(post_signed(client, body), body, loyalty.settings.max_body_bytes, sent,
                 before)


@FAST
@given(body=st.binary(max_size=2000) | st.text(st.characters(exclude_categories=()))
       .map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_any_bytes_are_answered_202_or_422(loyalty: Loyalty, client: TestClient,
                                           sent: list[Any], body: bytes) -> None:
    before = len(sent)
    check_answer(post_signed(client, body), body, loyalty.settings.max_body_bytes, sent,
                 before)


def percent_encoded(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode("utf-8", "surrogatepass"))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customer_id=ids)
def test_any_member_id_is_found_as_itself_or_not_found(client: TestClient, loyalty: Loyalty,
                                                        customer_id: str) -> None:
    if is_customer_id(customer_id):
        order = f"SO-{uuid.uuid4().hex}"
        handle_order_event(loyalty, {
            "event_id": order, "order_id": order, "customer": {"id": customer_id},
            "status": "delivered", "payment_status": "paid", "total_payable": 2_000_000,
            "shipping_fee": 0, "placed_at": datetime.now(UTC).isoformat(),
            "occurred_at": datetime.now(UTC).isoformat()}, source="test")
    path = f"/v1/members/{percent_encoded(customer_id)}"
    view, ledger = client.get(path, headers=TOKEN), client.get(f"{path}/ledger", headers=TOKEN)
    if is_customer_id(customer_id):
        assert (view.status_code, view.json()["customer_id"]) == (200, customer_id)
        assert view.json()["points"] == show_member(loyalty, customer_id).points
        assert ledger.status_code == 200 and ledger.json()["entries"]
    else:
        assert (view.status_code, ledger.status_code) == (404, 404)


def processed(loyalty: Loyalty, event_ids: list[str]) -> set[str]:
    with loyalty.sessions() as session:
        return set(session.scalars(select(ProcessedEvent.event_id).where(
            ProcessedEvent.event_id.in_(event_ids))))


def _edge(**changes: Any) -> dict[str, Any]:
    return {"event_id": "e", "order_id": "o", "customer": {"id": "c"}, "status": "delivered",
            "payment_status": "paid", "total_payable": MAX_AMOUNT, "shipping_fee": 0,
            "placed_at": "2200-12-31T09:59:59.999999-14:00",
            "occurred_at": "2000-01-01T14:00:00+14:00", **changes}


@pytest.mark.workers
@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=st.lists(edge_events, min_size=10, max_size=10))
# Once accepted, each of these failed in the workers: always tried, whatever is drawn.
@example(drawn=[_edge(), _edge(total_payable=2**63),
                _edge(occurred_at="9999-12-31T23:00:00-05:00"),
                _edge(placed_at="0001-01-01T00:00:00+05:00"),
                _edge(customer={"id": "c\x00"}), _edge(event_id="e\ud800")])
def test_every_event_the_webhook_accepts_is_applied_by_the_workers(
        loyalty: Loyalty, celery_sender: Celery, workers: list[WorkerProcess],
        drawn: list[dict[str, Any]]) -> None:
    # Through the real producer, queue and workers: what passes the door is what the
    # workers and the database can hold, at the edges of every range.
    client = TestClient(create_app(
        loyalty, enqueue=lambda batch: enqueue_order_events(batch, celery=celery_sender)))
    accepted: list[str] = []
    for sent_event in drawn:
        # Unique ids: no event is a duplicate or names another customer's order.
        unique = uuid.uuid4().hex[:12]
        sent_event = {**sent_event, "event_id": sent_event["event_id"] + unique,
                      "order_id": sent_event["order_id"] + unique}
        answer = post_signed(client, json.dumps(sent_event).encode())
        assert answer.status_code in (202, 422), answer.text
        if answer.status_code == 202:
            accepted.append(sent_event["event_id"])
    event(f"{len(accepted)} of {len(drawn)} accepted")
    wait_for(lambda: processed(loyalty, accepted) == set(accepted), 60,
             "an accepted event was not applied")
    assert [row.event_id for row in list_refused(loyalty) if row.source != "http"] == []
    assert_ledger_consistent(loyalty)
