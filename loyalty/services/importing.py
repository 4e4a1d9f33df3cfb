"""Bulk import of historical order events (JSON lines) to seed tiers at launch.

The same rules as live events, applied in-process in batches of one transaction each (a
savepoint per event), not through one Celery task per event. Nothing is sent to customers
for what happened in the past.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from loyalty.bootstrap import Loyalty
from loyalty.domain.events import EventRefused, parse_event
from loyalty.services.events import refused_row
from loyalty.services.orders import Outcome, apply_event
from loyalty.storage.db import transaction

BATCH = 500


@dataclass
class ImportReport:
    read: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    # (line number, reason) of every line that was refused and kept for replay.
    refused: list[tuple[int, str]] = field(default_factory=list)


def _lines(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError:
            yield number, line  # kept as text; parse_event names the problem


def import_events(loyalty: Loyalty, lines: Iterable[str]) -> ImportReport:
    report = ImportReport()
    numbered = _lines(lines)
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

