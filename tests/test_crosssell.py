"""The cross-sell campaign through real workers, real Redis and the database, with Zalo
played by a local HTTP server that answers like Zalo."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select, text

from devtools.fake_zalo import FakeZalo
from devtools.processes import WorkerProcess, wait_for
from loyalty.bootstrap import Loyalty
from loyalty.producer import enqueue_order_events
from loyalty.queueing import CROSSSELL, CROSSSELL_SCAN, MAINTENANCE, SWEEP_TAGS
from loyalty.services.crosssell import run_scan
from loyalty.services.members import show_member
from loyalty.services.outbox import relay, send_message
from loyalty.services.stats import read_stats, stats_json
from loyalty.settings import Settings
from loyalty.storage.db import transaction
from loyalty.storage.tables import Customer, CustomerTag, LedgerEntry, Message, Order
from loyalty.storage.zalo_tokens import DbTokenStore
from tests.support import zalo_shop
from tests.support.db import wait_until_processed
from tests.support.events import order_event

pytestmark = pytest.mark.workers
CS_PATH = "/v3.0/oa/message/cs"


@pytest.fixture(scope="module")
def zalo_settings(migrated: Settings, fake_zalo: FakeZalo,
                  tmp_path_factory: pytest.TempPathFactory) -> Settings:
    program = tmp_path_factory.mktemp("program") / "program.toml"
    # The night ban is off: these sends run at whatever time the suite does (test_channels
    # checks the ban).
    program.write_text("[crosssell]\nmirror_oa_tag = true\n"
                       "[channels]\nnight_starts = 00:00:00\nnight_ends = 00:00:00\n",
                       encoding="utf-8")
    return zalo_shop.zalo_settings(migrated, fake_zalo, program_file=program)


@pytest.fixture(scope="module")
def zalo_workers(zalo_settings: Settings, workers: list[WorkerProcess],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorkerProcess]]:
    """Workers that talk to the fake Zalo; the run's plain workers step aside meanwhile."""
    with zalo_shop.workers_with(zalo_settings, workers, tmp_path_factory.mktemp("zalo-worker-logs"),
                                "z") as started:
        yield started


@pytest.fixture
def shop(loyalty: Loyalty, zalo_settings: Settings, fake_zalo: FakeZalo,
         zalo_workers: list[WorkerProcess]) -> Iterator[Loyalty]:
    yield from zalo_shop.open_shop(zalo_settings, fake_zalo)


def add_member(shop: Loyalty, points: int, *, reachable: bool = True,
               birthday: date | None = None, phone: str | None = None) -> tuple[str, str]:
    """A member with ``points`` from an order delivered just now (its ledger row and
    order); returns (id, zalo user id)."""
    customer_id, user_id = f"M-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:16]
    now = shop.clock()
    with transaction(shop.sessions) as session:
        tier = [t for t in shop.program.tiers if t.threshold <= points][-1]
        session.add(Customer(id=customer_id, tier=tier.code, points=points,
                             zalo_user_id=user_id if reachable else None, name="Lan",
                             phone=phone, birthday=birthday, created_at=now, updated_at=now))
        session.flush()
        session.add(Order(order_id=f"seed-{customer_id}", customer_id=customer_id,
                          status="delivered", payment_status="paid", total_payable=0,
                          shipping_fee=0, placed_at=now, occurred_at=now, earned=True,
                          updated_at=now))
        session.add(LedgerEntry(customer_id=customer_id, kind="order_credit", points=points,
                                order_id=f"seed-{customer_id}", tier="member",
                                multiplier="1.0", balance_after=points, created_at=now))
    return customer_id, user_id


def sent_to(fake: FakeZalo, user_id: str) -> list[dict]:
    return [record for record in fake.sent if record.get("user_id") == user_id]


def scan(celery: Celery, as_of: datetime | None = None) -> None:
    celery.send_task(CROSSSELL_SCAN, kwargs={"as_of": as_of.isoformat() if as_of else None},
                     queue=CROSSSELL)


def messages(shop: Loyalty, customer_id: str, kind: str = "nudge") -> list[Message]:
    with shop.sessions() as session:
        return list(session.scalars(select(Message).where(
            Message.customer_id == customer_id, Message.kind == kind).order_by(Message.id)))


def wait_status(shop: Loyalty, customer_id: str, status: str, kind: str = "nudge") -> Message:
    wait_for(lambda: any(m.status == status for m in messages(shop, customer_id, kind)), 60,
             f"no {kind} reached {status} for {customer_id}: "
             f"{[(m.status, m.error) for m in messages(shop, customer_id, kind)]}")
    return next(m for m in messages(shop, customer_id, kind) if m.status == status)


def test_selection_at_the_edges(shop: Loyalty) -> None:
    near = [add_member(shop, points)[0] for points in (701, 999, 1701, 2999)]
    far = [add_member(shop, points)[0] for points in (700, 1000, 2000, 3000, 5000, 0)]
    unreachable = add_member(shop, 1800, reachable=False)[0]
    report = run_scan(shop, shop.clock(), dry_run=True)
    assert (report.selected, report.unreachable, report.queued) == (len(near), 1, [])
    report = run_scan(shop, shop.clock())
    with shop.sessions() as session:
        nudged = set(session.scalars(select(Message.customer_id)))
    assert nudged == set(near) and not nudged & {*far, unreachable}


def test_nudge_is_sent_tagged_and_shown_and_text_has_the_members_numbers(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    customer_id, user_id = add_member(shop, 1720)
    scan(celery_sender)
    nudge = wait_status(shop, customer_id, "sent")
    [record] = sent_to(fake_zalo, user_id)
    text = record["body"]["message"]["text"]
    assert text.startswith("Chỉ còn vài điểm nữa là lên hạng - Cố lên bạn nhé")
    assert "1720 điểm" in text and "280 điểm" in text and "Vàng" in text
    view = show_member(shop, customer_id)
    [tag] = view.tags
    assert tag.name == "Đã gửi tin" and nudge.sent_at is not None
    assert stats_json(read_stats(shop))["nudge_messages"]["sent"] == 1
    assert tag.expires_at == nudge.sent_at + timedelta(days=15)


def test_scan_twice_and_two_scans_at_once_send_nothing_twice(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    members = [add_member(shop, 1900 + i) for i in range(5)]
    as_of = shop.clock()
    for _ in range(3):  # two at once on two workers, and one more
        scan(celery_sender, as_of)
    for customer_id, _ in members:
        wait_status(shop, customer_id, "sent")
    # A scan later the same day (and the tag) keeps them out too.
    scan(celery_sender, as_of + timedelta(hours=3))
    wait_for(lambda: len(run_scan_runs(shop)) == 4, 30, "the fourth scan did not run")
    assert [len(sent_to(fake_zalo, user_id)) for _, user_id in members] == [1] * 5
    assert [len(messages(shop, customer_id)) for customer_id, _ in members] == [1] * 5


def run_scan_runs(shop: Loyalty) -> list[int]:
    from loyalty.storage.tables import CampaignRun
    with shop.sessions() as session:
        return list(session.scalars(select(CampaignRun.queued)))


def test_tag_sweep_before_and_after_15_days_then_the_nudge_repeats(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    customer_id, user_id = add_member(shop, 950)
    scan(celery_sender)
    nudge = wait_status(shop, customer_id, "sent")
    assert nudge.sent_at is not None
    wait_for(lambda: user_id in fake_zalo.tags.get("Đã gửi tin", set()), 30,
             "the tag was not mirrored on the OA")
    day14 = nudge.sent_at + timedelta(days=14)
    assert run_scan(shop, day14).selected == 0  # still tagged
    celery_sender.send_task(SWEEP_TAGS, kwargs={"as_of": day14.isoformat()},
                            queue=MAINTENANCE)
    day15 = nudge.sent_at + timedelta(days=15, minutes=1)
    celery_sender.send_task(SWEEP_TAGS, kwargs={"as_of": day15.isoformat()},
                            queue=MAINTENANCE)
    wait_for(lambda: _tag(shop, customer_id).cleared_at is not None, 30, "tag not cleared")
    assert _tag(shop, customer_id).cleared_at == day15
    # The OA's copy of the tag follows the database.
    wait_for(lambda: user_id not in fake_zalo.tags.get("Đã gửi tin", set()), 30,
             "the OA tag was not removed")
    scan(celery_sender, day15)
    wait_for(lambda: len(sent_to(fake_zalo, user_id)) == 2, 30, "no second nudge")


def _tag(shop: Loyalty, customer_id: str) -> CustomerTag:
    with shop.sessions() as session:
        return session.scalars(select(CustomerTag).where(
            CustomerTag.customer_id == customer_id)).one()


def _order(order_id: str, customer_id: str, placed: datetime, status: str = "delivered",
           payment: str = "paid", minutes: int = 0) -> dict:
    event = order_event(order_id, customer_id, status, payment, total=200_000, shipping=0)
    event["placed_at"] = placed.isoformat()
    event["occurred_at"] = (placed + timedelta(minutes=minutes)).isoformat()
    return event


def test_bonus_inside_72h_once_only_reversed_with_a_notice(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    customer_id, user_id = add_member(shop, 1850)
    scan(celery_sender)
    sent_at = wait_status(shop, customer_id, "sent").sent_at
    assert sent_at is not None
    enqueue_order_events([
        _order("IN-1", customer_id, sent_at + timedelta(hours=71)),
        _order("IN-2", customer_id, sent_at + timedelta(hours=1)),   # second: no bonus
        _order("OUT", customer_id, sent_at + timedelta(hours=73)),
        _order("BEFORE", customer_id, sent_at - timedelta(minutes=5))], celery=celery_sender)
    wait_until_processed(shop, 4)
    with shop.sessions() as session:
        bonuses = list(session.scalars(select(LedgerEntry).where(
            LedgerEntry.kind == "crosssell_bonus")))
    [bonus] = bonuses
    assert bonus.points == 100 and bonus.multiplier == "1"
    assert bonus.order_id in {"IN-1", "IN-2"}
    assert bonus.nudge_id == messages(shop, customer_id)[0].id

    enqueue_order_events([_order(bonus.order_id, customer_id, sent_at + timedelta(hours=1),
                                 "cancelled", "refunded", minutes=600)], celery=celery_sender)
    notice = wait_status(shop, customer_id, "sent", kind="bonus_reversal")
    assert bonus.order_id in notice.text and "100" in notice.text
    assert any(bonus.order_id in r["body"]["message"]["text"]
               for r in sent_to(fake_zalo, user_id))
    with shop.sessions() as session:
        rows = list(session.scalars(select(LedgerEntry).where(
            LedgerEntry.customer_id == customer_id)))
        balance = session.get_one(Customer, customer_id).points
    cancelled = [row for row in rows if row.order_id == bonus.order_id]
    assert sorted(row.kind for row in cancelled) == [
        "crosssell_bonus", "crosssell_bonus_reversal", "order_credit", "order_reversal"]
    assert sum(row.points for row in cancelled) == 0
    kept = [row.points for row in rows
            if row.kind == "order_credit" and row.order_id != bonus.order_id]
    assert len(kept) == 4 and balance == sum(kept)  # the seed row and three orders


def test_one_token_refresh_for_many_concurrent_sends_after_expiry(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    members = [add_member(shop, 2800 + i) for i in range(12)]
    fake_zalo.expire_tokens()
    before = fake_zalo.refresh_calls
    scan(celery_sender)
    for customer_id, _ in members:
        wait_status(shop, customer_id, "sent")
    assert fake_zalo.refresh_calls - before == 1
    assert all(len(sent_to(fake_zalo, user_id)) == 1 for _, user_id in members)
    stored = DbTokenStore(shop.sessions, shop.settings.token_keys()).load()
    assert stored is not None and stored.access_token != fake_zalo.initial_tokens.access_token
    with shop.engine.connect() as connection:  # the worker stored the new pair encrypted
        raw = " ".join(map(str, connection.execute(text("SELECT * FROM zalo_tokens")).one()))
    assert stored.access_token not in raw and stored.refresh_token not in raw


@pytest.mark.parametrize("failure", [{"http_status": 500}, {"http_status": 503},
                                     {"error": -32}])
def test_5xx_and_rate_limit_end_in_exactly_one_message(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery, failure: dict) -> None:
    customer_id, user_id = add_member(shop, 1950)
    fake_zalo.fail_next(CS_PATH, times=2, retry_after=0.2, **failure)
    scan(celery_sender)
    nudge = wait_status(shop, customer_id, "sent")
    assert nudge.attempts == 3
    assert len(sent_to(fake_zalo, user_id)) == 1


def test_a_final_error_is_neither_retried_nor_tagged(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    customer_id, user_id = add_member(shop, 1990)
    fake_zalo.fail_user(user_id, -213)
    calls_before = len(fake_zalo.access_log)
    scan(celery_sender)
    nudge = wait_status(shop, customer_id, "failed")
    assert (nudge.error_code, nudge.attempts) == (-213, 1)
    assert [path for path, _ in fake_zalo.access_log[calls_before:]
            if path == CS_PATH] == [CS_PATH]
    assert show_member(shop, customer_id).tags == ()
    assert stats_json(read_stats(shop))["nudge_messages"]["failed"] == 1
    # Nor is the member nudged again by tomorrow's scan.
    assert run_scan(shop, shop.clock() + timedelta(days=1)).selected == 0


def test_a_worker_killed_mid_send_does_not_send_twice(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery,
        zalo_workers: list[WorkerProcess], tmp_path: Path) -> None:
    customer_id, user_id = add_member(shop, 2950)
    fake_zalo.fail_next(CS_PATH, delay=1.5)  # Zalo is slow: the worker dies waiting
    for worker in zalo_workers:
        worker.stop()
    victim = WorkerProcess(shop.settings, tmp_path / "victim.log", name="zvictim").start()
    scan(celery_sender)
    wait_status(shop, customer_id, "sending")
    victim.kill()
    for worker in zalo_workers:
        worker.start()
    # The broker hands the send out again after its visibility timeout; the outbox says the
    # message is already being sent, so nothing is sent again.
    wait_for(lambda: not _unacked(celery_sender), 60, "the killed send never came back")
    [nudge] = messages(shop, customer_id)
    assert nudge.status == "sending"
    assert len(sent_to(fake_zalo, user_id)) <= 1
    # Ten minutes on, the sweep reports it as unknown and does not queue it again.
    later = datetime.now(UTC) + timedelta(minutes=11)
    assert nudge.id not in relay(shop, later)
    [nudge] = messages(shop, customer_id)
    assert nudge.status == "unknown"
    assert len(sent_to(fake_zalo, user_id)) <= 1


def _unacked(celery: Celery) -> int:
    with celery.connection_for_write() as connection:
        return int(connection.default_channel.client.hlen("unacked"))


def test_birthday_gifts_by_tier_once_a_year_even_if_the_birthday_is_edited(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    from loyalty.queueing import BIRTHDAYS

    as_of = datetime.fromisoformat("2027-02-28T08:00:00+07:00")  # 2027 is not a leap year
    gold, gold_user = add_member(shop, 2500, birthday=date(1990, 2, 28))
    leapling, leap_user = add_member(shop, 10, birthday=date(1996, 2, 29))
    other, other_user = add_member(shop, 10, birthday=date(1990, 3, 1))
    for _ in range(2):  # the job runs twice on the same day
        celery_sender.send_task(BIRTHDAYS, kwargs={"as_of": as_of.isoformat()},
                                queue=MAINTENANCE)
    gift = wait_status(shop, gold, "sent", kind="birthday")
    wait_status(shop, leapling, "sent", kind="birthday")
    assert "Vàng" in gift.text and "200.000đ" in gift.text  # the Gold tier's gift
    [leap_message] = messages(shop, leapling, "birthday")
    assert "50.000đ" in leap_message.text  # Member's gift
    assert len(sent_to(fake_zalo, gold_user)) == len(sent_to(fake_zalo, leap_user)) == 1
    assert messages(shop, other, "birthday") == [] and not sent_to(fake_zalo, other_user)

    # The member moves the birthday to tomorrow: still no second gift within 365 days …
    with transaction(shop.sessions) as session:
        session.get_one(Customer, gold).birthday = date(1990, 3, 1)
    from loyalty.services.birthdays import run_birthdays
    report = run_birthdays(shop, as_of + timedelta(days=1))
    assert report.skipped_recent_gift == 1 and gold not in _gifted(shop, report.queued)
    assert other in _gifted(shop, report.queued)
    # … and on the new birthday a year later (1 March 2028) the gift comes again.
    assert gold in _gifted(shop, run_birthdays(shop, as_of + timedelta(days=367)).queued)


def _gifted(shop: Loyalty, message_ids: list[int]) -> set[str]:
    with shop.sessions() as session:
        return set(session.scalars(select(Message.customer_id).where(
            Message.id.in_(message_ids))))


def test_night_time_ban_holds_the_message_until_morning(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    customer_id, user_id = add_member(shop, 1980)
    fake_zalo.fail_next(CS_PATH, error=-234)
    scan(celery_sender)
    held = wait_status(shop, customer_id, "held")
    assert held.error_code == -234 and held.not_before is not None
    local = held.not_before.astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    assert (local.hour, local.minute) == (8, 0)
    assert held.not_before - shop.clock() <= timedelta(days=1)
    assert show_member(shop, customer_id).tags == () and not sent_to(fake_zalo, user_id)
    # Not due before morning; due after it, and then sent once.
    assert held.id not in relay(shop, held.not_before - timedelta(minutes=1))
    assert held.id in relay(shop, held.not_before + timedelta(minutes=1))
    with transaction(shop.sessions) as session:  # morning has come
        session.get_one(Message, held.id).not_before = shop.clock()
    celery_sender.send_task("loyalty.messages.send", args=[held.id], queue="messages")
    wait_status(shop, customer_id, "sent")
    assert len(sent_to(fake_zalo, user_id)) == 1


def test_a_token_key_that_reads_no_stored_pair_holds_messages_and_writes_no_pair(
        shop: Loyalty, fake_zalo: FakeZalo, tmp_path: Path) -> None:
    customer_id, user_id = add_member(shop, 1980)
    [nudge_id] = run_scan(shop, shop.clock()).queued
    with shop.engine.connect() as connection:
        stored = connection.execute(text("SELECT * FROM zalo_tokens")).one()
    # A plan whose channels all need the OA's token (the template, by user id), any hour.
    program = tmp_path / "program.toml"
    program.write_text("[channels]\nnight_starts = 00:00:00\nnight_ends = 00:00:00\n"
                       '[channels.nudge]\ntemplate_id = "tpl-1"\n', encoding="utf-8")
    # The key the pair was stored with is gone from the settings (a botched rotation).
    wrong = Loyalty.from_settings(shop.settings.model_copy(update={
        "zalo_token_keys": SecretStr(Fernet.generate_key().decode()), "program_file": program}))
    assert send_message(wrong, nudge_id, wrong.sender).status == "held"
    wrong.engine.dispose()
    [held] = messages(shop, customer_id)
    assert held.error and "cannot be decrypted with any key of LOYALTY_ZALO_TOKEN_KEYS" \
        in held.error
    assert not sent_to(fake_zalo, user_id)
    with shop.engine.connect() as connection:
        assert connection.execute(text("SELECT * FROM zalo_tokens")).one() == stored
