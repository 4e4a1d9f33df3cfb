"""The ``loyalty`` command line, run as a process the way ops run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from devtools.processes import ROOT, settings_env
from loyalty.bootstrap import Loyalty
from tests.support.db import balances
from tests.support.events import order_event

LOYALTY = str(Path(sys.executable).parent / "loyalty")


def run(loyalty: Loyalty, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOYALTY, *args], cwd=ROOT, env=settings_env(loyalty.settings, **env),
                          capture_output=True, text=True, timeout=120)


def test_import_keeps_good_lines_reports_bad_ones_and_can_replay(
        loyalty: Loyalty, tmp_path: Path) -> None:
    bad = order_event("SO-3", "C-2")
    bad["shipping_fee"] = -1
    lines = [json.dumps(order_event("SO-1", "C-1", "pending", "unpaid", at=0)),
             json.dumps(order_event("SO-1", "C-1", at=1)),
             "this is not json",
             json.dumps(bad),
             "",
             json.dumps(order_event("SO-2", "C-1", "cancelled", "refunded", at=2))]
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = run(loyalty, "events", "import", str(history))
    assert result.returncode == 0, result.stderr
    assert "read 5 events" in result.stdout
    assert "line 3: refused" in result.stderr and "line 4: refused" in result.stderr
    assert "shipping_fee" in result.stderr
    assert balances(loyalty) == {"C-1": 1220}

    # The same file again changes nothing: the good lines are duplicates now.
    again = run(loyalty, "events", "import", str(history))
    assert "3 duplicate" in again.stdout and balances(loyalty) == {"C-1": 1220}

    listed = run(loyalty, "events", "rejected")
    assert listed.returncode == 0
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert len(rows) == 4  # two bad lines, twice imported
    assert any("shipping_fee" in row[-1] and row[2] == "import" for row in rows)
    replay = run(loyalty, "events", "replay", rows[0][0])
    assert replay.returncode == 1 and "refused" in replay.stdout
    assert run(loyalty, "events", "replay", "999999").returncode != 0


def test_member_show_as_text_and_json(loyalty: Loyalty, tmp_path: Path) -> None:
    history = tmp_path / "one.jsonl"
    history.write_text(json.dumps(order_event("SO-1", "C-42", total=1_750_000, shipping=30_000))
                       + "\n", encoding="utf-8")
    run(loyalty, "events", "import", str(history))
    shown = run(loyalty, "member", "show", "C-42", "--json")
    view = json.loads(shown.stdout)
    assert (view["tier"]["code"], view["points"], view["points_to_next_tier"]) == \
        ("silver", 1720, 280)
    assert view["spend_to_next_tier"] == 233_334
    assert (view["tier"]["name_vi"], view["tier"]["threshold"]) == ("Bạc", 1000)
    assert view["next_tier"]["name_vi"] == "Vàng" and view["offer"] is None
    text = run(loyalty, "member", "show", "C-42").stdout
    assert "Silver, 1720 points" in text and "280 points" in text
    missing = run(loyalty, "member", "show", "nobody")
    assert missing.returncode != 0 and "no member nobody" in missing.stderr


def test_a_bad_program_file_stops_start_up_naming_the_key(loyalty: Loyalty,
                                                         tmp_path: Path) -> None:
    program = tmp_path / "program.toml"
    program.write_text(
        "[[tiers]]\ncode='member'\nname='Member'\nname_vi='Thành viên'\nthreshold=0\n"
        "multiplier=1.0\n[[tiers]]\ncode='silver'\nname='Silver'\nname_vi='Bạc'\n"
        "threshold=0\nmultiplier=1.2\n", encoding="utf-8")
    result = run(loyalty, "member", "show", "C-1", LOYALTY_PROGRAM_FILE=str(program))
    assert result.returncode != 0
    assert "tiers" in result.stderr and "thresholds must increase" in result.stderr

    program.write_text("[crosssell]\nbonus_pionts = 100\n", encoding="utf-8")
    result = run(loyalty, "member", "show", "C-1", LOYALTY_PROGRAM_FILE=str(program))
    assert "crosssell.bonus_pionts" in result.stderr

    program.write_text("[[tiers]]\ncode='member'\nname='M'\nname_vi='M'\nthreshold=0\n"
                       "multiplier=0.5\n", encoding="utf-8")
    result = run(loyalty, "member", "show", "C-1", LOYALTY_PROGRAM_FILE=str(program))
    assert "tiers[0] (member).multiplier" in result.stderr


def test_db_upgrade_is_repeatable(loyalty: Loyalty) -> None:
    first, second = run(loyalty, "db", "upgrade"), run(loyalty, "db", "upgrade")
    assert first.returncode == second.returncode == 0
    assert "up to date" in second.stdout


def test_crosssell_run_counts_and_queues_once_per_day(loyalty: Loyalty, tmp_path: Path) -> None:
    history = tmp_path / "near.jsonl"
    history.write_text("\n".join(json.dumps(event) for event in [
        order_event("N-1", "C-near", total=950_000, shipping=0, zalo_user_id="111"),
        order_event("N-2", "C-mute", total=960_000, shipping=0, phone=None),  # no way to reach them
        order_event("N-3", "C-far", total=500_000, shipping=0, zalo_user_id="333"),
    ]) + "\n", encoding="utf-8")
    run(loyalty, "events", "import", str(history))
    as_of = "2026-11-23T09:00:00+07:00"
    dry = run(loyalty, "crosssell", "run", "--as-of", as_of, "--dry-run")
    caps = "over the monthly cap 0, no contact within 6 months 0"
    assert dry.stdout.strip() == f"selected 1, queued 0, skipped unreachable 1, {caps} (dry run)"
    first = run(loyalty, "crosssell", "run", "--as-of", as_of)
    assert first.stdout.strip() == f"selected 1, queued 1, skipped unreachable 1, {caps}"
    again = run(loyalty, "crosssell", "run", "--as-of", "2026-11-23T15:00:00+07:00")
    assert again.stdout.strip() == f"selected 0, queued 0, skipped unreachable 1, {caps}"
    naive = run(loyalty, "crosssell", "run", "--as-of", "2026-11-23T09:00:00")
    assert naive.returncode != 0 and "offset" in naive.stderr
    assert run(loyalty, "tags", "sweep", "--as-of", as_of).stdout.strip() == "cleared 0 tag(s)"
    birthdays = run(loyalty, "birthdays", "run", "--as-of", as_of)
    assert birthdays.returncode == 0 and "gifts queued 0" in birthdays.stdout
