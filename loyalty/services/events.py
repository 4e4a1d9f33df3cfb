"""Order events from any entry point: validate, apply in one transaction, or keep refused."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from loyalty.domain.events import (
    EventRefused,
    FieldError,
    OrderEvent,
    parse_event,
    raw_field,
)
from loyalty.domain.orders import Outcome
from loyalty.domain.text import UNSTORABLE, escaped
from loyalty.services.orders import Applied, apply_event
from loyalty.services.outbox import dispatch
from loyalty.storage.db import transaction
from loyalty.storage.tables import RejectedEvent

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty

log = logging.getLogger("loyalty.events")


def _payload_text(raw: Any) -> str:
    """The refused event as text either database can store, whatever it holds.

    What the databases cannot hold is escaped, not dropped: a JSON payload stays the same
    document, so a replay reads exactly what was sent.
    """
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="backslashreplace")
    if isinstance(raw, str):
        return escaped(raw, UNSTORABLE)  # tabs and newlines may be JSON's own whitespace
    try:
        return escaped(json.dumps(raw, ensure_ascii=False, default=str))
    except (RecursionError, ValueError):
        # Nested deeper than Python can write (the webhook refuses such bodies before this),
        # or an integer too long to print: the row is kept all the same, with its reason.
        return json.dumps(f"(a {type(raw).__name__} that cannot be written as JSON)")


def refused_row(raw: Any, errors: list[FieldError], source: str, now: datetime,
                reason: str | None = None) -> RejectedEvent:
    return RejectedEvent(
        event_id=raw_field(raw, "event_id"), source=source, payload=_payload_text(raw),
        reason=escaped(reason or str(EventRefused(errors))),
        errors=[{"field": escaped(e.field), "message": escaped(e.message)} for e in errors],
        created_at=now)


def keep_refused(loyalty: Loyalty, raw: Any, errors: list[FieldError], source: str) -> int:
    """Keep a refused event where ops can list and replay it; returns its id."""
    with transaction(loyalty.sessions) as session:
        row = refused_row(raw, errors, source, loyalty.clock())
        session.add(row)
        session.flush()
        return row.id


def keep_failed(loyalty: Loyalty, raw: Any, error: Exception, source: str) -> int:
    """Keep an event that could not be applied for a reason that is not about the event
    (a bug, say): nothing is dropped, and ops replay it once the cause is fixed."""
    reason = f"not applied: unexpected {type(error).__name__}: {error}"
    with transaction(loyalty.sessions) as session:
        row = refused_row(raw, [], source, loyalty.clock(), reason=reason[:2000])
        session.add(row)
        session.flush()
        log.error("event kept after an unexpected error", extra={
            "event_id": row.event_id, "refused_id": row.id, "error": type(error).__name__})
        return row.id


def apply_valid_event(loyalty: Loyalty, event: OrderEvent) -> Applied:
    """One transaction, then its messages are handed to the senders; raises EventRefused
    when the event cannot be applied."""
    with transaction(loyalty.sessions) as session:
        applied = apply_event(session, loyalty.program, event, loyalty.clock(),
                              notify=True)
    dispatch(loyalty, applied.messages)
    return applied


def handle_order_event(loyalty: Loyalty, raw: Any, *, source: str) -> Applied:
    """The whole life of one delivered event; bad input is kept, never raised."""
    started = time.perf_counter()
    fields = {"event_id": raw_field(raw, "event_id"), "order_id": raw_field(raw, "order_id"),
              "customer_id": raw_field(raw, "customer", "id")}
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
