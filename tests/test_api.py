"""The HTTP API of SPEC §4: auth, validation, and events through to real workers."""

from __future__ import annotations

import dataclasses
import json
import select
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from devtools.processes import WorkerProcess
from devtools.redis_db import claim_redis_db, release_redis_db
from loyalty.api import MAX_DEPTH, create_app, signature_of
from loyalty.bootstrap import Loyalty
from loyalty.domain.events import MAX_AMOUNT
from loyalty.producer import enqueue_order_events, producer_app
from loyalty.queueing import ORDER_EVENTS
from loyalty.services.events import handle_order_event, list_refused
from tests.conftest import BACKEND, REDIS_HOST_URL, RUN_ID
from tests.support.db import wait_until_processed
from tests.support.events import order_event
from tests.support.http_server import get, serving
from tests.support.tcp_proxy import TcpProxy, free_port

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
    assert args[0] == "loyalty.orders.apply_events" and route["queue"].name == "order_events"
    [[event]] = options["args"]  # one batch of one event
    assert event["order_id"] == "SO-1"


def test_healthz_answers_when_database_and_redis_answer(client: TestClient) -> None:
    answer = client.get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"database": "ok", "redis": "ok"})


# --- what storage cannot hold is refused at the door (issue 7) ----------------------------

@pytest.mark.parametrize(("change", "field"), [
    ({"total_payable": 2**63}, "total_payable"),
    ({"total_payable": MAX_AMOUNT + 1}, "total_payable"),
    ({"shipping_fee": 10**13}, "shipping_fee"),
    # Year 0 and year 10000 once converted to UTC: Python itself cannot hold them.
    ({"placed_at": "0001-01-01T00:00:00+05:00"}, "placed_at"),
    ({"occurred_at": "9999-12-31T23:00:00-05:00"}, "occurred_at"),
    ({"occurred_at": "1999-12-31T23:59:59+00:00"}, "occurred_at"),
    ({"placed_at": "2201-01-01T07:00:00+07:00"}, "placed_at"),
    ({"event_id": "evt-\x00"}, "event_id"),
    ({"order_id": "SO-\ud800"}, "order_id"),
    ({"customer": {"id": "C-\x1b[31m"}}, "customer.id"),
    ({"customer": {"id": "C-1", "name": "Lan\udc80"}}, "customer.name"),
    ({"customer": {"id": "C-1", "zalo_user_id": "\x85"}}, "customer.zalo_user_id"),
    ({"customer": {"id": "C-1", "phone": "0901\x00234567"}}, "customer.phone"),
])
def test_values_storage_cannot_hold_are_refused_naming_the_field_and_kept_exactly(
        client: TestClient, loyalty: Loyalty, change: dict[str, object], field: str) -> None:
    event = {**order_event("SO-1", "C-1"), **change}
    answer = post(client, event)
    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert [error["field"] for error in problem["errors"]] == [field]
    # Kept where ops can replay it, escaped rather than dropped: the very event that was sent.
    [kept] = list_refused(loyalty)
    assert json.loads(kept.payload) == event
    assert kept.event_id == problem["event_id"]


def test_the_bounds_themselves_are_accepted(client: TestClient, celery_sender: Celery,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[object] = []
    monkeypatch.setattr(celery_sender, "send_task", lambda *a, **k: sent.extend(k["args"][0]))
    answer = post(client, {"events": [
        {**order_event("SO-1", "C-1"), "total_payable": MAX_AMOUNT, "shipping_fee": MAX_AMOUNT,
         "placed_at": "2000-01-01T07:00:00+07:00",
         "occurred_at": "2200-12-31T09:59:59.999999-14:00"},
        order_event("SO-2", "Nguyễn Thị Lan 👩‍👩‍👧 \u200b", name="Lê Văn Tám")]})
    assert (answer.status_code, answer.json()) == (202, {"accepted": 2})
    assert len(sent) == 2


def nested(depth: int) -> object:
    document: object = "x"
    for _ in range(depth):
        document = [document]
    return document


@pytest.mark.parametrize("body", [
    # Written out: json.dumps itself would give up on it.
    b"[" * 2000 + b'"x"' + b"]" * 2000,
    json.dumps({"events": [{**order_event("SO-1", "C-1"),
                            "customer": {"id": nested(500)}}]}).encode(),
    json.dumps({**order_event("SO-1", "C-1"), "extra": nested(40)}).encode(),
], ids=["depth-2000", "depth-500-in-a-field", "depth-40-in-an-unknown-field"])
def test_deep_nesting_is_422_not_500(client: TestClient, loyalty: Loyalty,
                                     body: bytes) -> None:
    answer = client.post("/v1/order-events", content=body,
                         headers={"X-Loyalty-Signature": signature_of(body, SECRET)})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["errors"][0]["field"] == "(body)"


def test_nesting_up_to_the_limit_is_accepted(client: TestClient, celery_sender: Celery,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(celery_sender, "send_task", lambda *a, **k: None)
    # Unknown fields are ignored, however they are shaped, up to the depth limit: here the
    # batch, its list and the event are 3 levels, and `extra` the rest.
    event = {**order_event("SO-1", "C-1"), "extra": nested(MAX_DEPTH - 3)}
    assert post(client, {"events": [event]}).status_code == 202
    event["extra"] = nested(MAX_DEPTH - 2)
    assert post(client, {"events": [event]}).status_code == 422


# --- body size ----------------------------------------------------------------------------

def _with_settings(loyalty: Loyalty, **changes: object) -> Loyalty:
    return dataclasses.replace(loyalty, settings=loyalty.settings.model_copy(update=changes))


def test_a_body_over_the_limit_is_413(loyalty: Loyalty) -> None:
    client = TestClient(create_app(_with_settings(loyalty, max_body_bytes=1000),
                                   enqueue=lambda batch: len(batch)))
    small = json.dumps(order_event("SO-1", "C-1")).encode()
    assert len(small) < 1000
    assert client.post("/v1/order-events", content=small, headers={
        "X-Loyalty-Signature": signature_of(small, SECRET)}).status_code == 202
    big = json.dumps({"events": [order_event(f"SO-{i}", "C-1") for i in range(5)]}).encode()
    assert len(big) > 1000
    # Signed or not: the size is checked before the signature, which needs the whole body.
    for headers in ({"X-Loyalty-Signature": signature_of(big, SECRET)}, {}):
        assert client.post("/v1/order-events", content=big,
                           headers=headers).status_code == 413


def test_the_default_limit_holds_a_full_batch_of_the_longest_events(
        client: TestClient, loyalty: Loyalty, celery_sender: Celery,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(celery_sender, "send_task", lambda *a, **k: None)
    longest = {
        # Every text at its longest, in Vietnamese letters that json.dumps writes as \\u escapes.
        "event_id": "ể" * 128, "order_id": "ố" * 128,
        "customer": {"id": "ữ" * 64, "phone": "+" + "9" * 15, "zalo_user_id": "ị" * 64,
                     "name": "Ằ" * 200, "birthday": "1995-03-08"},
        "status": "delivered", "payment_status": "paid",
        "total_payable": MAX_AMOUNT, "shipping_fee": MAX_AMOUNT,
        "placed_at": "2200-12-31T23:59:59.999999+00:00",
        "occurred_at": "2200-12-31T23:59:59.999999+00:00"}
    batch = {"events": [longest] * 1000}
    assert len(json.dumps(batch).encode()) <= loyalty.settings.max_body_bytes
    assert post(client, batch).json() == {"accepted": 1000}


def test_the_server_refuses_a_large_body_before_reading_it(loyalty: Loyalty) -> None:
    app = create_app(_with_settings(loyalty, max_body_bytes=100_000),
                     enqueue=lambda batch: len(batch))
    with serving(app) as address:
        # Declared too large: answered at once, before a byte of the body is sent.
        with socket.create_connection(address, timeout=10) as connection:
            connection.sendall(b"POST /v1/order-events HTTP/1.1\r\nHost: test\r\n"
                               b"Content-Length: 20000000\r\n\r\n")
            assert connection.recv(65536).startswith(b"HTTP/1.1 413 ")
        # Streamed with no length and never finished: any answer comes before the end of the
        # body, and it comes once the limit is passed.
        with socket.create_connection(address, timeout=10) as connection:
            connection.sendall(b"POST /v1/order-events HTTP/1.1\r\nHost: test\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (10_000, b" " * 10_000)
            for _ in range(2_000):  # 20 MB at most
                if select.select([connection], [], [], 0)[0]:
                    break
                try:
                    connection.sendall(chunk)
                except OSError:  # the server closed the connection: its answer is waiting
                    break
            assert connection.recv(65536).startswith(b"HTTP/1.1 413 ")


# --- the queue or the database down: 503, never 500 ---------------------------------------

def _unavailable_in_seconds(client: TestClient, document: object) -> float:
    started = time.monotonic()
    answer = post(client, document)
    elapsed = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["Retry-After"]) > 0
    return elapsed


def _through_producer(loyalty: Loyalty, redis_url: str) -> tuple[TestClient, Celery]:
    producer = producer_app(loyalty.settings.model_copy(update={"redis_url": redis_url}))
    return TestClient(create_app(
        loyalty, enqueue=lambda batch: enqueue_order_events(batch, celery=producer))), producer


def test_redis_unreachable_is_503_with_retry_after_within_seconds(loyalty: Loyalty) -> None:
    # Nothing listens: refused at once.
    client, _ = _through_producer(loyalty, f"redis://127.0.0.1:{free_port()}/0")
    # Bounded retries, not the minutes of the default publish policy with no socket timeout.
    assert _unavailable_in_seconds(client, order_event("SO-1", "C-1")) < 15
    # Something listens but never answers, as a hung server or a cut network looks.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)
        client, _ = _through_producer(
            loyalty, f"redis://127.0.0.1:{black_hole.getsockname()[1]}/0")
        assert _unavailable_in_seconds(client, order_event("SO-1", "C-1")) < 15
    assert list_refused(loyalty) == []  # the events were valid: nothing is refused


@pytest.fixture
def spare_redis_url(redis_url: str) -> Iterator[str]:
    """A Redis database of this test's own: what it queues never reaches the workers."""
    number = claim_redis_db(REDIS_HOST_URL, RUN_ID)
    yield f"{REDIS_HOST_URL}/{number}"
    release_redis_db(REDIS_HOST_URL, number, RUN_ID)


@pytest.mark.services_only
@pytest.mark.skipif(BACKEND == "embedded", reason="needs Redis over TCP")
def test_redis_down_then_back_503_then_202_and_a_half_sent_batch_is_not_accepted(
        loyalty: Loyalty, spare_redis_url: str) -> None:
    broker = urlsplit(spare_redis_url)
    assert broker.hostname and broker.port
    with TcpProxy(broker.hostname, broker.port) as proxy:
        client, producer = _through_producer(
            loyalty, f"redis://127.0.0.1:{proxy.port}{broker.path}")
        assert post(client, order_event("SO-1", "C-1")).json() == {"accepted": 1}
        proxy.stop()
        _unavailable_in_seconds(client, order_event("SO-2", "C-1"))
        proxy.start()
        assert post(client, order_event("SO-2", "C-1")).json() == {"accepted": 1}

        # Redis goes down between the first and the second task of a request: 250 events of
        # as many customers make three tasks of at most 100.
        batch = {"events": [order_event(f"SO-{i}", f"C-{i}") for i in range(3, 253)]}
        publish = producer.send_task
        published: list[int] = []

        def cut_after_the_first(*args: Any, **kwargs: Any) -> Any:
            if published:
                proxy.stop()
            published.append(len(kwargs["args"][0]))
            return publish(*args, **kwargs)

        producer.send_task = cut_after_the_first  # type: ignore[method-assign]
        _unavailable_in_seconds(client, batch)
        with redis.Redis.from_url(spare_redis_url) as spare:
            assert spare.llen(ORDER_EVENTS) == 3  # SO-1, SO-2 and the first task of the batch
        assert published[0] == 100
        # The sender sends the whole batch again; the events queued twice count once.
        proxy.start()
        producer.send_task = publish  # type: ignore[method-assign]
        assert post(client, batch).json() == {"accepted": 250}


@pytest.mark.services_only
@pytest.mark.skipif(BACKEND == "embedded", reason="needs PostgreSQL over TCP")
def test_database_down_while_keeping_a_refused_event_is_503(loyalty: Loyalty) -> None:
    assert loyalty.settings.database_url
    database = make_url(loyalty.settings.database_url)
    assert database.host and database.port
    with TcpProxy(database.host, database.port) as proxy:
        cut_off = Loyalty.from_settings(loyalty.settings.model_copy(update={
            "database_url": database.set(host="127.0.0.1", port=proxy.port)
            .render_as_string(hide_password=False)}))
        try:
            client = TestClient(create_app(cut_off, enqueue=enqueue_order_events))
            proxy.stop()
            bad = {**order_event("SO-1", "C-1"), "status": "lost"}
            _unavailable_in_seconds(client, bad)
            # Once the database is back the same request is refused and kept, as always.
            proxy.start()
            assert post(client, bad).status_code == 422
        finally:
            cut_off.engine.dispose()
    [kept] = list_refused(loyalty)
    assert kept.event_id == bad["event_id"]


# --- member ids in the path round-trip exactly ---------------------------------------------

ODD_IDS = ["vic-X", "vic-X/ledger", "a%2Fb", "%", "50%off", "..", ".", "x/../y", "a b", "+",
           "Nguyễn Văn Ánh", "?q=1#f", "\\", "C-42/"]


def percent_encoded(customer_id: str) -> str:
    """Every byte but letters and digits percent-encoded; dots too, which URL libraries
    would otherwise resolve as path segments."""
    return quote(customer_id, safe="").replace(".", "%2E")


def test_every_member_id_round_trips_through_the_path(client: TestClient,
                                                      loyalty: Loyalty) -> None:
    # A different spend each, so that an answer for the wrong member shows.
    for n, customer_id in enumerate(ODD_IDS):
        handle_order_event(loyalty, order_event(f"SO-{n}", customer_id,
                                                total=1_000_000 + 1000 * n, shipping=0),
                           source="test")
    for n, customer_id in enumerate(ODD_IDS):
        path = f"/v1/members/{percent_encoded(customer_id)}"
        view = client.get(path, headers=TOKEN)
        assert view.status_code == 200, customer_id
        assert (view.json()["customer_id"], view.json()["points"]) == (customer_id, 1000 + n)
        [entry] = client.get(f"{path}/ledger", headers=TOKEN).json()["entries"]
        assert entry["order_id"] == f"SO-{n}"


def test_the_path_is_read_as_sent_on_the_wire(loyalty: Loyalty) -> None:
    for n, customer_id in enumerate(["vic-X", "vic-X/ledger", ".."]):
        handle_order_event(loyalty, order_event(f"SO-{n}", customer_id), source="test")
    token = b"Authorization: Bearer test-api-token"
    with serving(create_app(loyalty)) as address:
        def get_json(target: bytes) -> tuple[int, Any]:
            status, body = get(address, target, token)
            return status, json.loads(body)

        # The member "vic-X/ledger", not the ledger of "vic-X".
        status, view = get_json(b"/v1/members/vic-X%2Fledger")
        assert (status, view["customer_id"]) == (200, "vic-X/ledger")
        status, ledger = get_json(b"/v1/members/vic-X%2fledger/ledger")
        assert (status, ledger["entries"][0]["order_id"]) == (200, "SO-1")
        assert get_json(b"/v1/members/vic-X/ledger")[1]["entries"][0]["order_id"] == "SO-0"
        # ".." is an id like any other, sent as is or encoded; it climbs nowhere.
        assert get_json(b"/v1/members/..")[1]["customer_id"] == ".."
        assert get_json(b"/v1/members/%2E%2E")[1]["customer_id"] == ".."
        for target in (b"/v1/members/vic-X/../vic-X", b"/v1/members/vic-X/ledger/..",
                       b"/v1/members/vic-X/", b"/v1/members/", b"/v1/members/vic-X/other"):
            assert get(address, target, token)[0] == 404, target


@pytest.mark.parametrize("target", [
    "/v1/members/%00", "/v1/members/C-1%00/ledger", "/v1/members/%1B%5B31m",
    "/v1/members/%C2%85", "/v1/members/%ED%A0%80", "/v1/members/%FF", "/v1/members/%",
    "/v1/members/%zz", "/v1/members/" + "x" * 65, "/v1/members/%0A"])
def test_a_malformed_or_impossible_id_is_404_never_500(client: TestClient, target: str) -> None:
    assert client.get(target, headers=TOKEN).status_code == 404
    assert client.get(target).status_code == 401  # and the token is asked for first


# --- what is open to whom -----------------------------------------------------------------

def test_api_docs_are_off_unless_turned_on(loyalty: Loyalty) -> None:
    pages = ("/docs", "/redoc", "/openapi.json")
    closed = TestClient(create_app(loyalty))
    assert [closed.get(page).status_code for page in pages] == [404, 404, 404]
    opened = TestClient(create_app(_with_settings(loyalty, api_docs=True)))
    assert [opened.get(page).status_code for page in pages] == [200, 200, 200]
    assert "/v1/order-events" in opened.get("/openapi.json").json()["paths"]


def test_metrics_need_the_shop_wide_token(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/metrics", headers=TOKEN)
    assert answer.status_code == 200 and "loyalty_stats_up 1.0" in answer.text
