"""The member view of SPEC §4: where a customer stands, as the Mini App shows it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    customer_id: str
    tier_code: str
    tier_name: str
    points: int
    total_spent: int
    next_tier: dict[str, Any] | None
    points_to_next_tier: int | None
    spend_to_next_tier: int | None
    benefits: tuple[str, ...]
    next_tier_benefits: tuple[str, ...]
    tags: tuple[Tag, ...]

    def to_json(self, timezone: Any) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "tier": {"code": self.tier_code, "name": self.tier_name},
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
        }


def member_view(program: Program, customer_id: str, points: int, total_spent: int,
                tags: tuple[Tag, ...] = ()) -> MemberView:
    tier = tier_for_points(program, points)
    upper = next_tier(program, tier)
    return MemberView(
        customer_id=customer_id, tier_code=tier.code, tier_name=tier.name, points=points,
        total_spent=total_spent,
        next_tier=None if upper is None else
        {"code": upper.code, "name": upper.name, "threshold": upper.threshold},
        points_to_next_tier=points_to_next_tier(program, points),
        spend_to_next_tier=spend_to_next_tier(program, points),
        benefits=tier.benefits, next_tier_benefits=() if upper is None else upper.benefits,
        tags=tags)
