"""The cross-sell holdout: SPEC §2 row "cross-sell holdout". Of the members a scan selects,
``holdout_percent`` are held out (no message, no tag, no bonus) so that the campaign's
results can compare them with the nudged ones. No I/O.

The assignment is a hash of (member, campaign day), not a random draw: a scan run twice on
one day, or on two workers at once, puts every member in the same group, and anyone can
recompute why a member was held out. SHA-256 spreads ids evenly whatever their shape
(``C-1``, ``C-2`` … are as good as random ones).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class Group(StrEnum):
    NUDGED = "nudged"
    HELD_OUT = "held_out"


# 8 bytes of the digest: 2**64 buckets, far finer than any percentage.
_BUCKET_BYTES = 8
_BUCKETS = 2 ** (8 * _BUCKET_BYTES)


def holdout_position(customer_id: str, day: date) -> float:
    """Where (member, day) falls in ``[0, 100)``: the same answer every time."""
    digest = hashlib.sha256(f"{customer_id}|{day.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:_BUCKET_BYTES], "big") * 100 / _BUCKETS


def group_of(customer_id: str, day: date, holdout_percent: int) -> Group:
    """Held out when the member's position for the day is below ``holdout_percent``."""
    held = holdout_position(customer_id, day) < holdout_percent
    return Group.HELD_OUT if held else Group.NUDGED


@dataclass(frozen=True)
class Split:
    nudged: tuple[str, ...]
    held_out: tuple[str, ...]


def split(customer_ids: Iterable[str], day: date, holdout_percent: int) -> Split:
    """The members of one scan, in the order given, by group."""
    nudged: list[str] = []
    held_out: list[str] = []
    for customer_id in customer_ids:
        group = group_of(customer_id, day, holdout_percent)
        (held_out if group is Group.HELD_OUT else nudged).append(customer_id)
    return Split(tuple(nudged), tuple(held_out))
