"""The channel plan through real workers, real Redis and the database, with Zalo played by
the local fake that answers the quota call and refuses as Zalo does (SPEC §5 "channel
plan"): the consultation message inside the free window, the template outside it, ZNS by
phone, a refusal falling through once, Zalo's caps, and a worker killed between channels."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import select

from devtools.fake_zalo import CS_PATH, QUOTA_PATH, TEMPLATE_PATH, ZNS_PATH, FakeZalo
from devtools.processes import WorkerProcess, wait_for
from loyalty.bootstrap import Loyalty
from loyalty.domain.channels import calendar_month
from loyalty.services.birthdays import run_birthdays
from loyalty.services.crosssell import run_scan
from loyalty.services.members import show_member
from loyalty.services.outbox import relay, send_message
from loyalty.services.stats import read_stats, stats_json
from loyalty.settings import Settings
from loyalty.storage.db import transaction
from loyalty.storage.tables import CampaignRun, CustomerTag, Message, MessageAttempt
from tests.support import zalo_shop
from tests.test_crosssell import _unacked, add_member, messages, scan, sent_to, wait_status

pytestmark = pytest.mark.workers

TEMPLATE_ID = "tpl-nudge-42"
# A shop that set up the nudge's template and ZNS; a tag period of one day lets one
# member be nudged five times in a month; the night ban is off, since these sends run at
# whatever time the suite does (test_night_ban_holds_promotional_messages checks it).
PROGRAM = f"""
[crosssell]
tag_days = 1
[channels]
zns_enabled = true
night_starts = 00:00:00
night_ends = 00:00:00
[channels.nudge]
template_id = "{TEMPLATE_ID}"
"""


def _program(tmp_path_factory: pytest.TempPathFactory, text: str) -> Path:
    path = tmp_path_factory.mktemp("program") / "program.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def plan_settings(migrated: Settings, fake_zalo: FakeZalo,
                  tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return zalo_shop.zalo_settings(migrated, fake_zalo,
                                   program_file=_program(tmp_path_factory, PROGRAM),
                                   zalo_timeout_seconds=5.0)


@pytest.fixture(scope="module")
def plan_workers(plan_settings: Settings, workers: list[WorkerProcess],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorkerProcess]]:
    """Workers that run this module's program against the fake Zalo."""
    with zalo_shop.workers_with(plan_settings, workers, tmp_path_factory.mktemp("plan-worker-logs"),
                                "p") as started:
        yield started


@pytest.fixture
def shop(loyalty: Loyalty, plan_settings: Settings, fake_zalo: FakeZalo,
         plan_workers: list[WorkerProcess]) -> Iterator[Loyalty]:
    yield from zalo_shop.open_shop(plan_settings, fake_zalo)


def attempts(shop: Loyalty, message_id: int) -> list[tuple[str, str, int | None]]:
    with shop.sessions() as session:
        return [(a.channel, a.outcome, a.error_code) for a in session.scalars(
            select(MessageAttempt).where(MessageAttempt.message_id == message_id)
            .order_by(MessageAttempt.id))]


def a_phone() -> str:
    return "09" + "".join(random.choices("0123456789", k=8))


def test_inside_the_free_window_a_consultation_message(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    customer_id, user_id = add_member(shop, 1720)
    fake_zalo.set_window(user_id, "free")
    scan(celery_sender)
    nudge = wait_status(shop, customer_id, "sent")
    [record] = sent_to(fake_zalo, user_id)
    assert record["path"] == CS_PATH and "1720 điểm" in record["text"]
    assert (nudge.channel, nudge.recipient) == ("cs", user_id)
    assert attempts(shop, nudge.id) == [("cs", "sent", None)]
    assert [tag.name for tag in show_member(shop, customer_id).tags] == ["Đã gửi tin"]
    assert stats_json(read_stats(shop))["nudge_sent_by_channel"]["cs"] == 1


@pytest.mark.parametrize("window", ["paid", "closed", "never", "garbled", "unreadable"])
def test_outside_the_free_window_the_template_with_the_members_numbers(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery, window: str) -> None:
    customer_id, user_id = add_member(shop, 1720)
    if window == "unreadable":  # the quota call fails: the plan goes on without waiting
        fake_zalo.fail_next(QUOTA_PATH, http_status=500)
    else:
        fake_zalo.set_window(user_id, window)
    quota_calls = _calls(fake_zalo, QUOTA_PATH)
    scan(celery_sender)
    nudge = wait_status(shop, customer_id, "sent")
    [record] = sent_to(fake_zalo, user_id)
    assert (record["path"], record["template_id"]) == (TEMPLATE_PATH, TEMPLATE_ID)
    deadline = record["template_data"]["deadline"]
    assert record["template_data"] == {"points": "1720", "points_to_next_tier": "280",
                                       "next_tier": "Vàng", "bonus": "100",
                                       "deadline": deadline}
    assert f"trước {deadline}" in nudge.text  # the same numbers as the text
    assert (nudge.channel, attempts(shop, nudge.id)) == ("template",
                                                         [("template", "sent", None)])
    assert _calls(fake_zalo, QUOTA_PATH) == quota_calls + 1
    assert [tag.name for tag in show_member(shop, customer_id).tags] == ["Đã gửi tin"]
    assert stats_json(read_stats(shop))["nudge_sent_by_channel"]["template"] == 1


def _calls(fake: FakeZalo, path: str) -> int:
    return sum(1 for called, _ in fake.access_log if called == path)


def test_a_member_with_only_a_phone_gets_zns_when_enabled_and_is_skipped_otherwise(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    phone = a_phone()
    customer_id, _ = add_member(shop, 990, reachable=False, phone=phone)
    without_zns = Loyalty.from_settings(shop.settings.model_copy(update={
        "program_file": _program(tmp_path_factory, PROGRAM.replace(
            "zns_enabled = true", "zns_enabled = false"))}))
    try:
        report = run_scan(without_zns, without_zns.clock())
    finally:
        without_zns.engine.dispose()
    assert (report.selected, report.unreachable, report.queued) == (0, 1, [])
    assert messages(shop, customer_id) == []

    scan(celery_sender)
    nudge = wait_status(shop, customer_id, "sent")
    [record] = [r for r in fake_zalo.sent if r.get("phone") == "84" + phone[1:]]
    assert (record["path"], record["template_id"], record["tracking_id"]) == \
        (ZNS_PATH, TEMPLATE_ID, str(nudge.id))
    assert record["template_data"]["points"] == "990"
    assert (nudge.channel, nudge.recipient) == ("zns", phone)
    assert attempts(shop, nudge.id) == [("zns", "sent", None)]
    counts = stats_json(read_stats(shop))
    assert counts["nudge_sent_by_channel"]["zns"] == 1
    assert counts["nudge_skips"]["no_channel"] == 1  # the scan without ZNS


def test_a_230_on_consultation_falls_through_to_the_template_once_never_both(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    customer_id, user_id = add_member(shop, 1950)
    fake_zalo.set_window(user_id, "free")  # the quota call says free; the send says -230
    fake_zalo.fail_user(user_id, -230, path=CS_PATH)
    scan(celery_sender)
    nudge = wait_status(shop, customer_id, "sent")
    assert [record["path"] for record in sent_to(fake_zalo, user_id)] == [TEMPLATE_PATH]
    assert attempts(shop, nudge.id) == [("cs", "refused", -230), ("template", "sent", None)]
    assert (nudge.channel, nudge.attempts) == ("template", 2)
    # Delivered again by the broker, the task finds the message sent and sends nothing.
    celery_sender.send_task("loyalty.messages.send", args=[nudge.id], queue="messages")
    wait_for(lambda: not _unacked(celery_sender), 30, "the second delivery did not finish")
    assert len(sent_to(fake_zalo, user_id)) == 1


def test_refused_by_every_channel_fails_for_good_with_every_attempt_recorded(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    phone = a_phone()
    customer_id, user_id = add_member(shop, 2990, phone=phone)
    fake_zalo.fail_user(user_id, -213)  # not a follower: consultation and template refused
    fake_zalo.fail_user("84" + phone[1:], -108)
    scan(celery_sender)
    nudge = wait_status(shop, customer_id, "failed")
    assert attempts(shop, nudge.id) == [("cs", "refused", -213), ("template", "refused", -213),
                                        ("zns", "refused", -108)]
    assert (nudge.error_code, nudge.attempts) == (-108, 3)
    assert show_member(shop, customer_id).tags == ()
    counts = stats_json(read_stats(shop))
    assert counts["nudge_messages"]["failed"] == 1
    assert sum(counts["nudge_sent_by_channel"].values()) == 0


def test_the_fifth_promotional_message_in_a_month_is_skipped(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    customer_id, user_id = add_member(shop, 1900)
    # Five daily scans early next month: the tag of one day lapses before the next scan.
    first_day, _ = calendar_month(shop.clock() + timedelta(days=32), shop.zone)
    start = datetime.combine(first_day.date(), time(9), shop.zone)
    for day in range(5):
        scan(celery_sender, start + day * timedelta(days=1, minutes=1))
        wait_for(lambda n=day + 1: len(_runs(shop)) == n, 30, f"scan {day + 1} did not run")
        if day < 4:
            wait_for(lambda n=day + 1: sum(m.status == "sent"
                                           for m in messages(shop, customer_id)) == n,
                     30, f"nudge {day + 1} was not sent")
    fifth = _runs(shop)[-1]
    assert (fifth.selected, fifth.queued, fifth.over_monthly_cap) == (1, 0, 1)
    assert len(messages(shop, customer_id)) == len(sent_to(fake_zalo, user_id)) == 4
    with shop.sessions() as session:  # tagged by each nudge sent, not by the fifth scan
        tags = list(session.scalars(select(CustomerTag.message_id).where(
            CustomerTag.customer_id == customer_id)))
    assert sorted(tags) == sorted(m.id for m in messages(shop, customer_id))
    assert stats_json(read_stats(shop))["nudge_skips"]["monthly_cap"] == 1


def _runs(shop: Loyalty) -> list[CampaignRun]:
    with shop.sessions() as session:
        return list(session.scalars(select(CampaignRun).order_by(CampaignRun.id)))


def test_no_order_within_6_months_is_not_sent_promotional_messages(shop: Loyalty) -> None:
    customer_id, _ = add_member(shop, 1800)
    report = run_scan(shop, shop.clock() + timedelta(days=190))
    assert (report.selected, report.no_recent_contact, report.queued) == (1, 1, [])
    assert messages(shop, customer_id) == []


def test_a_worker_killed_between_two_channels_never_leads_to_two_messages(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery,
        plan_workers: list[WorkerProcess], tmp_path: Path) -> None:
    customer_id, user_id = add_member(shop, 2950)
    fake_zalo.fail_user(user_id, -230, path=CS_PATH)
    fake_zalo.fail_next(TEMPLATE_PATH, delay=3)  # the worker dies waiting for the template
    for worker in plan_workers:
        worker.stop()
    victim = WorkerProcess(shop.settings, tmp_path / "victim.log", name="pvictim").start()
    scan(celery_sender)
    wait_for(lambda: any(attempts(shop, m.id)[-1:] == [("template", "started", None)]
                         for m in messages(shop, customer_id)), 60,
             "the template was never started")
    victim.kill()
    for worker in plan_workers:
        worker.start()
    # The broker hands the send out again; the message is still being sent (by a dead
    # worker), so nothing is sent again, on no channel.
    wait_for(lambda: not _unacked(celery_sender), 60, "the killed send never came back")
    [nudge] = messages(shop, customer_id)
    assert nudge.status == "sending" and nudge.channel == "template"
    assert attempts(shop, nudge.id) == [("cs", "refused", -230),
                                        ("template", "started", None)]
    assert nudge.id not in relay(shop, shop.clock() + timedelta(minutes=11))
    [nudge] = messages(shop, customer_id)
    assert nudge.status == "unknown"
    # Zalo may have got the template the dead worker was waiting for; nothing more.
    wait_for(lambda: len(sent_to(fake_zalo, user_id)) == 1, 10, "the late template is lost")
    assert [record["path"] for record in sent_to(fake_zalo, user_id)] == [TEMPLATE_PATH]
    assert stats_json(read_stats(shop))["nudge_messages"]["unknown"] == 1


def test_night_ban_holds_promotional_messages_before_any_call(
        shop: Loyalty, fake_zalo: FakeZalo, tmp_path_factory: pytest.TempPathFactory) -> None:
    at_night = datetime.combine(shop.clock().astimezone(shop.zone).date(), time(23),
                                shop.zone)
    night = Loyalty.from_settings(shop.settings.model_copy(update={
        "program_file": _program(tmp_path_factory, PROGRAM.replace(
            "night_starts = 00:00:00\nnight_ends = 00:00:00\n", ""))}))
    night.clock = lambda: at_night
    try:
        customer_id, user_id = add_member(night, 1720)
        [nudge_id] = run_scan(night, at_night).queued
        calls = len(fake_zalo.access_log)
        assert send_message(night, nudge_id, night.sender).status == "held"
        [held] = messages(night, customer_id)
        assert held.not_before == datetime.combine(at_night.date() + timedelta(days=1),
                                                   time(8), night.zone)
        assert len(fake_zalo.access_log) == calls and attempts(night, nudge_id) == []
        with transaction(night.sessions) as session:  # morning has come
            session.get_one(Message, nudge_id).not_before = None
        night.clock = lambda: at_night + timedelta(hours=10)
        assert send_message(night, nudge_id, night.sender).status == "sent"
        assert len(sent_to(fake_zalo, user_id)) == 1
    finally:
        night.engine.dispose()
    # Without Zalo credentials the log stands in for Zalo, and is written at any hour.
    log = Loyalty.from_settings(night.settings.model_copy(update={"zalo_app_id": ""}))
    log.clock = lambda: at_night
    try:
        customer_id, _ = add_member(log, 1720)
        [nudge_id] = run_scan(log, at_night).queued
        assert send_message(log, nudge_id, log.sender).status == "sent"
        assert messages(log, customer_id)[0].channel == "log"
    finally:
        log.engine.dispose()


def test_with_no_channel_left_when_sending_the_message_is_skipped_not_failed(
        shop: Loyalty, fake_zalo: FakeZalo, tmp_path_factory: pytest.TempPathFactory) -> None:
    # No template set up: the plan is the consultation message alone.
    bare = Loyalty.from_settings(shop.settings.model_copy(update={
        "program_file": _program(tmp_path_factory, PROGRAM.replace(
            f'template_id = "{TEMPLATE_ID}"', ""))}))
    try:
        customer_id, user_id = add_member(bare, 1720)
        fake_zalo.set_window(user_id, "paid")  # consultation would be billed: not taken
        [nudge_id] = run_scan(bare, bare.clock()).queued
        assert send_message(bare, nudge_id, bare.sender).status == "skipped"
        [nudge] = messages(bare, customer_id)
        assert (nudge.status, nudge.skip_reason, nudge.channel) == \
            ("skipped", "no_channel", None)
        assert sent_to(fake_zalo, user_id) == [] and attempts(bare, nudge_id) == []
        counts = stats_json(read_stats(bare))
        assert (counts["nudge_messages"]["skipped"], counts["nudge_skips"]["no_channel"]) == \
            (1, 1)
        assert counts["nudge_messages"]["failed"] == 0
    finally:
        bare.engine.dispose()


def test_birthday_gifts_obey_the_caps_only_when_the_program_makes_them_promotional(
        shop: Loyalty, tmp_path_factory: pytest.TempPathFactory) -> None:
    later = shop.clock() + timedelta(days=190)  # the member's last order is 190 days old
    customer_id, _ = add_member(shop, 10, birthday=later.astimezone(shop.zone).date())
    promotional = Loyalty.from_settings(shop.settings.model_copy(update={
        "program_file": _program(tmp_path_factory,
                                 PROGRAM + "[channels.birthday]\npromotional = true\n")}))
    try:
        report = run_birthdays(promotional, later)
    finally:
        promotional.engine.dispose()
    assert (report.celebrated, report.capped, report.queued) == (1, 1, [])
    assert messages(shop, customer_id, "birthday") == []
    assert len(run_birthdays(shop, later).queued) == 1  # not promotional by default


def test_a_message_refused_before_and_left_without_a_channel_has_failed(
        shop: Loyalty, fake_zalo: FakeZalo, tmp_path_factory: pytest.TempPathFactory) -> None:
    customer_id, user_id = add_member(shop, 1720)
    fake_zalo.fail_user(user_id, -230, path=CS_PATH)
    fake_zalo.fail_next(TEMPLATE_PATH, http_status=503)
    [nudge_id] = run_scan(shop, shop.clock()).queued
    assert send_message(shop, nudge_id, shop.sender).status == "pending"  # template: again
    # Before the retry the shop takes the template out of the program: nothing is left.
    bare = Loyalty.from_settings(shop.settings.model_copy(update={
        "program_file": _program(tmp_path_factory, PROGRAM.replace(
            f'template_id = "{TEMPLATE_ID}"', ""))}))
    try:
        with transaction(bare.sessions) as session:
            session.get_one(Message, nudge_id).not_before = None
        assert send_message(bare, nudge_id, bare.sender).status == "failed"
    finally:
        bare.engine.dispose()
    [nudge] = messages(shop, customer_id)
    assert (nudge.status, nudge.skip_reason) == ("failed", None)
    assert attempts(shop, nudge_id) == [("cs", "refused", -230), ("template", "retry", None)]
    assert sent_to(fake_zalo, user_id) == []
