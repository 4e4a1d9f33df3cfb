"""Bulk import of historical order events (JSON lines) to seed tiers at launch.

The same rules as live events, applied in-process in batches of one transaction each (a
savepoint per event), not through one Celery task per event. Nothing is sent to customers
for what happened in the past. With ``jobs`` > 1 the file is split by customer over that
many processes: a customer's events stay in one process, in file order, so every member's
ledger is what a single process would have written.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing import get_context
from typing import Any

from loyalty.bootstrap import Loyalty
from loyalty.domain.events import EventRefused, parse_event
from loyalty.services.events import refused_row
from loyalty.services.orders import Outcome, apply_event
from loyalty.settings import Settings
from loyalty.storage.db import transaction

BATCH = 500
# Lines read, split and imported before the next ones are read: memory stays bounded, and
# a customer's events in one chunk are applied before those of the next chunk.
CHUNK = 20_000

Line = tuple[int, Any]  # (line number, the parsed JSON or the raw text)


@dataclass
class ImportReport:
    read: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    # (line number, reason) of every line that was refused and kept for replay.
    refused: list[tuple[int, str]] = field(default_factory=list)

    def add(self, other: ImportReport) -> None:
        self.read += other.read
        for outcome, count in other.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + count
        self.refused = sorted(self.refused + other.refused)


def _lines(lines: Iterable[str]) -> Iterator[Line]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError:
            yield number, line  # kept as text; parse_event names the problem


def _import_lines(loyalty: Loyalty, numbered: Iterable[Line]) -> ImportReport:
    report = ImportReport()
    numbered = iter(numbered)
    while batch := list(islice(numbered, BATCH)):
        with transaction(loyalty.sessions) as session:
            now = loyalty.clock()
            for number, raw in batch:
                report.read += 1
                try:
                    event = parse_event(raw)
                    with session.begin_nested():
                        outcome = apply_event(session, loyalty.program, event, now).outcome
                except EventRefused as refused:
                    session.add(refused_row(raw, refused.errors, "import", now))
                    report.refused.append((number, str(refused)))
                    outcome = Outcome.REFUSED
                report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
    return report


_process_loyalty: Loyalty | None = None  # one per import process, set when it starts


def _start_process(settings: Settings) -> None:
    global _process_loyalty
    _process_loyalty = Loyalty.from_settings(settings)


def _import_part(part: list[Line]) -> ImportReport:
    assert _process_loyalty is not None
    return _import_lines(_process_loyalty, part)


def _partition(line: Line, jobs: int) -> int:
    raw = line[1]
    customer = raw.get("customer") if isinstance(raw, dict) else None
    key = str(customer.get("id")) if isinstance(customer, dict) else ""
    return zlib.crc32(key.encode()) % jobs


def import_events(loyalty: Loyalty, lines: Iterable[str], *, jobs: int = 1) -> ImportReport:
    if jobs <= 1:
        return _import_lines(loyalty, _lines(lines))
    report = ImportReport()
    numbered = _lines(lines)
    # spawn, not fork: a child must not inherit this process's database connections.
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_start_process,
                             initargs=(loyalty.settings,)) as pool:
        while chunk := list(islice(numbered, CHUNK)):
            parts: list[list[Line]] = [[] for _ in range(jobs)]
            for line in chunk:
                parts[_partition(line, jobs)].append(line)
            for part_report in pool.map(_import_part, parts):
                report.add(part_report)
    return report
