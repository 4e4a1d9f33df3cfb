"""The campaign's results as a table a marketer reads (``loyalty crosssell report``), made
from the same JSON document the HTTP route answers with."""

from __future__ import annotations

from typing import Any

DASH = "-"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else DASH


def _points(value: float) -> str:
    """A difference of proportions in percentage points, signed."""
    return f"{100 * value:+.1f}"


def uplift_text(uplift: dict[str, Any]) -> str:
    if uplift["conversion"] is None:
        return DASH
    low, high = uplift["ci95"]
    return f"{_points(uplift['conversion'])} ({_points(low)} to {_points(high)})"


def _window(run: dict[str, Any]) -> str:
    if not run["window_closed"]:
        return "open"
    return "closed" if run["period_closed"] else "72 h closed, tag period open"


def _messages(messages: dict[str, int]) -> str:
    return ", ".join(f"{status} {count:,}" for status, count in messages.items()) or DASH


def _verdict(uplift: dict[str, Any]) -> str:
    low, high = uplift["ci95"]
    if low > 0:
        return "the nudged converted more than the held out, beyond chance."
    if high < 0:
        return "the nudged converted less than the held out, beyond chance."
    return "the interval includes 0: not distinguishable from no effect yet."


def format_report(report: dict[str, Any]) -> str:
    nudged, held = report["groups"]["nudged"], report["groups"]["held_out"]
    runs = report["runs"]
    still_open = sum(not run["window_closed"] for run in runs)
    lines = [f"Cross-sell results, {report['from']} to {report['to']}: {len(runs)} campaign "
             f"day(s)" + (f", {still_open} with the 72-hour window still open"
                          if still_open else "")]
    if not runs:
        return lines[0] + "\n(no scan in this range)"

    def row(label: str, left: str, right: str) -> str:
        return f"  {label:<28}{left:>16}  {right:>16}"

    lines += ["", row("", "nudged", "held out"),
              row("members", f"{nudged['members']:,}", f"{held['members']:,}"),
              row("converted within 72 h",
                  f"{nudged['converted']:,} ({_percent(nudged['converted'], nudged['members'])})",
                  f"{held['converted']:,} ({_percent(held['converted'], held['members'])})"),
              row("spend of those orders (VND)", f"{nudged['spend']:,}", f"{held['spend']:,}"),
              row("reached next tier in 72 h", f"{nudged['reached_next_tier_72h']:,}",
                  f"{held['reached_next_tier_72h']:,}"),
              row("... in the tag period", f"{nudged['reached_next_tier_in_period']:,}",
                  f"{held['reached_next_tier_in_period']:,}"),
              row("bonus points credited", f"{nudged['bonus_credited']:,}",
                  f"{held['bonus_credited']:,}"),
              row("bonus points reversed", f"{nudged['bonus_reversed']:,}",
                  f"{held['bonus_reversed']:,}"),
              f"  {'nudge messages':<28}{_messages(nudged['messages'])}", ""]
    uplift = report["uplift"]
    if uplift["conversion"] is None:
        lines.append("Uplift: needs members in both groups (is holdout_percent above 0?)")
    else:
        lines += [f"Uplift in conversion, nudged minus held out: {uplift_text(uplift)} "
                  f"percentage points (95% interval in brackets);",
                  f"  {_verdict(uplift)}",
                  f"Extra spend per nudged member: {uplift['extra_spend_per_nudged']:,} VND"]
    lines += ["", f"  {'day':<11}{'selected':>9}{'nudged':>8}{'held out':>9}"
                  f"{'conv. nudged':>14}{'conv. held out':>16}  {'uplift (95% interval)':<26}"
                  f"window"]
    for run in runs:
        groups = run["groups"]
        lines.append(
            f"  {run['day']:<11}{run['selected']:>9,}{run['nudged']:>8,}{run['held_out']:>9,}"
            f"{_percent(groups['nudged']['converted'], run['nudged']):>14}"
            f"{_percent(groups['held_out']['converted'], run['held_out']):>16}"
            f"  {uplift_text(run['uplift']):<26}{_window(run)}")
    return "\n".join(lines)
