"""The member's page ("Hạng thành viên", miniapp/) built by `make miniapp`, in real Chromium,
against a local double of the member API (tests/support/fake_member_api.py) on another
origin, so the page's CORS requests are the real ones."""

from __future__ import annotations

from collections.abc import Iterator
from copy import deepcopy
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.support.browser import REPO, MiniappBuilds, phone_page, serve_build
from tests.support.fake_member_api import TOKEN_HEADER, FakeMemberApi, Member

SHOP_ZONE = timezone(timedelta(hours=7))
SCREENSHOT = REPO / "docs" / "miniapp.png"
# A nudge sent at 13:20 on 23/11: its bonus is for orders placed within 72 hours.
OFFER = {"bonus_points": 100, "order_before": "2026-11-26T13:20:00+07:00"}
DURING_OFFER = datetime(2026, 11, 24, 9, 0, tzinfo=SHOP_ZONE)

GOLD_BENEFITS = ["Quà sinh nhật hạng Vàng", "Tăng tốc tích điểm x1,3", "Ưu đãi cá nhân hóa",
                 "Quà tri ân định kỳ"]
SILVER_BENEFITS = ["Quà sinh nhật hạng Bạc", "Tăng tốc tích điểm x1,2", "Ưu đãi cá nhân hóa"]
SILVER_VIEW: dict[str, Any] = {
    "customer_id": "C-42",
    "tier": {"code": "silver", "name": "Silver", "name_vi": "Bạc", "threshold": 1000},
    "points": 1720, "total_spent": 1650000,
    "next_tier": {"code": "gold", "name": "Gold", "name_vi": "Vàng", "threshold": 2000},
    "points_to_next_tier": 280, "spend_to_next_tier": 233334,
    "benefits": SILVER_BENEFITS, "next_tier_benefits": GOLD_BENEFITS,
    "tags": [{"name": "Đã gửi tin", "expires_at": "2026-12-07T09:00:12+07:00"}],
    "offer": None,
}
SILVER_LEDGER = [
    {"kind": "crosssell_bonus", "points": 100, "order_id": "SO-1003", "balance_after": 1720,
     "created_at": "2026-11-24T10:05:00+07:00"},
    {"kind": "order_credit", "points": 156, "order_id": "SO-1003", "balance_after": 1620,
     "created_at": "2026-11-24T10:05:00+07:00"},
    {"kind": "order_refund", "points": -36, "order_id": "SO-1002", "balance_after": 1464,
     "created_at": "2026-11-21T16:30:00+07:00"},
    {"kind": "order_reversal", "points": -250, "order_id": "SO-1001", "balance_after": 1500,
     "created_at": "2026-11-20T08:00:00+07:00"},
    {"kind": "order_credit", "points": 1750, "order_id": "SO-1000", "balance_after": 1750,
     "created_at": "2026-11-18T19:45:00+07:00"},
]
NEW_MEMBER_VIEW: dict[str, Any] = {
    "customer_id": "C-7",
    "tier": {"code": "member", "name": "Member", "name_vi": "Thành viên", "threshold": 0},
    "points": 0, "total_spent": 0,
    "next_tier": {"code": "silver", "name": "Silver", "name_vi": "Bạc", "threshold": 1000},
    "points_to_next_tier": 1000, "spend_to_next_tier": 1000000,
    "benefits": ["Quà sinh nhật", "Tích điểm x1 cho mỗi đơn hàng"],
    "next_tier_benefits": SILVER_BENEFITS, "tags": [], "offer": None,
}
DIAMOND_VIEW: dict[str, Any] = {
    "customer_id": "C-9",
    "tier": {"code": "diamond", "name": "Diamond", "name_vi": "Kim cương", "threshold": 3000},
    "points": 3650, "total_spent": 2950000,
    "next_tier": None, "points_to_next_tier": None, "spend_to_next_tier": None,
    "benefits": ["Quà sinh nhật hạng Kim cương", "Tăng tốc tích điểm x1,5"],
    "next_tier_benefits": [], "tags": [], "offer": None,
}
LEDGER_LABELS = {
    "order_credit": "Tích điểm đơn hàng",
    "order_reversal": "Trừ điểm do đơn hàng bị hủy hoặc trả lại",
    "order_refund": "Trừ điểm do đơn hàng được hoàn tiền",
    "crosssell_bonus": "Điểm thưởng đặt hàng sớm",
    "crosssell_bonus_reversal": "Thu hồi điểm thưởng do đơn hàng bị hủy hoặc trả lại",
}
EXPIRED = "Phiên đăng nhập Zalo đã hết hạn. Vui lòng đóng ứng dụng và mở lại."
BUSY = "Hệ thống đang bận. Vui lòng thử lại sau giây lát."
GENERIC = "Chưa thể tải thông tin hạng thành viên lúc này. Vui lòng thử lại sau."
OPEN_IN_ZALO = "Vui lòng mở trang Hạng thành viên trong ứng dụng Zalo của cửa hàng."


def text(locator: Locator) -> str:
    """A locator's visible text, with the no-break spaces of Vietnamese number formats plain."""
    return " ".join(locator.inner_text().replace("\xa0", " ").split())


def tier_card(page: Page) -> Locator:
    return page.get_by_role("region", name="Hạng của bạn")


def tier_name(page: Page) -> Locator:
    return tier_card(page).get_by_role("heading")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def open_at(page: Page, now: datetime, base_url: str, **query: str) -> Page:
    """Open the page on a phone whose clock says ``now``."""
    page.clock.set_fixed_time(now)
    return open_page(page, base_url, **query)


@pytest.fixture(scope="session")
def session_api() -> Iterator[FakeMemberApi]:
    with FakeMemberApi() as api:
        yield api


@pytest.fixture(scope="session")
def dev_page_url(session_api: FakeMemberApi, miniapp_builds: MiniappBuilds) -> Iterator[str]:
    with serve_build(miniapp_builds.dev(session_api.url)) as url:
        session_api.allowed_origins.add(origin_of(url))
        yield url


@pytest.fixture
def api(session_api: FakeMemberApi) -> Iterator[FakeMemberApi]:
    yield session_api
    session_api.reset()


def open_page(page: Page, base_url: str, **query: str) -> Page:
    page.goto(f"{base_url}?{urlencode(query)}" if query else base_url)
    return page


def test_a_member_sees_tier_spend_progress_benefits_offer_and_history(
        api: FakeMemberApi, dev_page_url: str, browser_page: Page) -> None:
    api.members["token-lan"] = Member(dict(SILVER_VIEW, offer=OFFER), deepcopy(SILVER_LEDGER))
    page = open_at(browser_page, DURING_OFFER, dev_page_url, access_token="token-lan")

    card = tier_card(page)
    expect(tier_name(page)).to_have_text("Bạc")
    assert text(page.get_by_test_id("points")) == "1.720 điểm"
    assert text(page.get_by_test_id("total-spent")) == "1.650.000 ₫"
    assert text(page.get_by_test_id("to-next-tier")) == (
        "Bạn còn 280 điểm để lên hạng Vàng (chi tiêu thêm khoảng 233.334 ₫).")
    # Silver's band is 1000..2000 points: 720 of 1000 done.
    progress = page.get_by_role("progressbar", name="Tiến độ lên hạng Vàng")
    assert progress.get_attribute("aria-valuenow") == "720"
    assert progress.get_attribute("aria-valuemax") == "1000"
    assert card.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(125, 138, 153)"

    assert page.get_by_test_id("benefits").locator("li").all_inner_texts() == SILVER_BENEFITS
    # What gold adds; "Ưu đãi cá nhân hóa" is held already and listed once, above.
    expect(page.get_by_role("heading", name="Sắp mở khóa ở hạng Vàng")).to_be_visible()
    assert page.get_by_test_id("next-tier-benefits").locator("li").all_inner_texts() == [
        "Quà sinh nhật hạng Vàng", "Tăng tốc tích điểm x1,3", "Quà tri ân định kỳ"]

    assert text(page.get_by_test_id("offer")) == (
        "Ưu đãi dành cho bạn: Đặt hàng trước 13:20 26/11 để được +100 điểm")

    rows = page.get_by_test_id("history").locator("li")
    assert [text(row) for row in rows.all()] == [
        "Điểm thưởng đặt hàng sớm Đơn SO-1003 · 10:05 24/11/2026 +100 Số dư 1.720",
        "Tích điểm đơn hàng Đơn SO-1003 · 10:05 24/11/2026 +156 Số dư 1.620",
        "Trừ điểm do đơn hàng được hoàn tiền Đơn SO-1002 · 16:30 21/11/2026 -36 Số dư 1.464",
        "Trừ điểm do đơn hàng bị hủy hoặc trả lại Đơn SO-1001 · 08:00 20/11/2026 -250 "
        "Số dư 1.500",
        "Tích điểm đơn hàng Đơn SO-1000 · 19:45 18/11/2026 +1.750 Số dư 1.750",
    ]
    # Outside Zalo and without a phone_token, there is no phone number to link.
    expect(page.get_by_role("button", name="Liên kết số điện thoại")).to_have_count(0)

    calls = [r for r in api.requests() if r.method == "GET"]
    assert sorted(r.path for r in calls) == ["/v1/me", "/v1/me/ledger"]
    assert all(r.header(TOKEN_HEADER) == "token-lan" for r in calls)
    # The header is custom, so the browser asked the API's CORS leave first.
    assert api.requests(method="OPTIONS")

    # The page scrolls inside itself; a screen as tall as its content shows all of it.
    height = page.locator(".membership").evaluate("e => e.scrollHeight")
    page.set_viewport_size({"width": page.viewport_size["width"], "height": height})
    page.screenshot(path=str(SCREENSHOT))


def test_every_ledger_kind_has_its_vietnamese_name_and_an_unknown_kind_shows_as_is(
        api: FakeMemberApi, dev_page_url: str, browser_page: Page) -> None:
    kinds = [*LEDGER_LABELS, "manual_adjustment"]
    ledger = [{"kind": kind, "points": 10, "order_id": None, "balance_after": 10,
               "created_at": "2026-11-20T08:00:00+07:00"} for kind in kinds]
    api.members["token-lan"] = Member(SILVER_VIEW, ledger)
    page = open_page(browser_page, dev_page_url, access_token="token-lan")

    rows = page.get_by_test_id("history").locator(".history__kind")
    expect(rows).to_have_count(len(kinds))
    assert rows.all_inner_texts() == [*LEDGER_LABELS.values(), "manual_adjustment"]


def test_the_top_tier_has_no_progress_bar_but_a_note(
        api: FakeMemberApi, dev_page_url: str, browser_page: Page) -> None:
    api.members["token-an"] = Member(DIAMOND_VIEW)
    page = open_page(browser_page, dev_page_url, access_token="token-an")

    expect(tier_name(page)).to_have_text("Kim cương")
    assert "hạng cao nhất" in text(page.get_by_test_id("top-tier"))
    expect(page.get_by_role("progressbar")).to_have_count(0)
    expect(page.get_by_test_id("to-next-tier")).to_have_count(0)
    expect(page.get_by_test_id("next-tier-benefits")).to_have_count(0)
    assert text(page.get_by_test_id("points")) == "3.650 điểm"


def test_a_member_with_no_orders_sees_the_first_tier_not_an_error(
        api: FakeMemberApi, dev_page_url: str, browser_page: Page) -> None:
    api.members["token-new"] = Member(NEW_MEMBER_VIEW, [])
    page = open_page(browser_page, dev_page_url, access_token="token-new")

    expect(tier_name(page)).to_have_text("Thành viên")
    assert text(page.get_by_test_id("points")) == "0 điểm"
    assert text(page.get_by_test_id("total-spent")) == "0 ₫"
    assert text(page.get_by_test_id("to-next-tier")) == (
        "Bạn còn 1.000 điểm để lên hạng Bạc (chi tiêu thêm khoảng 1.000.000 ₫).")
    assert page.get_by_role("progressbar").get_attribute("aria-valuenow") == "0"
    expect(page.get_by_test_id("history-empty")).to_be_visible()
    expect(page.get_by_test_id("offer")).to_have_count(0)
    expect(page.get_by_role("alert")).to_have_count(0)


def test_a_tier_of_a_custom_program_gets_a_neutral_colour(
        api: FakeMemberApi, dev_page_url: str, browser_page: Page) -> None:
    view = dict(DIAMOND_VIEW, tier={"code": "vip", "name": "VIP", "name_vi": "Hội viên VIP",
                                    "threshold": 5000})
    api.members["token-vip"] = Member(view)
    page = open_page(browser_page, dev_page_url, access_token="token-vip")

    card = tier_card(page)
    expect(tier_name(page)).to_have_text("Hội viên VIP")
    assert card.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(63, 70, 84)"


def test_an_offer_whose_deadline_passed_is_not_shown(
        api: FakeMemberApi, dev_page_url: str, browser_page: Page) -> None:
    api.members["token-lan"] = Member(dict(SILVER_VIEW, offer=OFFER))
    just_after = datetime(2026, 11, 26, 13, 21, tzinfo=SHOP_ZONE)
    page = open_at(browser_page, just_after, dev_page_url, access_token="token-lan")

    expect(tier_name(page)).to_have_text("Bạc")
    expect(page.get_by_test_id("offer")).to_have_count(0)


def test_the_offer_shows_the_shops_time_whatever_the_phones_zone(
        api: FakeMemberApi, dev_page_url: str, chromium: Browser) -> None:
    api.members["token-lan"] = Member(dict(SILVER_VIEW, offer=dict(OFFER, bonus_points=150)))
    with phone_page(chromium, timezone_id="America/New_York") as page:
        # 01:20 on 26/11 in New York is 13:20 in Vietnam, the shop's time.
        open_at(page, DURING_OFFER, dev_page_url, access_token="token-lan")
        assert text(page.get_by_test_id("offer")) == (
            "Ưu đãi dành cho bạn: Đặt hàng trước 13:20 26/11 để được +150 điểm")


def test_a_refused_token_asks_to_reopen_the_app(
        api: FakeMemberApi, dev_page_url: str, browser_page: Page) -> None:
    page = open_page(browser_page, dev_page_url, access_token="token-zalo-refuses")

    expect(page.get_by_role("alert")).to_have_text(EXPIRED)
    expect(page.get_by_role("button", name="Thử lại")).to_have_count(0)
    assert api.requests("/v1/me", "GET")[0].header(TOKEN_HEADER) == "token-zalo-refuses"


def test_while_the_system_is_unavailable_a_retry_loads_the_page_once_it_is_back(
        api: FakeMemberApi, dev_page_url: str, browser_page: Page) -> None:
    api.members["token-lan"] = Member(SILVER_VIEW, deepcopy(SILVER_LEDGER))
    api.status = 503
    page = open_page(browser_page, dev_page_url, access_token="token-lan")

    expect(page.get_by_role("alert")).to_have_text(BUSY)
    api.status = None
    page.get_by_role("button", name="Thử lại").click()

    expect(tier_name(page)).to_have_text("Bạc")
    expect(page.get_by_test_id("history").locator("li")).to_have_count(len(SILVER_LEDGER))
    expect(page.get_by_role("alert")).to_have_count(0)


@pytest.mark.parametrize("failure", ["404", "500", "no answer"])
def test_other_failures_get_a_friendly_message_and_a_retry(
        failure: str, api: FakeMemberApi, dev_page_url: str, browser_page: Page) -> None:
    api.members["token-lan"] = Member(SILVER_VIEW)
    if failure == "no answer":
        api.drop_connections = True
    else:
        api.status = int(failure)
    page = open_page(browser_page, dev_page_url, access_token="token-lan")

    expect(page.get_by_role("alert")).to_have_text(GENERIC)
    api.status, api.drop_connections = None, False
    page.get_by_role("button", name="Thử lại").click()
    expect(tier_name(page)).to_have_text("Bạc")


def test_without_a_token_outside_zalo_the_page_asks_to_open_it_in_zalo(
        api: FakeMemberApi, dev_page_url: str, browser_page: Page) -> None:
    page = open_page(browser_page, dev_page_url)

    expect(page.get_by_role("alert")).to_have_text(OPEN_IN_ZALO)
    assert api.requests() == []


def test_linking_the_phone_number_shows_the_member_it_finds(
        api: FakeMemberApi, dev_page_url: str, browser_page: Page) -> None:
    api.members["token-new"] = Member(NEW_MEMBER_VIEW)
    api.phone_links["phone-token-lan"] = Member(SILVER_VIEW, deepcopy(SILVER_LEDGER))
    page = open_page(browser_page, dev_page_url, access_token="token-new",
                     phone_token="phone-token-lan")
    expect(tier_name(page)).to_have_text("Thành viên")

    page.get_by_role("button", name="Liên kết số điện thoại").click()

    expect(page.get_by_role("status")).to_have_text("Đã liên kết số điện thoại.")
    expect(tier_name(page)).to_have_text("Bạc")
    assert text(page.get_by_test_id("points")) == "1.720 điểm"
    [linked] = api.requests("/v1/me/phone", "POST")
    assert linked.body == b'{"token":"phone-token-lan"}'
    assert linked.header(TOKEN_HEADER) == "token-new"


def test_a_phone_token_zalo_refuses_links_nothing_and_says_so(
        api: FakeMemberApi, dev_page_url: str, browser_page: Page) -> None:
    api.members["token-new"] = Member(NEW_MEMBER_VIEW)
    page = open_page(browser_page, dev_page_url, access_token="token-new",
                     phone_token="phone-token-stale")

    page.get_by_role("button", name="Liên kết số điện thoại").click()

    expect(page.get_by_role("status")).to_have_text(
        "Zalo chưa xác nhận được số điện thoại của bạn. Vui lòng thử lại.")
    expect(tier_name(page)).to_have_text("Thành viên")


def _bundle(folder: Path) -> str:
    return "\n".join(path.read_text() for path in sorted(folder.rglob("*.js")))


def test_the_release_build_never_takes_a_token_from_the_url(
        api: FakeMemberApi, session_api: FakeMemberApi, miniapp_builds: MiniappBuilds,
        browser_page: Page) -> None:
    release = miniapp_builds.release(session_api.url)
    dev = miniapp_builds.dev(session_api.url)
    # The dev bundle shows what reading the URL's parameters compiles to, so that the check on
    # the release bundle looks for something that would be there.
    for marker in ('"access_token"', '"phone_token"'):
        in_dev, in_release = marker in _bundle(dev), marker in _bundle(release)
        assert in_dev, f"{marker} is not in the dev bundle: the check below would prove nothing"
        assert not in_release, f"the release bundle reads {marker}"

    api.members["token-lan"] = Member(SILVER_VIEW)
    with serve_build(release) as url:
        api.allowed_origins.add(origin_of(url))
        page = open_page(browser_page, url, access_token="token-lan", phone_token="p")
        expect(page.get_by_role("alert")).to_have_text(OPEN_IN_ZALO)
    assert api.requests() == []
