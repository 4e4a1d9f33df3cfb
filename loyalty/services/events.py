"""Order events from any entry point: validate, apply in one transaction, or keep refused."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from loyalty.domain.events import (
    EventRefused,
    FieldError,
    InvalidEvent,
    OrderEvent,
    parse_event,
    raw_field,
)
from loyalty.domain.orders import Outcome
from loyalty.domain.text import UNSTORABLE, escaped
from loyalty.services.orders import Applied, apply_events
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


def handle_order_events(loyalty: Loyalty, raws: Sequence[Any], *, source: str
                        ) -> list[Applied]:
    """The whole life of a delivered batch: applied in one transaction, bad events kept
    where ops can replay them (never raised), then the messages it created handed to the
    senders. One ``Applied`` per event, in order."""
    started = time.perf_counter()
    parsed: list[OrderEvent] = []
    invalid: dict[int, InvalidEvent] = {}
    for index, raw in enumerate(raws):
        try:
            parsed.append(parse_event(raw))
        except InvalidEvent as refusal:
            invalid[index] = refusal
    with transaction(loyalty.sessions) as session:
        applied = iter(apply_events(session, loyalty.program, parsed, loyalty.clock(),
                                    notify=True))
        results = [_invalid(raws[index], invalid[index]) if index in invalid else next(applied)
                   for index in range(len(raws))]
        kept = {index: refused_row(raws[index], result.refusal.errors, source, loyalty.clock())
                for index, result in enumerate(results) if result.refusal is not None}
        session.add_all(kept.values())
        session.flush()
    dispatch(loyalty, [message for result in results for message in result.messages])
    ms = _ms_since(started)
    for index, result in enumerate(results):
        fields = {"event_id": result.event_id, "order_id": result.order_id,
                  "customer_id": result.customer_id, "outcome": result.outcome.value,
                  "batch": len(raws), "ms": ms}
        if index in kept:
            log.warning("event refused", extra={**fields, "refused_id": kept[index].id,
                                                "reason": kept[index].reason})
        else:
            log.info("event handled", extra={**fields, "points": result.points})
    return results


def handle_order_event(loyalty: Loyalty, raw: Any, *, source: str) -> Applied:
    """One delivered event: a batch of one."""
    [applied] = handle_order_events(loyalty, [raw], source=source)
    return applied


def _invalid(raw: Any, refusal: InvalidEvent) -> Applied:
    return Applied(raw_field(raw, "event_id") or "", raw_field(raw, "order_id") or "",
                   raw_field(raw, "customer", "id") or "", Outcome.REFUSED, refusal=refusal)


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
        try:
            [applied] = apply_events(session, loyalty.program, [parse_event(row.payload)],
                                     loyalty.clock(), notify=True)
        except InvalidEvent as refusal:
            applied = _invalid(row.payload, refusal)
        row.replay_outcome = applied.outcome
        if applied.refusal is not None:
            row.reason = str(applied.refusal)
            row.errors = [e.model_dump() for e in applied.refusal.errors]
        else:
            row.replayed_at = loyalty.clock()
    dispatch(loyalty, applied.messages)
    return applied
