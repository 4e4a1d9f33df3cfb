"""Order events from any entry point: validate, apply in one transaction, or keep refused."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from loyalty.bootstrap import Loyalty
from loyalty.domain.events import EventRefused, FieldError, InvalidEvent, OrderEvent, parse_event
from loyalty.services.channels import channel_for
from loyalty.services.orders import Applied, Outcome, apply_event
from loyalty.storage.db import transaction
from loyalty.storage.tables import RejectedEvent

log = logging.getLogger("loyalty.events")


def _payload_text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        return raw
    return json.dumps(raw, ensure_ascii=False, default=str)


def _field(raw: Any, *path: str) -> str | None:
    """A field of a raw event that may be anything at all, for logs and the refused list."""
    for name in path:
        raw = raw.get(name) if isinstance(raw, dict) else None
    return str(raw)[:128] if raw is not None else None


def refused_row(raw: Any, errors: list[FieldError], source: str,
                now: datetime) -> RejectedEvent:
    return RejectedEvent(
        event_id=_field(raw, "event_id"), source=source, payload=_payload_text(raw),
        reason=str(EventRefused(errors)), errors=[e.model_dump() for e in errors],
        created_at=now)


def keep_refused(loyalty: Loyalty, raw: Any, errors: list[FieldError], source: str) -> int:
    """Keep a refused event where ops can list and replay it; returns its id."""
    with transaction(loyalty.sessions) as session:
        row = refused_row(raw, errors, source, loyalty.clock())
        session.add(row)
        session.flush()
        return row.id


def apply_valid_event(loyalty: Loyalty, event: OrderEvent) -> Applied:
    """One transaction; raises EventRefused when the event cannot be applied."""
    with transaction(loyalty.sessions) as session:
        return apply_event(session, loyalty.program, event, loyalty.clock(),
                           notify_channel=channel_for(loyalty.settings))


def handle_order_event(loyalty: Loyalty, raw: Any, *, source: str) -> Applied:
    """The whole life of one delivered event; bad input is kept, never raised."""
    started = time.perf_counter()
    fields = {"event_id": _field(raw, "event_id"), "order_id": _field(raw, "order_id"),
              "customer_id": _field(raw, "customer", "id")}
    try:
        applied = apply_valid_event(loyalty, parse_event(raw))
    except EventRefused as refused:
        refused_id = keep_refused(loyalty, raw, refused.errors, source)
        log.warning("event refused", extra={
            **fields, "outcome": Outcome.REFUSED.value, "refused_id": refused_id,
            "reason": str(refused), "ms": _ms_since(started)})
        return Applied(Outcome.REFUSED, fields["customer_id"] or "")
    log.info("event handled", extra={**fields, "outcome": applied.outcome.value,
                                     "points": applied.points, "ms": _ms_since(started)})
    return applied


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def validate_all(raws: Iterable[Any]) -> tuple[list[OrderEvent], list[dict[str, Any]]]:
    """Every event checked; the problems carry each bad event's index and field errors."""
    events: list[OrderEvent] = []
    problems: list[dict[str, Any]] = []
    for index, raw in enumerate(raws):
        try:
            events.append(parse_event(raw))
        except InvalidEvent as error:
            problems.append({"index": index, "event_id": _field(raw, "event_id"),
                             "errors": [e.model_dump() for e in error.errors]})
    return events, problems


def list_refused(loyalty: Loyalty, *, include_replayed: bool = False) -> list[RejectedEvent]:
    with transaction(loyalty.sessions) as session:
        query = select(RejectedEvent).order_by(RejectedEvent.id)
        if not include_replayed:
            query = query.where(RejectedEvent.replayed_at.is_(None))
        return list(session.scalars(query))


class UnknownRefusedEvent(LookupError):
    pass


def replay_refused(loyalty: Loyalty, refused_id: int) -> Applied:
    """Apply a kept event again; it leaves the list only once it no longer fails."""
    with transaction(loyalty.sessions) as session:
        row = session.get(RejectedEvent, refused_id)
        if row is None:
            raise UnknownRefusedEvent(refused_id)
        payload = row.payload
    try:
        applied = apply_valid_event(loyalty, parse_event(payload))
    except EventRefused as refused:
        applied = Applied(Outcome.REFUSED, "")
        with transaction(loyalty.sessions) as session:
            row = session.get_one(RejectedEvent, refused_id)
            row.reason = str(refused)
            row.errors = [e.model_dump() for e in refused.errors]
            row.replay_outcome = applied.outcome
        return applied
    with transaction(loyalty.sessions) as session:
        row = session.get_one(RejectedEvent, refused_id)
        row.replayed_at = loyalty.clock()
        row.replay_outcome = applied.outcome
    return applied
