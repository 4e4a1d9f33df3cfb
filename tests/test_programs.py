"""SPEC §2 "program change": a new program is put in force explicitly, recorded with a version,
and moves every member to the tier its thresholds give, with history; every process picks it
up without a restart, and no event is applied across a change."""

from __future__ import annotations

import itertools
import json
import threading
import time
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import func, select

from devtools.processes import WorkerProcess, wait_for
from loyalty.bootstrap import Loyalty
from loyalty.domain.tiers import tier_for_points
from loyalty.producer import enqueue_order_events
from loyalty.program import Program, parse_program, program_document
from loyalty.services.crosssell import run_scan
from loyalty.services.events import handle_order_event
from loyalty.services.members import show_member
from loyalty.services.programs import apply_program, program_in_force
from loyalty.storage.tables import Customer, LedgerEntry, Message, TierChange
from tests.support.db import assert_ledger_consistent, balances, processed_count
from tests.support.events import order_event
from tests.test_cli import run


def tiers(*spec: tuple[str, int, str]) -> dict[str, Any]:
    """A program document with these (code, threshold, multiplier) tiers."""
    return {"tiers": [{"code": code, "name": code.title(), "name_vi": f"Hạng {code}",
                       "threshold": threshold, "multiplier": multiplier}
                      for code, threshold, multiplier in spec]}


# Silver and Gold come closer, Diamond moves away; every multiplier changes.
CHANGED = parse_program(tiers(("member", 0, "1.1"), ("silver", 800, "1.25"),
                              ("gold", 1900, "1.4"), ("diamond", 4000, "1.6")))


def earn(loyalty: Loyalty, customer_id: str, points: int, n: int = 0) -> None:
    """An order worth ``points`` at ×1.0 (a member's first order)."""
    handle_order_event(loyalty, order_event(f"{customer_id}-{n}", customer_id,
                                            total=points * 1000, shipping=0, at=n),
                       source="test")


def tier_history(loyalty: Loyalty, customer_id: str) -> list[tuple[str, str, str, int | None]]:
    with loyalty.sessions() as session:
        return [(c.from_tier, c.to_tier, c.reason, c.program_version) for c in session.scalars(
            select(TierChange).where(TierChange.customer_id == customer_id)
            .order_by(TierChange.id))]


def test_a_program_change_moves_members_up_and_down_with_history(loyalty: Loyalty,
                                                                 migrated: Any) -> None:
    points_of = {"up": 900, "up_too": 1950, "stays": 1500, "down": 3500, "new": 100}
    for customer_id, points in points_of.items():
        earn(loyalty, customer_id, points)
    elsewhere = Loyalty.from_settings(migrated)  # another process, started before the change
    assert show_member(elsewhere, "up").tier_code == "member"
    with loyalty.sessions() as session:
        ledger_before = session.scalar(select(func.count()).select_from(LedgerEntry))

    report = apply_program(loyalty, CHANGED, "test")
    assert (report.version, report.moved_up, report.moved_down) == (1, 2, 1)
    # Points never change; tiers follow the new thresholds, with a history row each.
    assert balances(loyalty) == points_of
    with loyalty.sessions() as session:
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == ledger_before
        held = dict(session.execute(select(Customer.id, Customer.tier)).all())
    assert held == {"up": "silver", "up_too": "gold", "stays": "silver", "down": "gold",
                    "new": "member"}
    assert tier_history(loyalty, "up") == [("member", "silver", "program change", 1)]
    assert tier_history(loyalty, "up_too") == [("member", "silver", "points", None),
                                               ("silver", "gold", "program change", 1)]
    assert tier_history(loyalty, "down")[-1] == ("diamond", "gold", "program change", 1)
    assert tier_history(loyalty, "stays") == [("member", "silver", "points", None)]
    assert tier_history(loyalty, "new") == []

    # The other process sees the new program at its next transaction, no restart.
    view = show_member(elsewhere, "up")
    assert (view.tier_code, view.next_tier, view.points_to_next_tier) == (
        "silver", {"code": "gold", "name": "Gold", "name_vi": "Hạng gold", "threshold": 1900},
        1000)
    # Credits from now on use the new multipliers: Silver ×1.25.
    earn(elsewhere, "up", 100, n=1)
    with loyalty.sessions() as session:
        last = session.scalars(select(LedgerEntry).order_by(LedgerEntry.id.desc())).first()
    assert last is not None
    assert (last.tier, last.multiplier, last.points) == ("silver", "1.25", 125)
    # The same program again records nothing.
    assert apply_program(loyalty, CHANGED, "test").unchanged
    elsewhere.engine.dispose()


def test_the_scan_and_the_nudge_text_use_the_program_in_force(loyalty: Loyalty) -> None:
    handle_order_event(loyalty, order_event("O-1", "C-near", total=1_700_000, shipping=0,
                                            zalo_user_id="u1"), source="test")
    as_of = loyalty.clock()
    assert run_scan(loyalty, as_of, dry_run=True).selected == 0  # 300 from Gold at 2000
    apply_program(loyalty, CHANGED, "test")
    report = run_scan(loyalty, as_of)
    assert report.selected == 1
    with loyalty.sessions() as session:
        text = session.get_one(Message, report.queued[0]).text
    assert "Chỉ còn 200 điểm nữa, bạn sẽ lên hạng Hạng gold" in text


def test_check_and_apply_refuse_a_bad_file_naming_every_key(loyalty: Loyalty,
                                                          tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[crosssell]\nbonus_pionts = 1\n\n[[tiers]]\ncode = 'member'\n"
                   "name = 'M'\nname_vi = 'M'\nthreshold = 0\nmultiplier = 0.5\n\n"
                   "[[tiers]]\ncode = 'silver'\nname = 'S'\nname_vi = 'S'\nthreshold = 0\n"
                   "multiplier = 1.2\n[messages]\nnudge = '{pionts}'\n", encoding="utf-8")
    for command in ("check", "apply"):
        result = run(loyalty, "program", command, str(bad))
        assert result.returncode == 1, result.stderr
        for key in ("crosssell.bonus_pionts", "tiers[0] (member).multiplier",
                    "messages.nudge", "thresholds must increase"):
            assert key in result.stderr, (command, key, result.stderr)
    assert program_in_force(loyalty).version is None  # nothing was applied
    missing = run(loyalty, "program", "check", str(tmp_path / "none.toml"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_show_check_apply_and_upgrade_from_the_command_line(loyalty: Loyalty,
                                                            tmp_path: Path) -> None:
    earn(loyalty, "C-1", 900)
    shown = run(loyalty, "program", "show")
    assert shown.stdout.startswith("# no program stored yet: the configured one, from defaults")
    assert parse_program(tomllib.loads(shown.stdout)) == Program()

    # What `show` prints is a program file: edit it, check it, apply it.
    edited = tmp_path / "program.toml"
    edited.write_text(shown.stdout.replace("threshold = 1000", "threshold = 800"),
                      encoding="utf-8")
    checked = run(loyalty, "program", "check", str(edited))
    assert checked.returncode == 0 and "silver from 800 ×1.2" in checked.stdout
    applied = run(loyalty, "program", "apply", str(edited))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == (f"program version 1 from {edited} is in force: "
                                      "1 member(s) moved up a tier, 0 down")
    assert "`loyalty db upgrade` would put it back" in applied.stderr
    as_json = json.loads(run(loyalty, "program", "show", "--json").stdout)
    assert (as_json["version"], as_json["source"]) == (1, str(edited))
    assert as_json["program"]["tiers"][1] == {**program_document(Program())["tiers"][1],
                                              "threshold": 800}
    assert run(loyalty, "program", "show").stdout.startswith(
        "# program version 1, in force since ")

    # `db upgrade` puts the configured program (the defaults here) back, as version 2.
    upgraded = run(loyalty, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "program version 2 from defaults is in force: 0 member(s) moved up a tier, " \
           "1 down" in upgraded.stdout
    assert "is in force already" in run(loyalty, "db", "upgrade").stdout
    assert show_member(loyalty, "C-1").tier_code == "member"
    assert [row[:3] for row in tier_history(loyalty, "C-1")] == [
        ("member", "silver", "program change"), ("silver", "member", "program change")]


@pytest.mark.workers
def test_events_applied_by_workers_during_a_change_leave_every_tier_as_the_new_program_says(
        loyalty: Loyalty, workers: list[WorkerProcess], celery_sender: Celery) -> None:
    old = loyalty.program
    # 40 members, 30 orders each of 40 to 69 points: every member crosses thresholds of
    # both programs while the change is made.
    amounts = {(m, n): (40 + (m + n) % 30) * 1000 for n in range(30) for m in range(40)}
    events = [order_event(f"W-{m}-{n}", f"W-{m}", total=amount, shipping=0, at=n)
              for (m, n), amount in amounts.items()]
    # One round of orders at a time (one task each): members move up together. After 17
    # rounds they stand around 900 points: between the old Silver (1000) and the new one
    # (800), so the change moves them; it is made while the other 13 rounds are applied.
    def rounds(first: int, last: int, pause: float = 0) -> None:
        for n in range(first, last):
            enqueue_order_events(events[n * 40:(n + 1) * 40], celery=celery_sender)
            # Spread out, so that the change finds a gap between the workers' transactions
            # (on SQLite, where no lock queue is fair, it could otherwise wait them all out).
            time.sleep(pause)

    rounds(0, 17)
    wait_for(lambda: processed_count(loyalty) >= 17 * 40, 120, "the workers never got going")
    rest = threading.Thread(target=rounds, args=(17, 30, 0.05))
    rest.start()
    report = apply_program(loyalty, CHANGED, "test")
    assert processed_count(loyalty) < len(events), "all applied before the change: retry"
    rest.join()
    wait_for(lambda: processed_count(loyalty) >= len(events), 180,
             f"workers did not apply {len(events)} events")

    assert_ledger_consistent(loyalty)
    with loyalty.sessions() as session:
        points = dict(session.execute(select(Customer.id, Customer.points)).all())
        held = dict(session.execute(select(Customer.id, Customer.tier)).all())
        credits = list(session.scalars(select(LedgerEntry).where(
            LedgerEntry.kind == "order_credit").order_by(LedgerEntry.id)))
    assert held == {member: tier_for_points(CHANGED, p).code for member, p in points.items()}

    def booked_under(program: Program, row: LedgerEntry) -> bool:
        """The credit is what ``program`` gives at the balance before it."""
        tier = tier_for_points(program, row.balance_after - row.points)
        m, n = (int(part) for part in row.order_id.split("-")[1:])
        return (row.tier, Decimal(row.multiplier)) == (tier.code, tier.multiplier) and \
            row.points == int(Decimal(amounts[m, n]) / 1000 * tier.multiplier)

    # Each credit was booked wholly under the old program or wholly under the new one, and
    # every credit under the old one comes before every credit under the new one: workers
    # took the new version up without a restart, and none applied an event across it.
    under = ["old" if booked_under(old, row) else "new" if booked_under(CHANGED, row) else "?"
             for row in credits]
    assert len(under) == len(events) and "?" not in under
    assert under == sorted(under, reverse=True) and {"old", "new"} <= set(under)
    # The members' histories hold together across the change.
    for member in points:
        moves = tier_history(loyalty, member)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(moves)), moves
        assert not moves or moves[-1][1] == held[member]
    assert report.moved_up > 0
