"""The order event of SPEC §3 and its validation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from loyalty.domain.text import escaped, first_control


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

# Integer VND. No single order comes near 10^12 VND (a trillion, some 40 million USD), so a
# larger amount is a sender bug; the bound also keeps every sum the ledger and the reports
# make of such amounts far inside BIGINT (9.2 × 10^18), so no worker ever meets an overflow.
MAX_AMOUNT = 10**12
# Times are stored in UTC. Years 2000 to 2200 in UTC hold in Python (years 1 to 9999, which
# an offset can push out of range: 9999-12-31T23:00-05:00 is year 10000 in UTC), in both
# databases, and in the windows the rules add to them (72 hours, 15 days), with room to
# spare; no order of a shop on Zalo happened, or will happen, outside them.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2201, 1, 1, tzinfo=UTC)


def _no_control(value: Any) -> Any:
    # Before pydantic's own checks: a lone surrogate would otherwise get a cryptic message.
    if isinstance(value, str) and (problem := first_control(value)):
        raise ValueError(f"must not contain a {problem}")
    return value


def _in_storable_range(value: datetime) -> datetime:
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc < LATEST:
        raise ValueError(f"must be from {EARLIEST.year} to {LATEST.year - 1} in UTC")
    return value


Text = Annotated[str, BeforeValidator(_no_control)]
# strict: an amount sent as "1250000" or 1.5 is a sender bug, not something to guess at.
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT, strict=True)]
Time = Annotated[AwareDatetime, AfterValidator(_in_storable_range)]
CustomerId = Annotated[Text, Field(min_length=1, max_length=64)]


class CustomerInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: CustomerId
    phone: Text | None = Field(default=None, pattern=r"^\+?[0-9]{8,15}$")
    zalo_user_id: Text | None = Field(default=None, min_length=1, max_length=64)
    name: Text | None = Field(default=None, max_length=200)
    birthday: date | None = None


class OrderEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Text = Field(min_length=1, max_length=128)
    order_id: Text = Field(min_length=1, max_length=128)
    customer: CustomerInfo
    status: OrderStatus
    payment_status: PaymentStatus
    total_payable: Amount
    shipping_fee: Amount
    placed_at: Time
    occurred_at: Time

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


_customer_id = TypeAdapter(CustomerId)


def is_customer_id(text: str) -> bool:
    """Whether a customer could have this id: anything else names nobody."""
    try:
        _customer_id.validate_python(text)
    except ValidationError:
        return False
    return True


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
        except RecursionError:
            raise InvalidEvent([FieldError(field="(event)", message="nested too deeply")]) \
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
    """A field of a raw event that may be anything at all, for logs and the refused list:
    shown with what no store can hold escaped."""
    for name in path:
        raw = raw.get(name) if isinstance(raw, dict) else None
    if raw is None:
        return None
    try:
        shown = str(raw)
    except (RecursionError, ValueError):  # nested too deeply, or an integer too long
        shown = type(raw).__name__
    return escaped(shown)[:128]


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
