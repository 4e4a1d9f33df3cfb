"""The member's page API (SPEC §4): sign-in with a Zalo user access token verified by the
fake Zalo's Graph API over HTTP, linking to customers made by real workers from webhook
events, the token cache in the run's Redis, and CORS for the Mini App's origins only."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import requests
from celery import Celery
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from devtools.fake_zalo import GRAPH_ME_PATH, GRAPH_PHONE_PATH, FakeZalo
from devtools.processes import (
    ROOT,
    ChildProcess,
    WorkerProcess,
    free_port,
    settings_env,
    wait_for,
)
from loyalty.api import create_app, signature_of
from loyalty.bootstrap import Loyalty
from loyalty.embedded_redis import redis_url
from loyalty.producer import enqueue_order_events
from loyalty.services.signin import CACHE_PREFIX
from loyalty.settings import Settings
from loyalty.storage.db import transaction
from loyalty.storage.tables import Message, ZaloLink
from tests.conftest import BACKEND
from tests.support.db import wait_until_processed
from tests.support.events import order_event

SECRET = "miniapp-secret"
ORIGIN = "https://h5.zdn.vn"
SHOP_TOKEN = {"Authorization": "Bearer test-api-token"}
LOYALTY = str(Path(sys.executable).parent / "loyalty")


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeZalo]:
    with FakeZalo(miniapp_secret_key=SECRET) as fake:
        yield fake


def page_settings(migrated: Settings, graph: FakeZalo, **changes: object) -> Settings:
    return migrated.model_copy(update={
        "zalo_graph_url": graph.url, "miniapp_secret_key": SecretStr(SECRET),
        "miniapp_origins": f"{ORIGIN}, http://localhost:3000/", "zalo_timeout_seconds": 1.0,
        **changes})


@pytest.fixture
def shop_with(loyalty: Loyalty, migrated: Settings,
              graph: FakeZalo) -> Iterator[Callable[..., Loyalty]]:
    """The system on this test's emptied databases, with the page's settings changed."""
    graph.clear_failures()
    made: list[Loyalty] = []

    def make(**changes: object) -> Loyalty:
        made.append(Loyalty.from_settings(page_settings(migrated, graph, **changes)))
        return made[-1]

    yield make
    for shop in made:
        shop.engine.dispose()


@pytest.fixture
def shop(shop_with: Callable[..., Loyalty]) -> Loyalty:
    return shop_with()


def client_for(shop: Loyalty, celery: Celery) -> TestClient:
    return TestClient(create_app(
        shop, enqueue=lambda batch: enqueue_order_events(batch, celery=celery)))


@pytest.fixture
def client(shop: Loyalty, celery_sender: Celery) -> TestClient:
    return client_for(shop, celery_sender)


def send_events(client: TestClient, *events: dict[str, Any]) -> None:
    body = json.dumps({"events": list(events)}).encode()
    answer = client.post("/v1/order-events", content=body, headers={
        "X-Loyalty-Signature": signature_of(body, "test-webhook-secret")})
    assert answer.status_code == 202, answer.text


def me(client: TestClient, token: str | None, path: str = "/v1/me",
       **headers: str) -> httpx.Response:
    if token is not None:
        headers["X-Zalo-Access-Token"] = token
    return client.get(path, headers=headers)


def graph_calls(graph: FakeZalo, token: str) -> int:
    return sum(1 for path, sent in graph.access_log if path == GRAPH_ME_PATH and sent == token)


def two_members(client: TestClient, shop: Loyalty) -> None:
    """C-A (1220 points, Silver) and C-B (300 points), each with an OA user id."""
    send_events(client, order_event("SO-A", "C-A", zalo_user_id="oa-A", phone="0901111111"),
                order_event("SO-B", "C-B", total=330_000, zalo_user_id="oa-B"))
    wait_until_processed(shop, 2)


def test_a_valid_token_shows_its_member_and_never_another(
        client: TestClient, shop: Loyalty, graph: FakeZalo,
        workers: list[WorkerProcess]) -> None:
    two_members(client, shop)
    token_a = graph.mint_user_token("app-A", oa_user_id="oa-A")
    token_b = graph.mint_user_token("app-B", oa_user_id="oa-B")

    view = me(client, token_a).json()
    assert (view["customer_id"], view["points"], view["tier"]["code"]) == ("C-A", 1220, "silver")
    assert view["total_spent"] == 1_220_000 and view["tier"]["name_vi"] == "Bạc"
    # Nothing the page says about itself names another customer.
    for path in ["/v1/me?customer_id=C-B", "/v1/me?idByOA=oa-B", "/v1/me?user_id=app-B"]:
        assert me(client, token_a, path).json()["customer_id"] == "C-A"
    assert me(client, token_a, X_Customer_Id="C-B", X_Zalo_User_Id="app-B").json()[
        "customer_id"] == "C-A"
    assert [e["order_id"] for e in me(client, token_a, "/v1/me/ledger").json()["entries"]] == \
        ["SO-A"]
    assert me(client, token_b).json()["customer_id"] == "C-B"
    assert [e["order_id"] for e in me(client, token_b, "/v1/me/ledger").json()["entries"]] == \
        ["SO-B"]
    # The links are kept: app id → customer, never assumed equal to the OA id.
    with shop.sessions() as session:
        links = {link.zalo_id: (link.customer_id, link.linked_by)
                 for link in session.scalars(select(ZaloLink))}
    assert links == {"app-A": ("C-A", "oa_user_id"), "app-B": ("C-B", "oa_user_id")}
    # A user whose Graph answer names no OA id is not taken for anyone, whatever it claims.
    stranger = graph.mint_user_token("app-X")
    assert me(client, stranger, "/v1/me?idByOA=oa-A").json()["customer_id"] is None


@pytest.mark.parametrize("kind", ["missing", "unknown", "expired", "forged", "other-secret"])
def test_a_token_zalo_refuses_is_401(shop_with: Callable[..., Loyalty], celery_sender: Celery,
                                     graph: FakeZalo, kind: str) -> None:
    client = client_for(shop_with(), celery_sender)
    token: str | None = graph.mint_user_token("app-1", oa_user_id="oa-1")
    if kind == "missing":
        token = None
    elif kind == "unknown":
        token = "fake-user-never-issued"
    elif kind == "expired":
        graph.expire_user_token(token)
    elif kind == "forged":
        token = token[:-2] + ("aa" if not token.endswith("aa") else "bb")
    else:  # a server whose app secret is not the one the token's app has
        client = client_for(shop_with(miniapp_secret_key=SecretStr("nope")), celery_sender)
    for path in ["/v1/me", "/v1/me/ledger"]:
        answer = me(client, token, path)
        assert answer.status_code == 401, answer.text
    assert client.post("/v1/me/phone", json={"token": "x"}, headers={
        "X-Zalo-Access-Token": token or ""}).status_code == 401


@pytest.mark.parametrize("failure", [{"http_status": 502}, {"delay": 2.0},
                                     {"error": -501, "message": "region restricted"}],
                         ids=["5xx", "timeout", "region"])
def test_a_zalo_outage_is_503_but_a_cached_token_still_works(
        client: TestClient, graph: FakeZalo, failure: dict[str, Any]) -> None:
    known = graph.mint_user_token("app-1")
    assert me(client, known).status_code == 200
    new = graph.mint_user_token("app-2")
    graph.fail_next(GRAPH_ME_PATH, times=10, **failure)
    answer = me(client, new)
    assert answer.status_code == 503 and "Zalo" in answer.json()["detail"]
    assert me(client, known).status_code == 200
    assert me(client, known, "/v1/me/ledger").json() == {"entries": []}
    graph.clear_failures()
    assert me(client, new).status_code == 200


def test_the_cache_asks_zalo_once_and_keys_by_a_hash(client: TestClient, shop: Loyalty,
                                                    graph: FakeZalo) -> None:
    token = graph.mint_user_token("app-1", oa_user_id="oa-1")
    for _ in range(20):
        assert me(client, token).status_code == 200
        assert me(client, token, "/v1/me/ledger").status_code == 200
    assert graph_calls(graph, token) == 1
    store = redis.Redis.from_url(redis_url(shop.settings))
    key = CACHE_PREFIX + hashlib.sha256(token.encode()).hexdigest()
    assert store.exists(key)
    keys = [k.decode() for k in store.scan_iter(match=CACHE_PREFIX + "*")]
    assert keys and not any(token in k for k in keys)
    assert not any(token.encode() in (store.get(k) or b"") for k in keys)
    assert 0 < store.ttl(key) <= (5 + 30) * 60


def test_after_its_fresh_minutes_a_token_is_asked_again_and_counts_only_while_zalo_is_down(
        shop_with: Callable[..., Loyalty], graph: FakeZalo, celery_sender: Celery) -> None:
    client = client_for(shop_with(miniapp_token_cache_minutes=0), celery_sender)
    token = graph.mint_user_token("app-1")
    assert me(client, token).status_code == 200 and me(client, token).status_code == 200
    assert graph_calls(graph, token) == 2
    graph.fail_next(GRAPH_ME_PATH, http_status=503, times=3)
    assert me(client, token).status_code == 200  # the grace period
    graph.clear_failures()
    graph.expire_user_token(token)
    assert me(client, token).status_code == 401  # Zalo answers again, and refuses it …
    graph.fail_next(GRAPH_ME_PATH, http_status=503)
    assert me(client, token).status_code == 503  # … so the cache no longer vouches for it


def test_without_redis_members_still_sign_in(shop_with: Callable[..., Loyalty],
                                             graph: FakeZalo, celery_sender: Celery) -> None:
    client = client_for(shop_with(redis_url="redis://127.0.0.1:1/0"), celery_sender)
    token = graph.mint_user_token("app-1")
    assert me(client, token).status_code == 200 and me(client, token).status_code == 200
    assert graph_calls(graph, token) == 2


def test_sign_in_without_an_app_secret_is_503(shop_with: Callable[..., Loyalty],
                                              graph: FakeZalo, celery_sender: Celery) -> None:
    # Neither the Mini App's secret nor the OA's: no appsecret_proof can be made.
    shop = shop_with(miniapp_secret_key=SecretStr(""), zalo_secret_key=SecretStr(""))
    answer = me(client_for(shop, celery_sender), graph.mint_user_token("app-1"))
    assert answer.status_code == 503 and "not configured" in answer.json()["detail"]
    # The Mini App's secret defaults to the OA app's.
    shop = shop_with(miniapp_secret_key=SecretStr(""), zalo_secret_key=SecretStr(SECRET))
    assert me(client_for(shop, celery_sender), graph.mint_user_token("app-1")).status_code == 200


def test_a_member_with_no_orders_sees_the_first_tier_and_0_points(client: TestClient,
                                                                  graph: FakeZalo) -> None:
    token = graph.mint_user_token("app-new", oa_user_id="oa-nobody-yet")
    answer = me(client, token)
    assert answer.status_code == 200
    view = answer.json()
    assert view["customer_id"] is None and view["points"] == 0 and view["total_spent"] == 0
    assert view["tier"] == {"code": "member", "name": "Member", "name_vi": "Thành viên",
                            "threshold": 0}
    assert view["points_to_next_tier"] == 1000 and view["benefits"] and view["offer"] is None
    assert me(client, token, "/v1/me/ledger").json() == {"entries": []}


def test_phone_links_a_customer_who_has_that_number(
        client: TestClient, shop: Loyalty, graph: FakeZalo,
        workers: list[WorkerProcess]) -> None:
    two_members(client, shop)  # C-A's events carry 0901111111
    token = graph.mint_user_token("app-9")  # Graph names no OA id for this one
    assert me(client, token).json()["customer_id"] is None
    code = graph.mint_phone_code(token, "84901111111")
    answer = client.post("/v1/me/phone", json={"token": code},
                         headers={"X-Zalo-Access-Token": token})
    assert answer.status_code == 200 and answer.json()["customer_id"] == "C-A"
    assert me(client, token).json()["points"] == 1220
    with shop.sessions() as session:
        link = session.get(ZaloLink, "app-9")
        assert link is not None
        assert (link.customer_id, link.phone, link.linked_by) == ("C-A", "84901111111", "phone")


def test_an_unknown_number_is_linked_and_the_member_appears_with_an_order(
        client: TestClient, shop: Loyalty, graph: FakeZalo,
        workers: list[WorkerProcess]) -> None:
    token = graph.mint_user_token("app-7")
    code = graph.mint_phone_code(token, "84907777777")
    answer = client.post("/v1/me/phone", json={"token": code},
                         headers={"X-Zalo-Access-Token": token})
    assert answer.status_code == 200
    assert (answer.json()["customer_id"], answer.json()["points"]) == (None, 0)
    # The shop's system spells the number its own way.
    send_events(client, order_event("SO-7", "C-7", phone="+84907777777"))
    wait_until_processed(shop, 1)
    view = me(client, token).json()
    assert (view["customer_id"], view["points"]) == ("C-7", 1220)


def test_a_phone_code_zalo_refuses_is_422_and_links_nothing(
        client: TestClient, shop: Loyalty, graph: FakeZalo) -> None:
    token = graph.mint_user_token("app-5")
    other = graph.mint_user_token("app-6")
    for code in ["made-up", graph.mint_phone_code(other, "84905555555")]:
        answer = client.post("/v1/me/phone", json={"token": code},
                             headers={"X-Zalo-Access-Token": token})
        assert answer.status_code == 422 and "phone code" in answer.json()["detail"]
    assert client.post("/v1/me/phone", json={}, headers={
        "X-Zalo-Access-Token": token}).status_code == 422  # no code at all
    foreign = graph.mint_phone_code(token, "14155550123")
    assert client.post("/v1/me/phone", json={"token": foreign}, headers={
        "X-Zalo-Access-Token": token}).status_code == 422  # not a Vietnamese number
    graph.fail_next(GRAPH_PHONE_PATH, http_status=502)
    assert client.post("/v1/me/phone", json={"token": graph.mint_phone_code(
        token, "84905555555")}, headers={"X-Zalo-Access-Token": token}).status_code == 503
    with shop.sessions() as session:
        assert list(session.scalars(select(ZaloLink))) == []


def test_the_offer_shows_while_its_window_runs_and_goes_once_the_bonus_is_paid(
        client: TestClient, shop: Loyalty, graph: FakeZalo,
        workers: list[WorkerProcess]) -> None:
    send_events(client, order_event("SO-1", "C-1", total=830_000, zalo_user_id="oa-1"))
    wait_until_processed(shop, 1)
    token = graph.mint_user_token("app-1", oa_user_id="oa-1")
    assert me(client, token).json()["offer"] is None
    sent_at = shop.clock() - timedelta(hours=1)
    with transaction(shop.sessions) as session:
        session.add(Message(kind="nudge", customer_id="C-1", channel="cs", recipient="oa-1",
                            text="nudge", status="sent", attempts=1, created_at=sent_at,
                            updated_at=sent_at, sent_at=sent_at))
    offer = me(client, token).json()["offer"]
    assert offer == {"bonus_points": 100, "order_before": (sent_at + timedelta(hours=72))
                     .astimezone(shop.zone).isoformat()}
    assert client.get("/v1/members/C-1", headers=SHOP_TOKEN).json()["offer"] == offer
    # An order placed now earns the bonus; once paid, the offer is gone.
    now = shop.clock().astimezone(shop.zone).isoformat()
    order = order_event("SO-2", "C-1", total=130_000, zalo_user_id="oa-1")
    send_events(client, dict(order, placed_at=now, occurred_at=now))
    wait_until_processed(shop, 2)
    view = me(client, token).json()
    assert view["points"] == 800 + 100 + 100 and view["offer"] is None  # order, bonus


def test_cors_admits_the_configured_origins_on_the_members_routes_only(
        client: TestClient) -> None:
    preflight = {"Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "x-zalo-access-token"}
    for origin in [ORIGIN, "http://localhost:3000"]:
        answer = client.options("/v1/me", headers={"Origin": origin, **preflight})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == origin
        assert "x-zalo-access-token" in answer.headers["access-control-allow-headers"].lower()
        simple = client.get("/v1/me/ledger", headers={"Origin": origin})
        assert simple.status_code == 401  # no token; the browser may still read the answer
        assert simple.headers["access-control-allow-origin"] == origin
    phone = client.options("/v1/me/phone", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-zalo-access-token"})
    assert phone.status_code == 200 and phone.headers["access-control-allow-origin"] == ORIGIN

    for origin in ["https://evil.example", "https://h5.zdn.vn.evil.example", "null"]:
        answer = client.options("/v1/me", headers={"Origin": origin, **preflight})
        assert answer.status_code == 400
        assert "access-control-allow-origin" not in answer.headers
        assert "access-control-allow-origin" not in client.get(
            "/v1/me", headers={"Origin": origin}).headers
    # The shop-wide routes are not opened to any browser, the Mini App's included.
    for path in ["/v1/members/C-1", "/v1/members/C-1/ledger", "/v1/order-events", "/healthz"]:
        answer = client.options(path, headers={"Origin": ORIGIN, **preflight})
        assert "access-control-allow-origin" not in answer.headers
        assert "access-control-allow-origin" not in client.get(
            path, headers={"Origin": ORIGIN, **SHOP_TOKEN}).headers


def test_the_built_page_is_served_at_miniapp(shop: Loyalty, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>Hạng thành viên</title>",
                                         encoding="utf-8")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "app.js").write_text("console.log(1)", encoding="utf-8")
    client = TestClient(create_app(shop, miniapp=tmp_path))
    page = client.get("/miniapp/?access_token=abc")
    assert page.status_code == 200 and "Hạng thành viên" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert client.get("/miniapp/assets/app.js").text == "console.log(1)"
    assert client.get("/miniapp").status_code == 200  # redirected to /miniapp/
    assert client.get("/miniapp/../pyproject.toml").status_code == 404
    assert TestClient(create_app(shop)).get("/miniapp/").status_code == 404


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_no_token_or_phone_code_reaches_any_log_line_of_loyalty_serve(
        shop: Loyalty, graph: FakeZalo, tmp_path: Path) -> None:
    page = tmp_path / "dist"
    page.mkdir()
    (page / "index.html").write_text("<!doctype html><title>page</title>", encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = ChildProcess("serve", [LOYALTY, "serve", "--port", str(port), "--miniapp",
                                    str(page)],
                          settings_env(shop.settings), tmp_path / "serve.log")
    server.start(ready=lambda: _answers(base + "/healthz"), timeout=60)
    try:
        token = graph.mint_user_token("app-L", oa_user_id="oa-L")
        code = graph.mint_phone_code(token, "84908888888")
        header = {"X-Zalo-Access-Token": token}
        assert requests.get(base + "/v1/me", headers=header, timeout=10).status_code == 200
        assert requests.get(f"{base}/miniapp/?access_token={token}", timeout=10).ok
        assert requests.post(base + "/v1/me/phone", json={"token": code}, headers=header,
                             timeout=10).status_code == 200
        assert requests.post(base + "/v1/me/phone", json={"token": "x" + code},
                             headers=header, timeout=10).status_code == 422
        refused = graph.mint_user_token("app-R")
        graph.expire_user_token(refused)
        assert requests.get(base + "/v1/me", headers={"X-Zalo-Access-Token": refused},
                            timeout=10).status_code == 401
        unverified = graph.mint_user_token("app-U")
        graph.fail_next(GRAPH_ME_PATH, http_status=502,
                        message=f"upstream echoed {unverified}")
        assert requests.get(base + "/v1/me", headers={"X-Zalo-Access-Token": unverified},
                            timeout=10).status_code == 503
    finally:
        server.stop()
    log = server.log()
    # One JSON object a line, uvicorn's access log included.
    messages = "\n".join(json.loads(line)["message"] for line in log.splitlines() if line)
    # The lines are there (so the checks below look at something) …
    assert 'GET /miniapp/?access_token=[redacted] HTTP/1.1" 200' in messages
    assert '"POST /v1/me/phone HTTP/1.1" 422' in messages
    assert "Zalo Graph /v2.0/me unavailable" in log
    assert "Zalo user linked by phone" in log and "********888" in log
    # … and none carries a token, a phone code or the whole number.
    for secret in [token, code, refused, unverified, "84908888888", SECRET]:
        assert secret not in log


@pytest.mark.skipif(BACKEND == "embedded",
                    reason="the demo runs on its own embedded setup whatever the backend")
def test_demo_serve_keeps_the_api_up_signed_in_as_a_demo_member(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    output = tmp_path / "demo.out"
    with open(output, "wb") as out:
        demo = subprocess.Popen([LOYALTY, "demo", "--customers", "60", "--workers", "1",
                                 "--serve", "--port", str(port)], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "X-Zalo-Access-Token:" in output.read_text() and
                 _answers(f"http://127.0.0.1:{port}/healthz"), 180,
                 "demo --serve did not come up")
        text = output.read_text()
        member = re.search(r"signed in as (C-\d+) through a fake Zalo", text)
        token = re.search(r"X-Zalo-Access-Token: ([\w-]+)'", text)
        assert member and token, text
        if (ROOT / "miniapp" / "dist" / "index.html").is_file():
            assert f"open http://127.0.0.1:{port}/miniapp/?access_token={token[1]}" in text
            assert _answers(f"http://127.0.0.1:{port}/miniapp/")
        else:
            assert "run `make miniapp`" in text
        view = requests.get(f"http://127.0.0.1:{port}/v1/me", timeout=10,
                            headers={"X-Zalo-Access-Token": token[1]}).json()
        # A member nudged yesterday: their page has the live offer and the tag.
        assert view["customer_id"] == member[1] and view["points"] > 0
        assert view["offer"]["bonus_points"] == 100 and view["tags"]
        assert requests.get(f"http://127.0.0.1:{port}/v1/me", timeout=10, headers={
            "X-Zalo-Access-Token": "not-minted"}).status_code == 401
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
    # The embedded Redis of the demo is stopped with it.
    assert not (tmp_path / ".loyalty" / "demo" / "redis.pid").exists()
