"""Bulk import of historical order events (JSON lines) to seed tiers at launch.

The same code as live events (``services.orders.apply_events``: the domain's rules in
memory, set-wise writes, ``COPY`` on PostgreSQL), a chunk of the file per transaction
instead of one Celery task per batch; so a file imported and the same events sent live
give the same ledger. Nothing is sent to customers for what happened in the past. With
``jobs`` > 1 the file is split by customer over that many processes: a customer's events
stay in one process, in file order, so every member's ledger is what a single process
would have written.
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
from loyalty.domain.events import InvalidEvent, OrderEvent, parse_event
from loyalty.domain.orders import Outcome
from loyalty.services.events import refused_row
from loyalty.services.orders import apply_events
from loyalty.settings import Settings
from loyalty.storage.db import transaction

# Events applied per transaction: big enough that its statements are few per event.
BATCH = 5_000
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

    def count(self, outcome: Outcome, number: int, reason: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if outcome is Outcome.REFUSED:
            self.refused.append((number, reason))

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
    while chunk := list(islice(numbered, BATCH)):
        parsed: list[tuple[Line, OrderEvent]] = []
        with transaction(loyalty.sessions) as session:
            now = loyalty.clock()
            for number, raw in chunk:
                try:
                    parsed.append(((number, raw), parse_event(raw)))
                except InvalidEvent as refusal:
                    session.add(refused_row(raw, refusal.errors, "import", now))
                    report.count(Outcome.REFUSED, number, str(refusal))
            applied = apply_events(session, loyalty.program, [e for _, e in parsed], now)
            for ((number, raw), _), result in zip(parsed, applied, strict=True):
                if result.refusal is not None:
                    session.add(refused_row(raw, result.refusal.errors, "import", now))
                report.count(result.outcome, number, str(result.refusal or ""))
        report.read += len(chunk)
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
