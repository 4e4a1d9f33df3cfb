"""The holdout through real Celery workers, real Redis and the database, with Zalo played by
the local fake server: a held-out member is never messaged, tagged or given a bonus."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery import Celery
from sqlalchemy import select

from devtools.fake_zalo import FakeZalo
from devtools.processes import WorkerProcess, wait_for
from loyalty.bootstrap import Loyalty
from loyalty.domain.crosssell import campaign_day
from loyalty.domain.holdout import Group, group_of
from loyalty.producer import enqueue_order_events
from loyalty.queueing import CROSSSELL, CROSSSELL_SCAN
from loyalty.services.stats import read_stats, stats_json
from loyalty.settings import Settings
from loyalty.storage.db import transaction
from loyalty.storage.tables import (
    CampaignRun,
    CrosssellAssignment,
    Customer,
    CustomerTag,
    LedgerEntry,
    Message,
    Order,
)
from loyalty.storage.zalo_tokens import DbTokenStore
from tests.support.db import wait_until_processed
from tests.support.events import order_event
from tests.support.zalo_shop import workers_with, zalo_settings

pytestmark = pytest.mark.workers
HOLDOUT = 50
TAG = "Đã gửi tin"


@pytest.fixture(scope="module")
def holdout_settings(migrated: Settings, fake_zalo: FakeZalo,
                     tmp_path_factory: pytest.TempPathFactory) -> Settings:
    program = tmp_path_factory.mktemp("program") / "program.toml"
    program.write_text(f"[crosssell]\nholdout_percent = {HOLDOUT}\nmirror_oa_tag = true\n",
                       encoding="utf-8")
    return zalo_settings(migrated, fake_zalo, program_file=program)


@pytest.fixture(scope="module")
def holdout_workers(holdout_settings: Settings, workers: list[WorkerProcess],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorkerProcess]]:
    with workers_with(holdout_settings, workers, tmp_path_factory.mktemp("holdout-logs"),
                      "h") as started:
        yield started


@pytest.fixture
def shop(loyalty: Loyalty, holdout_settings: Settings, fake_zalo: FakeZalo,
         holdout_workers: list[WorkerProcess]) -> Iterator[Loyalty]:
    shop = Loyalty.from_settings(holdout_settings)
    DbTokenStore(shop.sessions, shop.settings.token_keys()).save(fake_zalo.issue_tokens())
    yield shop
    shop.engine.dispose()


def _rows(shop: Loyalty, model: type, customer_ids: list[str]) -> list:  # type: ignore[type-arg]
    with shop.sessions() as session:
        return list(session.scalars(select(model).where(model.customer_id.in_(customer_ids))))


def _scans(shop: Loyalty) -> int:
    with shop.sessions() as session:
        return len(list(session.scalars(select(CampaignRun.id))))


def test_a_held_out_member_is_never_messaged_tagged_or_given_a_bonus(
        shop: Loyalty, fake_zalo: FakeZalo, celery_sender: Celery) -> None:
    as_of = shop.clock()
    day = campaign_day(as_of, shop.zone)
    ids = [f"W{n}" for n in range(24)]
    held = [i for i in ids if group_of(i, day, HOLDOUT) is Group.HELD_OUT]
    nudged = [i for i in ids if i not in held]
    assert held and nudged
    with transaction(shop.sessions) as session:
        for customer_id in ids:
            session.add(Customer(id=customer_id, tier="silver", points=1850,
                                 zalo_user_id=f"zalo-{customer_id}", name="Lan",
                                 created_at=as_of, updated_at=as_of))
            session.flush()
            # A recent order: in contact, as Zalo's rule for promotional messages wants.
            session.add(Order(order_id=f"seed-{customer_id}", customer_id=customer_id,
                              status="delivered", payment_status="paid", total_payable=0,
                              shipping_fee=0, placed_at=as_of, occurred_at=as_of, earned=True,
                              updated_at=as_of))

    # Two scans at once on the two workers, as two beats would send them.
    for _ in range(2):
        celery_sender.send_task(CROSSSELL_SCAN, kwargs={"as_of": as_of.isoformat()},
                                queue=CROSSSELL)
    wait_for(lambda: sum(m.status == "sent" for m in _rows(shop, Message, nudged))
             == len(nudged), 60, "the nudged were not all sent their nudge")
    wait_for(lambda: len(_rows(shop, CustomerTag, nudged)) == len(nudged), 30, "not tagged")
    wait_for(lambda: _scans(shop) == 2, 30, "the second scan did not run")
    wait_for(lambda: fake_zalo.tags.get(TAG, set()) >= {f"zalo-{i}" for i in nudged}, 30,
             "the nudged were not tagged on the OA")

    assignments = _rows(shop, CrosssellAssignment, ids)
    assert sorted((a.customer_id, a.held_out) for a in assignments) == sorted(
        [(i, True) for i in held] + [(i, False) for i in nudged])
    assert _rows(shop, Message, held) == [] and _rows(shop, CustomerTag, held) == []
    held_users = {f"zalo-{i}" for i in held}
    assert not [r for r in fake_zalo.sent if r.get("user_id") in held_users]
    assert not held_users & fake_zalo.tags.get(TAG, set())

    # Everyone orders within the hour: the nudged earn the bonus, the held out never do.
    sent_at = min(m.sent_at for m in _rows(shop, Message, nudged))
    placed = sent_at + timedelta(minutes=5)
    events = []
    for customer_id in ids:
        event = order_event(f"O-{customer_id}", customer_id, total=100_000, shipping=0)
        event["placed_at"] = placed.isoformat()
        event["occurred_at"] = (placed + timedelta(minutes=1)).isoformat()
        events.append(event)
    enqueue_order_events(events, celery=celery_sender)
    wait_until_processed(shop, len(events))
    bonuses = [row for row in _rows(shop, LedgerEntry, ids) if row.kind == "crosssell_bonus"]
    assert sorted(row.customer_id for row in bonuses) == sorted(nudged)
    # Everyone converted: the held out without any nudge, and /metrics says so.
    stats = stats_json(read_stats(shop))
    groups = {"nudged": len(nudged), "held_out": len(held)}
    assert stats["crosssell_selected"] == stats["crosssell_selected_30d"] == groups
    assert stats["crosssell_converted_30d"] == groups

    # The next day's scan keeps the held out out, as it does the nudged.
    celery_sender.send_task(CROSSSELL_SCAN, queue=CROSSSELL,
                            kwargs={"as_of": (as_of + timedelta(days=1)).isoformat()})
    wait_for(lambda: _scans(shop) == 3, 30, "the next day's scan did not run")
    assert _rows(shop, Message, held) == []
    assert len(_rows(shop, CrosssellAssignment, ids)) == len(ids)
