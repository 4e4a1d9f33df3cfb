"""A plain model of what an order finally adds (SPEC §2–3), written apart from the domain so
that the property tests compare the system with an independent statement of the rules."""

from __future__ import annotations

from dataclasses import dataclass

# (status, payment_status, refunded_amount or None) of one event.
Step = tuple[str, str, int | None]


@dataclass(frozen=True)
class Expected:
    """How an order ends, whatever the order its events arrive in."""

    keeps: bool  # it earned, and was neither cancelled, returned nor refunded in full
    earning: int  # total_payable - shipping_fee, never below 0
    refunded: int  # the largest refunded_amount of its events

    def points(self, credit: int) -> int:
        """What it adds in the end, given its credit: the credit less the partial refund's
        share ``floor(credit × refunded / earning)``."""
        if not self.keeps:
            return 0
        return credit - credit * self.refunded // self.earning if self.refunded else credit

    @property
    def spend(self) -> int:
        return max(0, self.earning - self.refunded) if self.keeps else 0


def expected(steps: list[Step], total: int, shipping: int) -> Expected:
    earning = max(0, total - shipping)
    refunded = max((amount or 0 for _, _, amount in steps), default=0)
    earns = any((status, paid) == ("delivered", "paid") for status, paid, _ in steps)
    final = any(status in ("cancelled", "returned") for status, _, _ in steps)
    full = any(paid == "refunded" for _, paid, _ in steps) or 0 < refunded >= earning
    return Expected(earns and not final and not full, earning, refunded)
