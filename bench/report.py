"""What a benchmark hands back, and how it is printed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Rate:
    """``count`` things done in ``seconds`` of wall-clock time."""

    label: str
    count: int
    seconds: float
    unit: str = "events"

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class Ratio:
    label: str
    value: float


@dataclass
class Result:
    benchmark: str
    rates: list[Rate] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    # Free text a reader needs to interpret the figures (CPU split, outliers, retries).
    notes: list[str] = field(default_factory=list)

    def rate(self, label: str) -> Rate | None:
        return next((rate for rate in self.rates if rate.label == label), None)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        for rate, dumped in zip(self.rates, document["rates"], strict=True):
            dumped["per_second"] = round(rate.per_second, 1)
        return document


def ratio(label: str, measured: Rate, baseline: Rate) -> Ratio:
    return Ratio(label, measured.per_second / baseline.per_second)


def format_result(result: Result) -> str:
    width = max([len(rate.label) for rate in result.rates]
                + [len(ratio.label) for ratio in result.ratios] + [20])
    lines = [f"== {result.benchmark}"]
    for rate in result.rates:
        lines.append(f"  {rate.label:<{width}}  {rate.count:>9,} {rate.unit:<7} "
                     f"{rate.seconds:>8.2f} s  {rate.per_second:>10,.1f} {rate.unit}/s")
    for item in result.ratios:
        slower = f"   (the baseline is {1 / item.value:.1f}× faster)" if 0 < item.value < 1 else ""
        lines.append(f"  {item.label:<{width}}  {item.value:>9.3f}{slower}")
    lines.extend(f"  - {note}" for note in result.notes)
    return "\n".join(lines)
