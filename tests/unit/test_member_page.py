"""The rules behind the member's page, with no database: the view's additions, the live offer,
the phone spellings a shared number is looked up by, and credentials kept out of logs."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.domain.crosssell import bonus_offer, earns_bonus
from loyalty.domain.events import CustomerInfo
from loyalty.domain.member_view import member_view
from loyalty.logs import JsonFormatter
from loyalty.program import Program
from loyalty.zalo import normalise_phone, phone_spellings

PROGRAM = Program()
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")


def test_the_view_names_tiers_in_vietnamese_with_thresholds() -> None:
    view = member_view(PROGRAM, "C-1", 1720, 1_650_000).to_json(ZONE)
    assert view["tier"] == {"code": "silver", "name": "Silver", "name_vi": "Bạc",
                            "threshold": 1000}
    assert view["next_tier"] == {"code": "gold", "name": "Gold", "name_vi": "Vàng",
                                 "threshold": 2000}
    assert view["offer"] is None
    top = member_view(PROGRAM, "C-2", 5000, 0).to_json(ZONE)
    assert top["tier"]["name_vi"] == "Kim cương" and top["next_tier"] is None


def test_someone_not_linked_yet_stands_at_the_first_tier_with_nothing() -> None:
    view = member_view(PROGRAM, None, 0, 0).to_json(ZONE)
    assert view["customer_id"] is None and view["points"] == 0 and view["total_spent"] == 0
    assert view["tier"]["code"] == "member" and view["points_to_next_tier"] == 1000
    assert view["spend_to_next_tier"] == 1_000_000 and view["tags"] == []


def test_the_offer_runs_72_hours_from_the_send_and_is_shown_in_the_shops_zone() -> None:
    sent_at = datetime.fromisoformat("2026-11-23T06:20:00+00:00")  # 13:20 in Hồ Chí Minh
    offer = bonus_offer(PROGRAM, sent_at)
    assert offer.bonus_points == 100
    # Its deadline is the last moment an order still earns the bonus: the same rule.
    assert earns_bonus(PROGRAM, sent_at, offer.order_before)
    assert not earns_bonus(PROGRAM, sent_at, offer.order_before + timedelta(seconds=1))
    view = member_view(PROGRAM, "C-1", 1720, 0, offer=offer).to_json(ZONE)
    assert view["offer"] == {"bonus_points": 100, "order_before": "2026-11-26T13:20:00+07:00"}


@pytest.mark.parametrize("spelling", ["0901234567", "84901234567", "+84901234567",
                                      "0084901234567", "840901234567"])
def test_every_spelling_of_a_number_is_found_by_its_normal_form(spelling: str) -> None:
    assert spelling in phone_spellings(normalise_phone(spelling))


# Prefixes near the ones that normalise, so that most draws are numbers, not noise.
EVENT_PHONES = st.builds(
    str.__add__,
    st.sampled_from(["", "+", "0", "00", "8", "84", "+84", "0084", "840", "+840", "00840",
                     "+0", "+00", "4", "+8"]),
    st.from_regex(r"[0-9]{6,12}", fullmatch=True),
).filter(lambda phone: re.fullmatch(r"\+?[0-9]{8,15}", phone) is not None)


@given(EVENT_PHONES)
def test_phone_spellings_are_exactly_the_event_phones_that_normalise_to_a_number(
        phone: str) -> None:
    # Any phone an order event may carry (CustomerInfo's pattern) …
    CustomerInfo(id="C-1", phone=phone)
    try:
        normalised = normalise_phone(phone)
    except ValueError:
        return
    # … is among the spellings of its normal form, and every spelling normalises back.
    assert phone in phone_spellings(normalised)
    assert {normalise_phone(spelling) for spelling in phone_spellings(normalised)} == \
        {normalised}


def test_log_lines_lose_credentials_in_urls_but_keep_the_rest() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s" %d',
                               ("127.0.0.1", "GET", "/miniapp/?lang=vi&access_token=abc.DEF-1",
                                200), None)
    assert json.loads(JsonFormatter().format(record))["message"] == \
        '127.0.0.1 - "GET /miniapp/?lang=vi&access_token=[redacted]" 200'
    line = JsonFormatter().format(logging.LogRecord(
        "loyalty", logging.INFO, "", 0, "opened /x?code=secret-code&page=2", None, None))
    assert "secret-code" not in line and "code=[redacted]&page=2" in line
