"""The cross-sell holdout and the campaign's results on the real database (both backends),
with Zalo played by the local fake server.

The worked example runs each step in this process at a time of its own (the scan, each
send, each order event), so that every figure of the report is known in advance.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from devtools.fake_zalo import FakeZalo
from loyalty.api import create_app
from loyalty.bootstrap import Loyalty
from loyalty.domain.holdout import Group, group_of
from loyalty.services.campaign_results import BadRange, campaign_results
from loyalty.services.crosssell import run_scan
from loyalty.services.events import handle_order_event
from loyalty.services.outbox import send_message
from loyalty.services.stats import read_stats, stats_json
from loyalty.storage.db import transaction
from loyalty.storage.tables import CrosssellAssignment, Customer, LedgerEntry, Order
from loyalty.storage.zalo_tokens import DbTokenStore
from tests.support.browser import new_page
from tests.support.events import order_event
from tests.support.http_server import serving
from tests.support.zalo_shop import zalo_settings

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
DAY = date(2026, 11, 23)
SCAN = datetime(2026, 11, 23, 9, 0, tzinfo=ZONE)
SENT = SCAN + timedelta(minutes=1)
HOLDOUT = 50
TOKEN = {"Authorization": "Bearer test-api-token"}


class Clock:
    """The shop's "now", moved by the test."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def shop(loyalty: Loyalty, fake_zalo: FakeZalo, tmp_path: Path) -> Iterator[Loyalty]:
    program = tmp_path / "program.toml"
    program.write_text(f"[crosssell]\nholdout_percent = {HOLDOUT}\n", encoding="utf-8")
    shop = Loyalty.from_settings(zalo_settings(loyalty.settings, fake_zalo,
                                               program_file=program))
    shop.clock = Clock(SCAN)
    DbTokenStore(shop.sessions, shop.settings.token_keys()).save(fake_zalo.issue_tokens())
    fake_zalo.clear_failures()
    yield shop
    shop.engine.dispose()


def ids_in(group: Group, prefix: str, count: int) -> list[str]:
    """Member ids the holdout puts in ``group`` on DAY (the scan must agree)."""
    found = [f"{prefix}{n}" for n in range(200)
             if group_of(f"{prefix}{n}", DAY, HOLDOUT) is group]
    return found[:count]


def add_members(shop: Loyalty, ids: list[str], points: int) -> None:
    with transaction(shop.sessions) as session:
        for customer_id in ids:
            session.add(Customer(id=customer_id, tier="silver", points=points,
                                 zalo_user_id=f"zalo-{customer_id}", name="Lan",
                                 created_at=SCAN - timedelta(days=90),
                                 updated_at=SCAN - timedelta(days=90)))
            session.flush()
            # The order that earned them: members in contact within 6 months, as Zalo's
            # rule for promotional messages wants.
            session.add(Order(order_id=f"seed-{customer_id}", customer_id=customer_id,
                              status="delivered", payment_status="paid", total_payable=0,
                              shipping_fee=0, placed_at=SCAN - timedelta(days=90),
                              occurred_at=SCAN - timedelta(days=90), earned=True,
                              updated_at=SCAN - timedelta(days=90)))
            session.add(LedgerEntry(customer_id=customer_id, kind="order_credit",
                                    points=points, order_id=f"seed-{customer_id}",
                                    tier="member", multiplier="1.0", balance_after=points,
                                    created_at=SCAN - timedelta(days=90)))


def order(shop: Loyalty, order_id: str, customer_id: str, total: int, placed: datetime,
          at: datetime, status: str = "delivered", payment: str = "paid") -> None:
    """One order event, applied at ``at``."""
    event = order_event(order_id, customer_id, status, payment, total=total, shipping=0)
    event["placed_at"], event["occurred_at"] = placed.isoformat(), at.isoformat()
    shop.clock.now = at  # type: ignore[attr-defined]
    assert handle_order_event(shop, event, source="queue").outcome != "refused"


def run_the_example(shop: Loyalty, fake_zalo: FakeZalo) -> None:
    """Five nudged (N1–N5) and three held out (H1–H3), 1,800 points each (Silver, 200 from
    Gold, earning ×1.2)."""
    nudged = dict(zip(("N1", "N2", "N3", "N4", "N5"), ids_in(Group.NUDGED, "N", 5),
                      strict=True))
    held = dict(zip(("H1", "H2", "H3"), ids_in(Group.HELD_OUT, "H", 3), strict=True))
    add_members(shop, [*nudged.values(), *held.values()], 1800)
    add_members(shop, ["far"], 500)  # not near a tier: never selected
    fake_zalo.fail_user(f"zalo-{nudged['N4']}", -213)  # not a follower: fails for good

    report = run_scan(shop, SCAN)
    assert (report.selected, report.held_out, len(report.queued)) == (8, 3, 5)
    shop.clock.now = SENT  # type: ignore[attr-defined]
    statuses = [send_message(shop, message_id, shop.sender, shop.on_sent).status
                for message_id in report.queued]
    assert sorted(statuses) == ["failed", "sent", "sent", "sent", "sent"]

    hours = timedelta(hours=1)
    n1, n2, n3, n4, n5 = nudged.values()
    # N1 converts: 500,000 placed 10 h after the nudge, +600 and the +100 bonus: Gold at 30 h.
    order(shop, "O-N1", n1, 500_000, SENT + 10 * hours, SENT + 30 * hours)
    # N2 orders exactly 72 h after the scan (the last moment that counts: +24 and the
    # bonus), then 73 h after the nudge: no conversion, no bonus, but Gold at 80 h (in the
    # period). An order inside the window that is never paid does not count either.
    order(shop, "O-N2-edge", n2, 20_000, SCAN + 72 * hours, SCAN + 75 * hours)
    order(shop, "O-N2-late", n2, 200_000, SENT + 73 * hours, SENT + 80 * hours)
    order(shop, "O-N2-unpaid", n2, 900_000, SENT + hours, SENT + 2 * hours,
          "pending", "unpaid")
    # N3's order inside the window earns +120 and the bonus (Gold at 20 h), then is
    # cancelled: no conversion, no tier reached, the bonus credited and reversed.
    order(shop, "O-N3", n3, 100_000, SENT + 5 * hours, SENT + 20 * hours)
    order(shop, "O-N3", n3, 100_000, SENT + 5 * hours, SENT + 50 * hours,
          "cancelled", "refunded")
    # N4's nudge failed; N4 is still in the nudged group, counted from the scan.
    order(shop, "O-N4", n4, 60_000, SCAN + 3 * hours, SCAN + 30 * hours)
    # N5 converts below the tier: +48 and the bonus.
    order(shop, "O-N5", n5, 40_000, SENT + 2 * hours, SENT + 26 * hours)
    # Held out: H1 converts (300,000, +360: Gold at 40 h); H2's order was placed before the
    # scan; H3's a microsecond after its 72 hours.
    h1, h2, h3 = held.values()
    order(shop, "O-H1", h1, 300_000, SCAN + 20 * hours, SCAN + 40 * hours)
    order(shop, "O-H2", h2, 50_000, SCAN - 2 * hours, SCAN + 10 * hours)
    # The next day's scan selects nobody: the nudged and the held out are kept out alike.
    assert run_scan(shop, SCAN + timedelta(days=1)).selected == 0
    order(shop, "O-H3", h3, 30_000, SCAN + 72 * hours + timedelta(microseconds=1),
          SCAN + 90 * hours)


NUDGED = {"members": 5, "converted": 4, "spend": 620_000, "reached_next_tier_72h": 1,
          "reached_next_tier_in_period": 2, "bonus_credited": 400, "bonus_reversed": 100,
          "messages": {"sent": 4, "failed": 1, "unknown": 0}}
HELD_OUT = {"members": 3, "converted": 1, "spend": 300_000, "reached_next_tier_72h": 1,
            "reached_next_tier_in_period": 1, "bonus_credited": 0, "bonus_reversed": 0,
            "messages": {}}
# 4/5 - 1/3; Newcombe's hybrid score interval of (4/5, 1/3) as statsmodels computes it
# (confint_proportions_2indep(4, 5, 1, 3, method="newcomb")); 620,000/5 - 300,000/3 VND.
UPLIFT = {"conversion": 0.4667, "ci95": [-0.1585, 0.784], "extra_spend_per_nudged": 24_000}
EMPTY = {"members": 0, "converted": 0, "spend": 0, "reached_next_tier_72h": 0,
         "reached_next_tier_in_period": 0, "bonus_credited": 0, "bonus_reversed": 0,
         "messages": {}}
NO_UPLIFT = {"conversion": None, "ci95": None, "extra_spend_per_nudged": None}


def test_worked_example_field_by_field(shop: Loyalty, fake_zalo: FakeZalo) -> None:
    run_the_example(shop, fake_zalo)
    shop.clock.now = SENT + timedelta(hours=100)  # type: ignore[attr-defined]
    report = campaign_results(shop, date(2026, 11, 1), date(2026, 11, 30)).to_json()
    assert (report["from"], report["to"]) == ("2026-11-01", "2026-11-30")
    assert report["groups"] == {"nudged": NUDGED, "held_out": HELD_OUT}
    assert report["uplift"] == UPLIFT
    first, second = report["runs"]
    assert first == {"day": "2026-11-23", "selected": 8, "nudged": 5, "held_out": 3,
                     "window_closed": True, "period_closed": False,
                     "groups": {"nudged": NUDGED, "held_out": HELD_OUT}, "uplift": UPLIFT}
    assert second == {"day": "2026-11-24", "selected": 0, "nudged": 0, "held_out": 0,
                      "window_closed": True, "period_closed": False,
                      "groups": {"nudged": {**EMPTY, "messages": {
                          "sent": 0, "failed": 0, "unknown": 0}}, "held_out": EMPTY},
                      "uplift": NO_UPLIFT}
    # The Prometheus counter of the selected: the same members, all time.
    assert stats_json(read_stats(shop))["crosssell_selected"] == {"nudged": 5, "held_out": 3}


def test_windows_close_after_72_hours_and_after_the_tag_period(
        shop: Loyalty, fake_zalo: FakeZalo) -> None:
    run_the_example(shop, fake_zalo)

    def closed(now: datetime) -> tuple[bool, bool]:
        shop.clock.now = now  # type: ignore[attr-defined]
        [run] = campaign_results(shop, DAY, DAY).runs
        return run.window_closed, run.period_closed

    # Both groups' windows run from the scan.
    assert closed(SCAN + timedelta(hours=72) - timedelta(microseconds=1)) == (False, False)
    assert closed(SCAN + timedelta(hours=72)) == (True, False)
    assert closed(SCAN + timedelta(days=15) - timedelta(microseconds=1)) == (True, False)
    assert closed(SCAN + timedelta(days=15)) == (True, True)


def test_the_report_range_and_its_default(shop: Loyalty, fake_zalo: FakeZalo) -> None:
    run_the_example(shop, fake_zalo)
    assert [r.day for r in campaign_results(shop, DAY, DAY).runs] == [DAY]
    assert campaign_results(shop, date(2026, 12, 1), date(2026, 12, 31)).runs == ()
    shop.clock.now = SCAN + timedelta(days=29)  # type: ignore[attr-defined]
    default = campaign_results(shop)
    assert (default.start, default.end) == (DAY, DAY + timedelta(days=29))
    assert len(default.runs) == 2
    with pytest.raises(BadRange, match="after"):
        campaign_results(shop, DAY, DAY - timedelta(days=1))


def test_assignment_is_recorded_once_and_is_the_domains(shop: Loyalty) -> None:
    ids = [f"M{n}" for n in range(40)]
    add_members(shop, ids, 1900)
    first = run_scan(shop, SCAN)
    # The same day again, and at the same time: nobody is assigned twice.
    assert run_scan(shop, SCAN + timedelta(hours=2)).selected == 0
    with shop.sessions() as session:
        rows = list(session.scalars(select(CrosssellAssignment)))
    assert len(rows) == 40 and len({row.customer_id for row in rows}) == 40
    assert {row.customer_id for row in rows if row.held_out} == {
        customer_id for customer_id in ids
        if group_of(customer_id, DAY, HOLDOUT) is Group.HELD_OUT}
    assert first.held_out == sum(row.held_out for row in rows)
    assert len(first.queued) == 40 - first.held_out
    assert all((row.points, row.next_threshold) == (1900, 2000) for row in rows)


def test_cli_and_http_give_the_same_report(shop: Loyalty, fake_zalo: FakeZalo,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from loyalty import cli

    run_the_example(shop, fake_zalo)
    shop.clock.now = SENT + timedelta(hours=100)  # type: ignore[attr-defined]
    monkeypatch.setattr(cli, "get_loyalty", lambda: shop)
    runner = CliRunner()
    as_json = runner.invoke(cli.main, ["crosssell", "report", "--from", "2026-11-01",
                                       "--to", "2026-11-30", "--json"])
    assert as_json.exit_code == 0, as_json.output
    document: dict[str, Any] = json.loads(as_json.output)

    client = TestClient(create_app(shop))
    answer = client.get("/v1/campaigns/crosssell/report?from=2026-11-01&to=2026-11-30",
                        headers=TOKEN)
    assert answer.status_code == 200 and answer.json() == document
    assert document["groups"]["nudged"] == NUDGED and document["uplift"] == UPLIFT

    table = runner.invoke(cli.main, ["crosssell", "report", "--from", "2026-11-01",
                                     "--to", "2026-11-30"])
    assert table.exit_code == 0, table.output
    assert "+46.7 (-15.8 to +78.4)" in table.output, table.output
    assert "2026-11-23" in table.output and "620,000" in table.output

    assert client.get("/v1/campaigns/crosssell/report").status_code == 401
    assert client.get("/v1/campaigns/crosssell/report",
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    bad = client.get("/v1/campaigns/crosssell/report?from=2026-11-30&to=2026-11-01",
                     headers=TOKEN)
    assert bad.status_code == 422 and "from" in bad.text
    assert client.get("/v1/campaigns/crosssell/report?from=yesterday",
                      headers=TOKEN).status_code == 422


# --- the console page in a real Chromium (tests/support/browser.py) -------------------

@contextmanager
def desktop_page(browser: Browser) -> Iterator[Page]:
    """A page on a marketer's screen, in its own context; uncaught page errors fail."""
    with new_page(browser, viewport={"width": 1100, "height": 1400}) as page:
        yield page


def test_console_page_shows_chart_and_table_and_refuses_without_the_token(
        shop: Loyalty, fake_zalo: FakeZalo, chromium: Browser, tmp_path: Path) -> None:
    run_the_example(shop, fake_zalo)
    shop.clock.now = SENT + timedelta(hours=100)  # type: ignore[attr-defined]
    with serving(create_app(shop)) as (host, port), desktop_page(chromium) as page:
        base = f"http://{host}:{port}"
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{base}/console/campaigns")
        expect(page.locator("#sign-in")).to_be_visible()
        expect(page.locator("#results")).to_be_hidden()

        page.fill("#token", "wrong-token")
        page.click("#token-form button")
        expect(page.locator("#refused")).to_be_visible()
        expect(page.locator("#results")).to_be_hidden()
        assert page.locator("#runs tbody tr").count() == 0
        assert page.evaluate("sessionStorage.getItem('loyalty-api-token')") is None

        page.fill("#token", "test-api-token")
        page.click("#token-form button")
        expect(page.locator("#results")).to_be_visible()
        expect(page.locator("#runs tbody tr")).to_have_count(2)
        first = page.locator("#runs tbody tr").first.locator("td").all_inner_texts()
        assert first == ["2026-11-23", "8", "5", "3", "80.0%", "33.3%",
                         "+46.7 (-15.8 to +78.4)", "24,000", "72 h closed, tag period open"]
        expect(page.locator("#uplift")).to_contain_text("+46.7 (-15.8 to +78.4)")
        groups = page.locator("#groups tbody tr").nth(1).locator("td").all_inner_texts()
        assert groups == ["Converted within 72 h", "4 (80.0%)", "1 (33.3%)"]

        # The chart: one line per group, a point per day with members, at its conversion.
        chart = page.locator("#chart svg")
        expect(chart.locator("polyline")).to_have_count(2)
        titles = chart.locator("circle title").all_text_contents()
        assert sorted(titles) == ["2026-11-23 Held out: 33.3%", "2026-11-23 Nudged: 80.0%"]
        nudged_y = float(chart.locator("circle.nudged").get_attribute("cy") or "nan")
        held_y = float(chart.locator("circle.held_out").get_attribute("cy") or "nan")
        assert nudged_y < held_y  # higher conversion is drawn higher
        page.screenshot(path=str(tmp_path / "console.png"), full_page=True)

        # The token stays in the tab, never in a URL; a reload needs no new sign-in.
        assert not [url for url in requested if "test-api-token" in url]
        page.reload()
        expect(page.locator("#runs tbody tr")).to_have_count(2)
        page.click("#forget")
        expect(page.locator("#sign-in")).to_be_visible()
        page.reload()
        expect(page.locator("#results")).to_be_hidden()
        expect(page.locator("#sign-in")).to_be_visible()
