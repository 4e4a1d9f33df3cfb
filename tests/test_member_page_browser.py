"""The member's page end to end: the development build (``make miniapp``) in Debian's Chromium,
served from its own origin, against a real ``loyalty serve`` on PostgreSQL whose members were
made by real workers from signed webhook events, signed in through the fake Zalo's Graph API.
The page must show what ``/v1/me`` and ``/v1/me/ledger`` say, and CORS must let it ask."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Locator, Page, expect
from pydantic import SecretStr

from devtools.fake_zalo import FakeZalo
from devtools.processes import ChildProcess, WorkerProcess, free_port, settings_env
from loyalty.api import signature_of
from loyalty.bootstrap import Loyalty
from loyalty.storage.db import transaction
from loyalty.storage.tables import Message
from tests.support.browser import MiniappBuilds, serve_build
from tests.support.db import wait_until_processed
from tests.support.events import order_event

pytestmark = pytest.mark.services_only
LOYALTY = str(Path(sys.executable).parent / "loyalty")
SECRET = "miniapp-secret"


def vn_number(value: int) -> str:
    """A number as the page writes it, Vietnamese style: 1.720."""
    return f"{value:,}".replace(",", ".")


def text(locator: Locator) -> str:
    return " ".join(locator.inner_text().replace("\xa0", " ").split())


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def api(loyalty: Loyalty, miniapp_builds: MiniappBuilds,
        tmp_path: Path) -> Iterator[tuple[str, str, FakeZalo]]:
    """(API URL, the page's URL on its own origin, the fake Zalo) with the page's origin the
    only one CORS admits."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with FakeZalo(miniapp_secret_key=SECRET) as zalo, \
            serve_build(miniapp_builds.dev(base)) as page_url:
        origin = page_url.split("/miniapp/")[0]
        settings = loyalty.settings.model_copy(update={
            "zalo_graph_url": zalo.url, "miniapp_secret_key": SecretStr(SECRET),
            "miniapp_origins": origin})
        server = ChildProcess("serve", [LOYALTY, "serve", "--port", str(port)],
                              settings_env(settings), tmp_path / "serve.log")
        server.start(ready=lambda: _answers(base + "/healthz"))
        try:
            yield base, page_url, zalo
        finally:
            server.stop()


def send(base: str, *events: dict[str, Any]) -> None:
    body = json.dumps({"events": list(events)}).encode()
    answer = requests.post(base + "/v1/order-events", data=body, timeout=10, headers={
        "X-Loyalty-Signature": signature_of(body, "test-webhook-secret")})
    assert answer.status_code == 202, answer.text


def test_the_page_shows_what_the_api_says_for_the_signed_in_member(
        loyalty: Loyalty, workers: list[WorkerProcess], api: tuple[str, str, FakeZalo],
        browser_page: Page) -> None:
    base, page_url, zalo = api
    # One at a time, so that each is credited at a known tier: SO-1 earns 1220 at ×1.0
    # (Silver), SO-2 600 at ×1.2 and is then cancelled, SO-3 360 at ×1.2.
    for processed, event in enumerate([
            order_event("SO-9", "C-other", zalo_user_id="oa-other", total=5_030_000),
            order_event("SO-1", "C-42", zalo_user_id="oa-42", at=1),
            order_event("SO-2", "C-42", total=530_000, at=2),
            order_event("SO-2", "C-42", "cancelled", "refunded", total=530_000, at=3),
            order_event("SO-3", "C-42", total=330_000, at=4)], start=1):
        send(base, event)
        wait_until_processed(loyalty, processed)
    sent_at = loyalty.clock() - timedelta(hours=2)
    with transaction(loyalty.sessions) as session:
        session.add(Message(kind="nudge", customer_id="C-42", channel="cs", recipient="oa-42",
                            text="nudge", status="sent", attempts=1, created_at=sent_at,
                            updated_at=sent_at, sent_at=sent_at))
    token = zalo.mint_user_token("app-42", oa_user_id="oa-42")
    header = {"X-Zalo-Access-Token": token}
    view = requests.get(base + "/v1/me", headers=header, timeout=10).json()
    ledger = requests.get(base + "/v1/me/ledger", headers=header, timeout=10).json()["entries"]
    assert (view["customer_id"], view["points"], view["offer"]["bonus_points"]) == \
        ("C-42", 1580, 100)
    assert [(e["order_id"], e["points"]) for e in ledger] == [
        ("SO-3", 360), ("SO-2", -600), ("SO-2", 600), ("SO-1", 1220)]

    page = browser_page
    page.goto(f"{page_url}?access_token={token}")
    expect(page.get_by_role("region", name="Hạng của bạn").get_by_role("heading")) \
        .to_have_text(view["tier"]["name_vi"])
    assert text(page.get_by_test_id("points")) == f"{vn_number(view['points'])} điểm"
    assert text(page.get_by_test_id("total-spent")) == f"{vn_number(view['total_spent'])} ₫"
    assert text(page.get_by_test_id("to-next-tier")) == (
        f"Bạn còn {vn_number(view['points_to_next_tier'])} điểm để lên hạng "
        f"{view['next_tier']['name_vi']} (chi tiêu thêm khoảng "
        f"{vn_number(view['spend_to_next_tier'])} ₫).")
    assert page.get_by_test_id("benefits").locator("li").all_inner_texts() == \
        view["benefits"]
    held = set(view["benefits"])
    assert page.get_by_test_id("next-tier-benefits").locator("li").all_inner_texts() == \
        [line for line in view["next_tier_benefits"] if line not in held]
    assert f"+{view['offer']['bonus_points']} điểm" in text(page.get_by_test_id("offer"))
    rows = page.get_by_test_id("history").locator("li")
    expect(rows).to_have_count(len(ledger))
    for row, entry in zip(rows.all(), ledger, strict=True):
        shown = text(row)
        assert f"Đơn {entry['order_id']}" in shown
        assert shown.endswith(f"Số dư {vn_number(entry['balance_after'])}")
    # The other member's numbers appear nowhere.
    assert "5.000" not in text(page.locator("main"))

    # Zalo refusing the token: the page asks to reopen the app, and shows no member.
    zalo.expire_user_token(token)
    other = zalo.mint_user_token("app-x")
    zalo.expire_user_token(other)
    page.goto(f"{page_url}?access_token={other}")
    expect(page.get_by_role("alert")).to_have_text(
        "Phiên đăng nhập Zalo đã hết hạn. Vui lòng đóng ứng dụng và mở lại.")
