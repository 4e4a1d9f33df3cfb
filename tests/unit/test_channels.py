"""The channel plan and Zalo's caps, rule by rule, with no database and no Zalo."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from loyalty.domain.channels import (
    Contacts,
    SkipReason,
    Window,
    calendar_month,
    cap_reason,
    in_night_ban,
    months_before,
    next_channel,
    plan_for,
    recipient,
    template_data,
    window_at,
)
from loyalty.domain.crosssell import nudge_fields
from loyalty.domain.messages import Channel, MessageKind
from loyalty.program import MessageChannels, Program, ProgramError, parse_program

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 11, 23, 9, tzinfo=ZONE)
CS, TEMPLATE, ZNS, LOG = Channel.CONSULTATION, Channel.TEMPLATE, Channel.ZNS, Channel.LOG
PLAN = (CS, TEMPLATE, ZNS)
BOTH = Contacts(zalo_user_id="u1", phone="0901234567")


@pytest.mark.parametrize(("age", "window"), [
    (timedelta(0), Window.FREE),
    (timedelta(hours=47, minutes=59), Window.FREE),
    (timedelta(hours=48), Window.PAID),
    (timedelta(days=6, hours=23), Window.PAID),
    (timedelta(days=7), Window.CLOSED),
    (timedelta(minutes=-2), Window.FREE),  # Zalo's clock a little ahead of ours
])
def test_the_window_is_free_for_48_hours_and_closes_after_7_days(
        age: timedelta, window: Window) -> None:
    assert window_at(NOW - age, NOW) is window


def test_a_member_who_never_interacted_has_a_closed_window() -> None:
    assert window_at(None, NOW) is Window.CLOSED


def test_each_channel_addresses_its_own_contact() -> None:
    assert [recipient(channel, BOTH) for channel in (CS, TEMPLATE, ZNS, LOG)] == \
        ["u1", "u1", "0901234567", "u1"]
    phone_only = Contacts(zalo_user_id=None, phone="0901234567")
    assert [recipient(channel, phone_only) for channel in (CS, TEMPLATE, ZNS, LOG)] == \
        [None, None, "0901234567", "0901234567"]


def _next(window: Window, contacts: Contacts = BOTH, refused: tuple[Channel, ...] = (),
          plan: tuple[Channel, ...] = PLAN) -> Channel | None:
    return next_channel(plan, refused=refused, contacts=contacts, window=lambda: window)


def test_consultation_only_while_the_window_is_free() -> None:
    assert _next(Window.FREE) is CS
    for window in (Window.PAID, Window.CLOSED, Window.UNKNOWN):
        assert _next(window) is TEMPLATE


def test_a_refused_channel_passes_the_message_on_and_never_comes_back() -> None:
    assert _next(Window.FREE, refused=(CS,)) is TEMPLATE
    assert _next(Window.FREE, refused=(CS, TEMPLATE)) is ZNS
    assert _next(Window.FREE, refused=PLAN) is None


def test_without_an_oa_user_id_only_zns_reaches_the_member_and_the_window_is_not_asked(
        ) -> None:
    asked: list[int] = []

    def window() -> Window:
        asked.append(1)
        return Window.FREE

    phone_only = Contacts(zalo_user_id=None, phone="0901234567")
    assert next_channel(PLAN, refused=(), contacts=phone_only, window=window) is ZNS
    assert next_channel((CS, TEMPLATE), refused=(), contacts=phone_only, window=window) is None
    assert asked == []


def test_the_window_is_asked_only_when_the_plan_reaches_the_consultation_step() -> None:
    asked: list[int] = []

    def window() -> Window:
        asked.append(1)
        return Window.FREE

    assert next_channel((TEMPLATE, CS), refused=(), contacts=BOTH, window=window) is TEMPLATE
    assert asked == []


def test_the_plan_leaves_out_channels_the_shop_has_not_set_up() -> None:
    default = Program()
    assert plan_for(default, MessageKind.NUDGE, to_zalo=True) == (CS,)  # no template id
    with_template = parse_program({"channels": {"nudge": {"template_id": "123"}}})
    assert plan_for(with_template, MessageKind.NUDGE, to_zalo=True) == (CS, TEMPLATE)
    assert plan_for(with_template, MessageKind.BIRTHDAY, to_zalo=True) == (CS,)
    with_zns = parse_program({"channels": {"zns_enabled": True,
                                           "nudge": {"template_id": "123"}}})
    assert plan_for(with_zns, MessageKind.NUDGE, to_zalo=True) == PLAN
    reordered = parse_program({"channels": {"zns_enabled": True, "nudge": {
        "template_id": "123", "plan": ["zns", "cs"]}}})
    assert plan_for(reordered, MessageKind.NUDGE, to_zalo=True) == (ZNS, CS)


def test_without_zalo_credentials_the_plan_is_the_log() -> None:
    program = parse_program({"channels": {"nudge": {"template_id": "123"}}})
    assert plan_for(program, MessageKind.NUDGE, to_zalo=False) == (LOG,)
    assert _next(Window.UNKNOWN, Contacts(zalo_user_id=None, phone="0901"), plan=(LOG,)) \
        is LOG
    assert _next(Window.UNKNOWN, Contacts(zalo_user_id=None, phone=None), plan=(LOG,)) is None


@pytest.mark.parametrize(("section", "key"), [
    ({"nudge": {"plan": ["cs", "sms"]}}, "channels.nudge.plan[1]"),
    ({"nudge": {"plan": ["log"]}}, "channels.nudge.plan"),
    ({"nudge": {"plan": ["cs", "cs"]}}, "channels.nudge.plan"),
    ({"nudge": {"plan": []}}, "channels.nudge.plan"),
    ({"nudge": {"template_params": {"points": "điểm"}}}, "channels.nudge.template_params"),
    ({"birthday": {"template_params": {"points": "points"}}},
     "channels.birthday.template_params"),
    ({"promotional_per_month": -1}, "channels.promotional_per_month"),
    ({"nudge": {"template": "123"}}, "channels.nudge.template"),
])
def test_a_bad_channel_section_is_refused_naming_the_key(section: dict, key: str) -> None:
    with pytest.raises(ProgramError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_program({"channels": section})


def test_template_data_has_the_same_numbers_as_the_text_under_the_templates_names() -> None:
    program = parse_program({"channels": {"nudge": {"template_params": {
        "points": "diem", "points_to_next_tier": "con_thieu", "next_tier_name": "hang_moi",
        "bonus_points": "thuong", "bonus_deadline": "han", "name": "ten"}}}})
    fields = nudge_fields(program, points=1720, name=None,
                          deadline=datetime(2026, 11, 26, 9, tzinfo=ZONE), zone=ZONE)
    data = template_data(fields, program.channels.nudge.template_params)
    assert data == {"diem": "1720", "con_thieu": "280", "hang_moi": "Vàng", "thuong": "100",
                    "han": "09:00 26/11/2026", "ten": "bạn"}
    text = program.messages.text(MessageKind.NUDGE, fields)
    assert all(value in text for key, value in data.items() if key != "ten")
    default = Program().channels.nudge.template_params
    assert set(template_data(fields, default)) == {
        "points", "points_to_next_tier", "next_tier", "bonus", "deadline"}


def test_months_before_keeps_the_wall_clock_and_clamps_the_day() -> None:
    assert months_before(NOW, 6) == datetime(2026, 5, 23, 9, tzinfo=ZONE)
    assert months_before(datetime(2026, 8, 31, tzinfo=ZONE), 6) == \
        datetime(2026, 2, 28, tzinfo=ZONE)
    assert months_before(datetime(2026, 1, 15, tzinfo=ZONE), 1) == \
        datetime(2025, 12, 15, tzinfo=ZONE)
    assert months_before(datetime(2026, 12, 15, tzinfo=ZONE), -1) == \
        datetime(2027, 1, 15, tzinfo=ZONE)


def test_the_calendar_month_is_the_shops() -> None:
    # 23:30 UTC on 30 November is already 1 December in Vietnam.
    late = datetime(2026, 11, 30, 23, 30, tzinfo=ZoneInfo("UTC"))
    assert calendar_month(late, ZONE) == (datetime(2026, 12, 1, tzinfo=ZONE),
                                          datetime(2027, 1, 1, tzinfo=ZONE))


def test_promotional_caps() -> None:
    program = Program()
    nudge, birthday = program.channels.nudge, program.channels.birthday
    recent = NOW - timedelta(days=10)

    def reason(setup: MessageChannels = nudge, month: int = 0,
               last: datetime | None = recent) -> SkipReason | None:
        return cap_reason(setup, program, promotional_this_month=month, last_contact=last,
                          now=NOW)

    assert reason(month=3) is None
    assert reason(month=4) is SkipReason.MONTHLY_CAP
    assert reason(last=months_before(NOW, 6) + timedelta(minutes=1)) is None
    assert reason(last=months_before(NOW, 6) - timedelta(minutes=1)) is \
        SkipReason.NO_RECENT_CONTACT
    assert reason(last=None) is SkipReason.NO_RECENT_CONTACT
    # Not promotional (a birthday gift by default): no caps.
    assert reason(birthday, month=9, last=None) is None
    generous = parse_program({"channels": {"promotional_per_month": 6, "contact_months": 12}})
    assert cap_reason(generous.channels.nudge, generous, promotional_this_month=5,
                      last_contact=NOW - timedelta(days=300), now=NOW) is None


@pytest.mark.parametrize(("hour", "minute", "banned"), [
    (21, 59, False), (22, 0, True), (23, 30, True), (0, 0, True), (5, 59, True),
    (6, 0, False), (9, 0, False)])
def test_the_night_ban_spans_midnight(hour: int, minute: int, banned: bool) -> None:
    moment = datetime(2026, 11, 23, hour, minute, tzinfo=ZONE)
    assert in_night_ban(moment, ZONE, time(22), time(6)) is banned
    assert in_night_ban(moment, ZONE, time(0), time(0)) is False  # switched off
