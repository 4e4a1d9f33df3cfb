"""The HTTP API of SPEC §4: auth, validation, and events through to real workers."""

from __future__ import annotations

import json

import pytest
from celery import Celery
from fastapi.testclient import TestClient

from devtools.processes import WorkerProcess
from loyalty.api import create_app, signature_of
from loyalty.bootstrap import Loyalty
from loyalty.producer import enqueue_order_events
from loyalty.services.events import list_refused
from tests.support.db import wait_until_processed
from tests.support.events import order_event

SECRET = "test-webhook-secret"
TOKEN = {"Authorization": "Bearer test-api-token"}


@pytest.fixture
def client(loyalty: Loyalty, celery_sender: Celery) -> TestClient:
    return TestClient(create_app(
        loyalty, enqueue=lambda batch: enqueue_order_events(batch, celery=celery_sender)))


def post(client: TestClient, document: object, secret: str = SECRET,
         signature: str | None = None):  # type: ignore[no-untyped-def]
    body = json.dumps(document).encode()
    headers = {"Content-Type": "application/json",
               "X-Loyalty-Signature": signature or signature_of(body, secret)}
    return client.post("/v1/order-events", content=body, headers=headers)


def test_signed_events_are_accepted_and_applied_by_workers(
        client: TestClient, loyalty: Loyalty, workers: list[WorkerProcess]) -> None:
    answer = post(client, {"events": [order_event("SO-1", "C-42", "pending", "unpaid"),
                                      order_event("SO-1", "C-42", at=5)]})
    assert (answer.status_code, answer.json()) == (202, {"accepted": 2})
    assert post(client, order_event("SO-2", "C-42", at=6)).json() == {"accepted": 1}
    wait_until_processed(loyalty, 3)

    member = client.get("/v1/members/C-42", headers=TOKEN)
    assert member.status_code == 200
    view = member.json()
    # 1220 at ×1.0 makes C-42 Silver; SO-2 then earns 1464 at ×1.2.
    assert view["points"] == 2684 and view["tier"] == {"code": "gold", "name": "Gold",
                                                        "name_vi": "Vàng", "threshold": 2000}
    assert view["total_spent"] == 2_440_000 and view["points_to_next_tier"] == 316
    assert view["next_tier"] == {"code": "diamond", "name": "Diamond", "name_vi": "Kim cương",
                                 "threshold": 3000}
    assert view["spend_to_next_tier"] == 243_077  # 316 / 1.3 × 1000, rounded up
    assert view["benefits"] and view["next_tier_benefits"] and view["tags"] == []
    assert view["offer"] is None

    ledger = client.get("/v1/members/C-42/ledger", headers=TOKEN).json()["entries"]
    # Newest first. The two orders may be processed in either order by the two workers;
    # whichever comes second is credited at Silver's ×1.2.
    assert [(e["kind"], e["points"], e["balance_after"]) for e in ledger] == [
        ("order_credit", 1464, 2684), ("order_credit", 1220, 1220)]
    assert {e["order_id"] for e in ledger} == {"SO-1", "SO-2"}
    assert ledger[0]["created_at"].endswith("+07:00")


@pytest.mark.parametrize("signature", [None, "sha256=00", "sha1=abc"])
def test_bad_or_missing_signature_is_401(client: TestClient, signature: str | None) -> None:
    body = json.dumps(order_event("SO-1", "C-1")).encode()
    headers = {} if signature is None else {"X-Loyalty-Signature": signature}
    assert client.post("/v1/order-events", content=body, headers=headers).status_code == 401
    # Signed with another secret:
    assert post(client, order_event("SO-1", "C-1"), secret="other").status_code == 401


def test_member_routes_need_the_token(client: TestClient, loyalty: Loyalty) -> None:
    assert client.get("/v1/members/C-1").status_code == 401
    assert client.get("/v1/members/C-1/ledger").status_code == 401
    assert client.get("/v1/members/C-1", headers={
        "Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/members/nobody", headers=TOKEN).status_code == 404
    assert client.get("/v1/members/nobody/ledger", headers=TOKEN).status_code == 404


def test_an_invalid_event_refuses_the_whole_request_naming_fields(
        client: TestClient, loyalty: Loyalty, celery_sender: Celery,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[object] = []
    monkeypatch.setattr(celery_sender, "send_task", lambda *a, **k: sent.append(a))
    bad = order_event("SO-2", "C-1")
    bad["customer"] = {"phone": "0901234567"}
    bad["total_payable"] = "1250000"
    answer = post(client, {"events": [order_event("SO-1", "C-1"), bad]})
    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert problem["index"] == 1
    assert {e["field"] for e in problem["errors"]} == {"customer.id", "total_payable"}
    # Nothing of that request was enqueued, not even the good event …
    assert sent == []
    # … and the bad event is kept where ops can list and replay it.
    [kept] = list_refused(loyalty)
    assert (kept.source, kept.event_id) == ("http", bad["event_id"])


def test_batches_are_limited_to_1000_events(client: TestClient) -> None:
    answer = post(client, {"events": [order_event(f"SO-{i}", "C-1") for i in range(1001)]})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["errors"][0]["field"] == "events"
    assert post(client, {"events": []}).status_code == 422


def test_a_valid_request_reaches_the_queue(client: TestClient, celery_sender: Celery,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple] = []
    monkeypatch.setattr(celery_sender, "send_task", lambda *a, **k: sent.append((a, k)))
    assert post(client, order_event("SO-1", "C-1")).status_code == 202
    [(args, options)] = sent
    # Routed by its name, the one place routing is stated (loyalty.queueing.ROUTES).
    route = celery_sender.amqp.router.route(options, args[0])
    assert args[0] == "loyalty.orders.apply_event" and route["queue"].name == "order_events"
    assert options["args"][0]["order_id"] == "SO-1"


def test_healthz_answers_when_database_and_redis_answer(client: TestClient) -> None:
    answer = client.get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"database": "ok", "redis": "ok"})
