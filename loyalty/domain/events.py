"""The order event of SPEC §3 and its validation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)


class OrderStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    SHIPPING = "shipping"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    RETURNED = "returned"


class PaymentStatus(StrEnum):
    UNPAID = "unpaid"
    PAID = "paid"
    REFUNDED = "refunded"


FINAL_STATUSES = frozenset({OrderStatus.CANCELLED, OrderStatus.RETURNED})


class CustomerInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1, max_length=64)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9]{8,15}$")
    zalo_user_id: str | None = Field(default=None, min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    birthday: date | None = None


class OrderEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str = Field(min_length=1, max_length=128)
    order_id: str = Field(min_length=1, max_length=128)
    customer: CustomerInfo
    status: OrderStatus
    payment_status: PaymentStatus
    # strict: an amount sent as "1250000" or 1.5 is a sender bug, not something to guess at.
    total_payable: int = Field(ge=0, strict=True)
    shipping_fee: int = Field(ge=0, strict=True)
    placed_at: AwareDatetime
    occurred_at: AwareDatetime
    # VND refunded so far for this order, cumulative (SPEC §3); None: the sender said nothing.
    refunded_amount: int | None = Field(default=None, ge=0, strict=True)

    @field_validator("refunded_amount")
    @classmethod
    def _refund_within_total(cls, value: int | None, info: ValidationInfo) -> int | None:
        total = info.data.get("total_payable")  # absent when it was itself invalid
        if value is not None and total is not None and value > total:
            raise ValueError(f"must not be more than total_payable ({total})")
        return value

    @property
    def earns(self) -> bool:
        """This event shows the order delivered and paid (SPEC §2, when an order earns)."""
        return self.status is OrderStatus.DELIVERED and self.payment_status is PaymentStatus.PAID

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @property
    def digest(self) -> str:
        """SHA-256 of the event's content, the same however the sender spelled it (key
        order, time offsets): one event id must always carry the same content."""
        canonical = json.dumps(self.model_dump(exclude_none=True), sort_keys=True,
                               separators=(",", ":"), default=_canonical)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"no canonical form for {type(value).__name__}")


class FieldError(BaseModel):
    field: str
    message: str


class EventRefused(ValueError):
    """An event that will not be applied; ``errors`` names every field at fault."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


class InvalidEvent(EventRefused):
    """An event that breaks the format of SPEC §3."""


class EventConflict(EventRefused):
    """An event id already processed with other content: a sender's bug, changes nothing."""

    def __init__(self, event_id: str):
        super().__init__([FieldError(
            field="event_id",
            message=f"{event_id} was already processed with other content; this one changes "
                    "nothing")])


def _field_name(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(event)"


def parse_event(raw: Any) -> OrderEvent:
    """Validate one event (a dict or its JSON text) or raise InvalidEvent naming each field."""
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError as error:
            raise InvalidEvent([FieldError(field="(event)", message=f"not JSON: {error}")]) \
                from None
    if not isinstance(raw, dict):
        raise InvalidEvent([FieldError(field="(event)", message="must be a JSON object")])
    try:
        return OrderEvent.model_validate(raw)
    except ValidationError as error:
        raise InvalidEvent([
            FieldError(field=_field_name(issue["loc"]), message=issue["msg"])
            for issue in error.errors()
        ]) from None


def raw_field(raw: Any, *path: str) -> str | None:
    """A field of a raw event that may be anything at all, for logs and the refused list."""
    for name in path:
        raw = raw.get(name) if isinstance(raw, dict) else None
    return str(raw)[:128] if raw is not None else None


def validate_all(raws: Iterable[Any]) -> tuple[list[OrderEvent], list[dict[str, Any]]]:
    """Every event checked; the problems carry each bad event's index and field errors."""
    events: list[OrderEvent] = []
    problems: list[dict[str, Any]] = []
    for index, raw in enumerate(raws):
        try:
            events.append(parse_event(raw))
        except InvalidEvent as error:
            problems.append({"index": index, "event_id": raw_field(raw, "event_id"),
                             "errors": [e.model_dump() for e in error.errors]})
    return events, problems
