"""The member view of SPEC §4: where a customer stands, as the Mini App shows it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loyalty.domain.crosssell import BonusOffer
from loyalty.domain.tiers import (
    next_tier,
    points_to_next_tier,
    spend_to_next_tier,
    tier_for_points,
)
from loyalty.program import Program


@dataclass(frozen=True)
class Tag:
    name: str
    expires_at: datetime


@dataclass(frozen=True)
class MemberView:
    # None: a signed-in Zalo user not linked to a customer yet (first tier, 0 points).
    customer_id: str | None
    tier_code: str
    tier_name: str
    tier_name_vi: str
    tier_threshold: int
    points: int
    total_spent: int
    next_tier: dict[str, Any] | None
    points_to_next_tier: int | None
    spend_to_next_tier: int | None
    benefits: tuple[str, ...]
    next_tier_benefits: tuple[str, ...]
    tags: tuple[Tag, ...]
    # The cross-sell bonus still to be earned, while its window runs.
    offer: BonusOffer | None = None

    def to_json(self, timezone: Any) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "tier": {"code": self.tier_code, "name": self.tier_name,
                     "name_vi": self.tier_name_vi, "threshold": self.tier_threshold},
            "points": self.points,
            "total_spent": self.total_spent,
            "next_tier": self.next_tier,
            "points_to_next_tier": self.points_to_next_tier,
            "spend_to_next_tier": self.spend_to_next_tier,
            "benefits": list(self.benefits),
            "next_tier_benefits": list(self.next_tier_benefits),
            "tags": [{"name": tag.name,
                      "expires_at": tag.expires_at.astimezone(timezone).isoformat()}
                     for tag in self.tags],
            "offer": None if self.offer is None else {
                "bonus_points": self.offer.bonus_points,
                "order_before": self.offer.order_before.astimezone(timezone).isoformat()},
        }


def member_view(program: Program, customer_id: str | None, points: int, total_spent: int,
                tags: tuple[Tag, ...] = (), offer: BonusOffer | None = None) -> MemberView:
    tier = tier_for_points(program, points)
    upper = next_tier(program, tier)
    return MemberView(
        customer_id=customer_id, tier_code=tier.code, tier_name=tier.name,
        tier_name_vi=tier.name_vi, tier_threshold=tier.threshold, points=points,
        total_spent=total_spent,
        next_tier=None if upper is None else
        {"code": upper.code, "name": upper.name, "name_vi": upper.name_vi,
         "threshold": upper.threshold},
        points_to_next_tier=points_to_next_tier(program, points),
        spend_to_next_tier=spend_to_next_tier(program, points),
        benefits=tier.benefits, next_tier_benefits=() if upper is None else upper.benefits,
        tags=tags, offer=offer)
