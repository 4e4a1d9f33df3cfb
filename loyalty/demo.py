"""``loyalty demo``: a small shop's month through real Celery workers, on embedded defaults.

Customers and orders (some cancelled or returned, some events sent twice, some out of
order, one naming the wrong customer) go through the producer call onto the embedded Redis;
real ``celery -A workers worker`` processes apply them to a SQLite file; then three days of
the near-tier campaign with a holdout of 10 % (a program file the demo writes): four days
ago, yesterday and today. The past days' nudges are sent in this process at their day's time
(workers would send them now), and some members, nudged or held out, order after them; the
report compares the two groups. Then a summary. With ``--serve`` the API then stays up on
localhost, Zalo's Graph API played by the fake Zalo, and the member's page signed in as one
of the demo's members.
"""

from __future__ import annotations

import logging
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr
from sqlalchemy import func, select

from devtools.fake_zalo import FakeZalo
from devtools.processes import ROOT, ChildProcess, settings_env, wait_for, worker_argv
from loyalty.bootstrap import Loyalty
from loyalty.campaign_table import format_report
from loyalty.domain.crosssell import campaign_day
from loyalty.domain.messages import MessageKind, MessageStatus
from loyalty.domain.points import LedgerKind
from loyalty.embedded_redis import stop_embedded_redis
from loyalty.producer import InvalidEvents, enqueue_order_events
from loyalty.services.campaign_results import campaign_results
from loyalty.services.crosssell import ScanReport, run_scan
from loyalty.services.events import list_refused
from loyalty.services.members import show_member
from loyalty.services.outbox import dispatch, send_message
from loyalty.settings import Settings
from loyalty.storage.db import database_url
from loyalty.storage.migrate import upgrade
from loyalty.storage.tables import (
    CrosssellAssignment,
    Customer,
    LedgerEntry,
    Message,
    ProcessedEvent,
)

NAMES = ["Lan", "Minh", "Hương", "Tuấn", "Mai", "Dũng", "Linh", "Quang", "Thảo", "Huy"]
HOLDOUT_PERCENT = 10
# How often a simulated member orders within the days after a campaign day.
ORDERS_AFTER = {False: 0.5, True: 0.25, None: 0.2}  # nudged, held out, not selected


def shop_events(customers: int, rng: random.Random, start: datetime) -> list[dict[str, Any]]:
    """A month of orders: each customer orders a few times; some orders are cancelled."""
    events: list[dict[str, Any]] = []
    for n in range(1, customers + 1):
        customer = {"id": f"C-{n:03d}", "phone": f"09{rng.randrange(10**8):08d}",
                    "zalo_user_id": f"{rng.randrange(10**18, 10**19)}",
                    "name": rng.choice(NAMES),
                    "birthday": f"{rng.randrange(1970, 2005)}-{rng.randrange(1, 13):02d}-"
                                f"{rng.randrange(1, 29):02d}"}
        for k in range(rng.randrange(1, 6)):
            order_id = f"SO-{n:03d}-{k}"
            placed = start + timedelta(days=rng.randrange(0, 25), minutes=rng.randrange(600))
            total = rng.randrange(80, 900) * 1000
            shipping = rng.choice([0, 15_000, 30_000])
            steps = [("pending", "unpaid"), ("confirmed", "unpaid"), ("shipping", "unpaid"),
                     ("delivered", "paid")]
            ending = rng.choices([None, "cancelled", "returned"], [8, 1, 1])[0]
            if ending:
                steps.append((ending, "refunded"))
            for i, (status, paid) in enumerate(steps):
                events.append({
                    "event_id": f"evt-{order_id}-{i}", "order_id": order_id,
                    "customer": customer, "status": status, "payment_status": paid,
                    "total_payable": total, "shipping_fee": shipping,
                    "placed_at": placed.isoformat(),
                    "occurred_at": (placed + timedelta(hours=12 * i)).isoformat()})
    return events


def _count(loyalty: Loyalty, table: type[Message] | type[ProcessedEvent], *where: Any) -> int:
    with loyalty.sessions() as session:
        return session.scalar(select(func.count()).select_from(table).where(*where)) or 0


def _sent(loyalty: Loyalty) -> int:
    return _count(loyalty, Message, Message.status == MessageStatus.SENT)


def _processed(loyalty: Loyalty) -> int:
    return _count(loyalty, ProcessedEvent)


def _eventually(condition: Callable[[], bool], timeout: float) -> None:
    """Wait for ``condition``; the summary says what did not happen in time."""
    with suppress(AssertionError):
        wait_for(condition, timeout, "", interval=0.2)


def run_demo(data_dir: Path, *, customers: int = 150, workers: int = 2, seed: int = 2026,
             serve_port: int | None = None) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    program = data_dir / "program.toml"
    program.write_text(f"[crosssell]\nholdout_percent = {HOLDOUT_PERCENT}\n", encoding="utf-8")
    settings = Settings(data_dir=data_dir, database_url=None, redis_url=None,
                        program_file=program)
    upgrade(database_url(settings))
    loyalty = Loyalty.from_settings(settings)

    rng = random.Random(seed)
    events = shop_events(customers, rng, datetime(2026, 10, 20, 9, tzinfo=loyalty.zone))
    distinct = len(events)
    # At least once, in any order: a tenth of the events twice, and everything shuffled.
    sent = events + rng.sample(events, distinct // 10)
    rng.shuffle(sent)
    wrong_customer = dict(events[0], event_id="evt-wrong-customer",
                          customer={"id": "C-999"})

    click.echo(f"Embedded database: {database_url(settings)}")
    click.echo(f"Starting {workers} Celery worker processes on the embedded Redis …")
    procs = [ChildProcess(f"demo{i}", worker_argv(name=f"demo{i}", concurrency=1,
                                                  loglevel="warning"),
                          settings_env(settings), data_dir / f"worker-{i}.log").start()
             for i in range(workers)]
    started = time.monotonic()
    try:
        celery = loyalty.celery
        enqueue_order_events([*sent, wrong_customer], celery=celery)
        try:
            enqueue_order_events({"event_id": "evt-bad", "order_id": "SO-X",
                                  "customer": {}, "status": "lost"}, celery=celery)
        except InvalidEvents as invalid:
            refused_fields = [e["field"] for e in invalid.problems[0]["errors"]]
        click.echo(f"Sent {len(sent) + 1} events ({distinct} distinct, "
                   f"{len(sent) - distinct} duplicates, shuffled); the producer refused one "
                   f"malformed event naming {', '.join(refused_fields)}.")
        _eventually(lambda: _processed(loyalty) >= distinct, 90)
        done, elapsed = _processed(loyalty), time.monotonic() - started
        _eventually(lambda: bool(list_refused(loyalty)), 30)  # the wrong-customer event
        now = loyalty.clock()
        first_day = campaign_day(now - timedelta(days=4), loyalty.zone)
        for days_ago in (4, 1):
            _past_campaign_day(loyalty, now - timedelta(days=days_ago), rng)
        scan = run_scan(loyalty, loyalty.clock())
        dispatch(loyalty, scan.queued)
        _eventually(lambda: _sent(loyalty) >= len(scan.queued), 30)
    finally:
        for proc in procs:
            proc.stop(timeout=20)
    _summary(loyalty, done, distinct, elapsed)
    _campaign(loyalty, scan)
    click.echo(f"\nCampaign results with a holdout of {HOLDOUT_PERCENT}% "
               "(`loyalty crosssell report`):\n")
    click.echo(format_report(campaign_results(
        loyalty, first_day, campaign_day(loyalty.clock(), loyalty.zone)).to_json()))
    # sys.argv[0] is the command as it was typed, e.g. .venv/bin/loyalty under make demo.
    click.echo(f"\nLook around: LOYALTY_DATA_DIR={data_dir} {sys.argv[0]} member show C-001")
    try:
        if serve_port is not None:
            _serve(loyalty, serve_port)
    finally:
        stop_embedded_redis(data_dir)


def _serve(loyalty: Loyalty, port: int) -> None:
    """The API on localhost until Ctrl-C, with the member's page signed in as one of the demo's
    members: a user token the fake Zalo minted, whose Graph answer carries that member's OA
    user id, so the API links it as it would a real one."""
    import uvicorn

    from loyalty.api import create_app
    from loyalty.logs import uvicorn_log_config

    with FakeZalo() as zalo:
        served = Loyalty.from_settings(loyalty.settings.model_copy(update={
            "zalo_graph_url": zalo.url, "miniapp_secret_key": SecretStr(zalo.miniapp_secret_key)}))
        member_id, oa_user_id = _showcase_member(served)
        token = zalo.mint_user_token(f"demo-app-{member_id}", oa_user_id=oa_user_id,
                                     expires_in=7 * 24 * 3600)
        page = ROOT / "miniapp" / "dist"
        built = (page / "index.html").is_file()
        base = f"http://127.0.0.1:{port}"
        click.echo(f"\nThe member's page, signed in as {member_id} through a fake Zalo "
                   f"(Ctrl-C stops):")
        if built:
            click.echo(f"  open {base}/miniapp/?access_token={token}")
        else:
            click.echo(f"  the page is not built ({page} is missing): run `make miniapp`, "
                       f"then this again")
        click.echo(f"  curl -s {base}/v1/me -H 'X-Zalo-Access-Token: {token}'")
        sys.stdout.flush()
        uvicorn.run(create_app(served, miniapp=page if built else None), host="127.0.0.1",
                    port=port, log_level="warning", log_config=uvicorn_log_config())
        served.engine.dispose()


def _showcase_member(loyalty: Loyalty) -> tuple[str, str | None]:
    """A member nudged lately whose page shows the live offer, else the top member."""
    with loyalty.sessions() as session:
        recently = session.scalars(select(Message.customer_id).where(
            Message.kind == MessageKind.NUDGE, Message.status == MessageStatus.SENT)
            .order_by(Message.sent_at.desc()).limit(50)).all()
    nudged = next((member for member in recently
                   if show_member(loyalty, member).offer is not None), None)
    with loyalty.sessions() as session:
        customer = session.get(Customer, nudged) if nudged is not None else \
            session.scalars(select(Customer).order_by(Customer.points.desc(), Customer.id)
                            .limit(1)).first()
        assert customer is not None, "the demo made no members"
        return customer.id, customer.zalo_user_id


def _past_campaign_day(loyalty: Loyalty, as_of: datetime, rng: random.Random) -> None:
    """A scan on a past day, its nudges sent a minute later, and the orders that followed
    (through the workers): the nudged order more often than the held out, some too late
    for the 72 hours, some cancelled. The workers apply them now, so tier changes are
    stamped now: for a day four days back they fall in its tag period, not its 72 hours."""
    sent_at = as_of + timedelta(minutes=1)
    then = replace(loyalty, clock=lambda: sent_at)
    scan = run_scan(then, as_of)
    # Without Zalo every message is written to the log: too much to read here.
    sender_log = logging.getLogger("loyalty.messages")
    level = sender_log.level
    sender_log.setLevel(logging.WARNING)
    try:
        for message_id in scan.queued:
            send_message(then, message_id, then.sender, then.on_sent)
    finally:
        sender_log.setLevel(level)
    with loyalty.sessions() as session:
        selected = dict(session.execute(select(CrosssellAssignment.customer_id,
                                               CrosssellAssignment.held_out).where(
            CrosssellAssignment.period == campaign_day(as_of, loyalty.zone))).all())
        everyone = list(session.scalars(select(Customer.id).order_by(Customer.id)))
    events = []
    for customer_id in everyone:
        # The rest of the shop keeps ordering too: some of them come near a tier.
        chance = ORDERS_AFTER[selected[customer_id]] if customer_id in selected \
            else ORDERS_AFTER[None]
        if rng.random() >= chance:
            continue
        placed = sent_at + timedelta(hours=rng.choice([2, 9, 20, 30, 50, 70, 80]))
        if placed + timedelta(hours=30) > loyalty.clock():
            continue  # not placed and delivered yet: no order from the future
        order_id = f"SO-{customer_id}-{as_of:%m%d}"
        ending = rng.choices([("delivered", "paid"), ("cancelled", "refunded")], [9, 1])[0]
        for i, (status, paid) in enumerate([("delivered", "paid"), ending]):
            events.append({"event_id": f"evt-{order_id}-{i}", "order_id": order_id,
                           "customer": {"id": customer_id}, "status": status,
                           "payment_status": paid,
                           "total_payable": rng.randrange(150, 600) * 1000,
                           "shipping_fee": 0, "placed_at": placed.isoformat(),
                           "occurred_at": (placed + timedelta(hours=20 + 10 * i)).isoformat()})
    total = _processed(loyalty) + len(events)
    enqueue_order_events(events, celery=loyalty.celery)
    _eventually(lambda: _processed(loyalty) >= total, 60)
    ordered = {event["customer"]["id"] for event in events}
    click.echo(f"Campaign day {campaign_day(as_of, loyalty.zone)}: selected {scan.selected}, "
               f"held out {scan.held_out}, nudged {len(scan.queued)}; afterwards "
               f"{len(ordered & set(selected))} of them ordered, and "
               f"{len(ordered - set(selected))} other members.")


def _campaign(loyalty: Loyalty, scan: ScanReport) -> None:
    click.echo(f"\nToday's near-tier scan: {scan.selected} member(s) fewer than "
               f"{loyalty.program.crosssell.near_tier_points} points from the next tier "
               f"and not nudged or held out lately, {scan.held_out} held out, "
               f"{len(scan.queued)} nudged (no Zalo credentials: written to the outbox and "
               f"the log), {scan.unreachable} unreachable, {scan.over_monthly_cap} over the "
               f"monthly cap, {scan.no_recent_contact} without contact in "
               f"{loyalty.program.channels.contact_months} months.")
    with loyalty.sessions() as session:
        first = session.scalars(select(Message).where(Message.kind == MessageKind.NUDGE)
                                .order_by(Message.id).limit(1)).first()
    if first is not None:
        view = show_member(loyalty, first.customer_id)
        tags = ", ".join(f"{tag.name} until "
                         f"{tag.expires_at.astimezone(loyalty.zone):%d/%m/%Y %H:%M}"
                         for tag in view.tags)
        click.echo(f"Nudge to {first.customer_id} ({first.status}; tags: {tags}):")
        click.echo("  " + first.text.replace("\n", "\n  "))


def _summary(loyalty: Loyalty, done: int, distinct: int, elapsed: float) -> None:
    with loyalty.sessions() as session:
        tiers = Counter(session.scalars(select(Customer.tier)))
        by_kind = dict(session.execute(
            select(LedgerEntry.kind, func.sum(LedgerEntry.points))
            .group_by(LedgerEntry.kind)).all())
        outcomes = Counter(session.scalars(select(ProcessedEvent.outcome)))
        top = list(session.scalars(select(Customer.id).order_by(Customer.points.desc(),
                                                                Customer.id).limit(3)))
    click.echo(f"\nApplied {done}/{distinct} distinct events in {elapsed:.1f}s: " +
               ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())))
    click.echo("Members per tier: " + ", ".join(
        f"{tier.name} {tiers.get(tier.code, 0)}" for tier in loyalty.program.tiers))
    credited = by_kind.get(LedgerKind.ORDER_CREDIT, 0)
    reversed_ = -by_kind.get(LedgerKind.ORDER_REVERSAL, 0)
    click.echo(f"Points credited: {credited:,}; reversed after cancellations and returns: "
               f"{reversed_:,}")
    refused = list_refused(loyalty)
    click.echo(f"Refused and kept for replay: {len(refused)}")
    for row in refused:
        click.echo(f"  #{row.id} {row.event_id}: {row.reason}")
    click.echo("\nTop members:")
    for customer_id in top:
        view = show_member(loyalty, customer_id)
        progress = f"{view.points_to_next_tier} points to {view.next_tier['name']}" \
            if view.next_tier else "top tier"
        click.echo(f"  {customer_id}: {view.tier_name}, {view.points:,} points, "
                   f"{view.total_spent:,} VND spent, {progress}")
