"""The loyalty program: tiers, points, campaign numbers and message texts.

Every number of SPEC §2 lives here with its default. A shop overrides any of them in a
TOML file (``LOYALTY_PROGRAM_FILE``); a bad file is refused with every bad key named. Which
program is in force, and changing it, is ``loyalty.services.programs``.
"""

from __future__ import annotations

import itertools
import re
import string
import tomllib
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from loyalty.domain.messages import Channel, MessageKind


class ProgramError(ValueError):
    """The program file cannot be used; ``problems`` names every offending key."""

    def __init__(self, problems: list[tuple[str, str]], heading: str = "bad program file"):
        self.problems = problems
        super().__init__(f"{heading}: " + "; ".join(f"{key}: {why}" for key, why in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Strict):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    name_vi: str
    threshold: int = Field(ge=0)
    multiplier: Decimal
    benefits: tuple[str, ...] = ()
    birthday_gift: str = ""

    @field_validator("multiplier", mode="before")
    @classmethod
    def _exact_multiplier(cls, value: Any) -> Any:
        # TOML floats are binary; go through their text so 1.2 stays exactly 1.2.
        return Decimal(str(value)) if isinstance(value, float | int) else value

    @field_validator("multiplier")
    @classmethod
    def _multiplier_at_least_one(cls, value: Decimal) -> Decimal:
        if value < 1:
            raise ValueError("must be at least 1")
        return value


class CrossSell(_Strict):
    near_tier_points: int = Field(default=300, gt=0)
    tag_name: str = "Đã gửi tin"
    tag_days: int = Field(default=15, gt=0)
    bonus_points: int = Field(default=100, ge=0)
    bonus_window_hours: int = Field(default=72, gt=0)
    scan_at: time = time(9, 0)
    mirror_oa_tag: bool = False
    # Of the members each scan selects, this percentage is held out (no message, no tag, no
    # bonus) and compared with the nudged ones in the campaign's results.
    holdout_percent: int = Field(default=0, ge=0)

    @field_validator("holdout_percent")
    @classmethod
    def _someone_is_nudged(cls, value: int) -> int:
        # 100 would nudge nobody: no campaign, and no nudged group to compare the held-out
        # one with. Stopping the campaign is stopping its scan, not a holdout.
        if value >= 100:
            raise ValueError("must be below 100 (a holdout of 100% nudges nobody)")
        return value


class Birthdays(_Strict):
    send_at: time = time(8, 0)
    min_days_between_gifts: int = Field(default=365, gt=0)


NUDGE_TEXT = (
    "Chỉ còn vài điểm nữa là lên hạng - Cố lên bạn nhé\n\n"
    "Bạn thân mến, bạn đã tích được {points} điểm rồi đó!\n"
    "Chỉ còn {points_to_next_tier} điểm nữa, bạn sẽ lên hạng {next_tier_name} và nhận được "
    "những ưu đãi xịn xò của hạng cao hơn!!\n"
    "Nhanh tay đặt hàng trước {bonus_deadline} để được cộng thêm {bonus_points} điểm vào "
    "điểm thành viên bạn nhé!!"
)
BONUS_REVERSAL_TEXT = (
    "Đơn hàng {order_id} đã bị hủy, trả lại hoặc hoàn tiền, nên {bonus_points} điểm thưởng "
    "của chương trình đã được trừ lại. Điểm hiện tại của bạn: {points}."
)
BIRTHDAY_TEXT = (
    "Chúc mừng sinh nhật {name}! Là thành viên hạng {tier_name}, bạn nhận được: {gift}."
)

# The placeholders each template may use; anything else is a typo caught at start-up.
TEMPLATE_FIELDS = {
    "nudge": {"points", "points_to_next_tier", "next_tier_name", "bonus_deadline",
              "bonus_points", "name"},
    "bonus_reversal": {"order_id", "bonus_points", "points", "name"},
    "birthday": {"name", "tier_name", "gift"},
}


class Messages(_Strict):
    nudge: str = NUDGE_TEXT
    bonus_reversal: str = BONUS_REVERSAL_TEXT
    birthday: str = BIRTHDAY_TEXT

    def text(self, kind: MessageKind | str, fields: dict[str, str]) -> str:
        """The text of a message of ``kind`` with its fields filled in."""
        template: str = getattr(self, MessageKind(kind).value)
        return template.format(**fields)

    @field_validator(*TEMPLATE_FIELDS)
    @classmethod
    def _known_placeholders(cls, text: str, info: ValidationInfo) -> str:
        # One template at a time, so that each bad one is named by its own key.
        allowed = TEMPLATE_FIELDS[str(info.field_name)]
        try:
            used = {field for _, field, _, _ in string.Formatter().parse(text)
                    if field is not None}
        except ValueError as error:
            raise ValueError(f"not a template: {error}") from None
        unknown = used - allowed
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; "
                             f"allowed: {sorted(allowed)}")
        return text


# A template parameter's name as ZBS allows it: no diacritics, spaces or hyphens.
_PARAM_NAME = re.compile(r"[A-Za-z0-9_]+", re.ASCII)


class MessageChannels(_Strict):
    """How one kind of message reaches members (SPEC §5 "channel plan")."""

    plan: tuple[Channel, ...] = (Channel.CONSULTATION, Channel.TEMPLATE, Channel.ZNS)
    # Promotional messages obey Zalo's caps (per month, 6-month contact, night ban).
    promotional: bool = False
    # The approved ZBS template (the promotion tag for promotional content), used by UID
    # and by phone; without one the template and ZNS steps are left out of the plan.
    template_id: str = ""
    # Our field (a placeholder of the message's text) → the template's parameter name.
    template_params: dict[str, str] = {}

    @field_validator("plan")
    @classmethod
    def _zalo_channels_once(cls, plan: tuple[Channel, ...]) -> tuple[Channel, ...]:
        if not plan:
            raise ValueError("at least one channel is needed")
        if Channel.LOG in plan:
            raise ValueError("'log' is not a Zalo channel; it is used without credentials")
        if len(set(plan)) != len(plan):
            raise ValueError("each channel at most once")
        return plan

    @field_validator("template_params")
    @classmethod
    def _param_names(cls, params: dict[str, str]) -> dict[str, str]:
        for name in params.values():
            if not _PARAM_NAME.fullmatch(name):
                raise ValueError(f"template parameter {name!r}: letters, digits and _ only")
        return params


class NudgeChannels(MessageChannels):
    promotional: bool = True
    template_params: dict[str, str] = {
        "points": "points", "points_to_next_tier": "points_to_next_tier",
        "next_tier_name": "next_tier", "bonus_points": "bonus", "bonus_deadline": "deadline"}


class BonusReversalChannels(MessageChannels):
    template_params: dict[str, str] = {
        "order_id": "order_id", "bonus_points": "bonus", "points": "points"}


class BirthdayChannels(MessageChannels):
    template_params: dict[str, str] = {"name": "name", "tier_name": "tier", "gift": "gift"}


class Channels(_Strict):
    """The channel plan of each kind of message and Zalo's caps on promotional messages."""

    zns_enabled: bool = False
    promotional_per_month: int = Field(default=4, ge=0)
    contact_months: int = Field(default=6, gt=0)
    # Zalo refuses promotional messages at night (local time); equal times: no ban.
    night_starts: time = time(22, 0)
    night_ends: time = time(6, 0)
    # How long a member's consultation window read from Zalo is reused.
    window_cache_seconds: int = Field(default=300, ge=0)
    nudge: NudgeChannels = NudgeChannels()
    bonus_reversal: BonusReversalChannels = BonusReversalChannels()
    birthday: BirthdayChannels = BirthdayChannels()

    @model_validator(mode="after")
    def _known_fields(self) -> Channels:
        for kind in MessageKind:
            unknown = set(self.of(kind).template_params) - TEMPLATE_FIELDS[kind]
            if unknown:
                raise ValueError(
                    f"channels.{kind}.template_params: unknown field(s) {sorted(unknown)}; "
                    f"allowed: {sorted(TEMPLATE_FIELDS[kind])}")
        return self

    def of(self, kind: MessageKind | str) -> MessageChannels:
        setup: MessageChannels = getattr(self, MessageKind(kind).value)
        return setup


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(code="member", name="Member", name_vi="Thành viên", threshold=0,
         multiplier=Decimal("1.0"),
         benefits=("Quà sinh nhật", "Tích điểm x1 cho mỗi đơn hàng"),
         birthday_gift="voucher sinh nhật 50.000đ"),
    Tier(code="silver", name="Silver", name_vi="Bạc", threshold=1000,
         multiplier=Decimal("1.2"),
         benefits=("Quà sinh nhật hạng Bạc", "Tăng tốc tích điểm x1,2",
                   "Ưu đãi cá nhân hóa"),
         birthday_gift="voucher sinh nhật 100.000đ"),
    Tier(code="gold", name="Gold", name_vi="Vàng", threshold=2000,
         multiplier=Decimal("1.3"),
         benefits=("Quà sinh nhật hạng Vàng", "Tăng tốc tích điểm x1,3",
                   "Ưu đãi cá nhân hóa", "Quà tri ân định kỳ"),
         birthday_gift="voucher sinh nhật 200.000đ và quà tặng"),
    Tier(code="diamond", name="Diamond", name_vi="Kim cương", threshold=3000,
         multiplier=Decimal("1.5"),
         benefits=("Quà sinh nhật hạng Kim cương", "Tăng tốc tích điểm x1,5",
                   "Ưu đãi cá nhân hóa", "Quà tri ân định kỳ",
                   "Chương trình dành riêng cho hạng Kim cương"),
         birthday_gift="voucher sinh nhật 500.000đ và hộp quà cao cấp"),
)


class Program(_Strict):
    money_per_point: int = Field(default=1000, gt=0)
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    crosssell: CrossSell = CrossSell()
    birthdays: Birthdays = Birthdays()
    messages: Messages = Messages()
    channels: Channels = Channels()

    @field_validator("tiers")
    @classmethod
    def _tiers_ordered(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        problems = tier_order_problems([(tier.code, tier.threshold) for tier in tiers])
        if problems:
            raise ValueError("; ".join(problems))
        return tiers

    def tier(self, code: str) -> Tier:
        for tier in self.tiers:
            if tier.code == code:
                return tier
        raise KeyError(code)


def tier_order_problems(tiers: list[tuple[Any, Any]]) -> list[str]:
    """What is wrong with the tiers as a whole, given each one's (code, threshold): at least
    one tier, the first at 0, thresholds increasing, codes unique. Thresholds that are not
    integers are skipped: they are wrong on their own, and named so."""
    if not tiers:
        return ["at least one tier is needed"]
    problems = []
    if tiers[0][1] != 0 and isinstance(tiers[0][1], int):
        problems.append("the first tier's threshold must be 0")
    for (low_code, low), (code, threshold) in itertools.pairwise(tiers):
        if isinstance(low, int) and isinstance(threshold, int) and threshold <= low:
            problems.append(f"thresholds must increase: {code} ({threshold}) is not above "
                            f"{low_code} ({low})")
    codes = [code for code, _ in tiers]
    if len(set(map(str, codes))) != len(codes):
        problems.append("tier codes must be unique")
    return problems


def _key_path(location: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """Turn a pydantic location into the key a shop wrote, e.g. ``tiers[2].multiplier``."""
    parts: list[str] = []
    node: Any = data
    for item in location:
        if isinstance(item, int):
            code = node[item].get("code") if isinstance(node, list | tuple) and \
                item < len(node) and isinstance(node[item], dict) else None
            parts[-1] += f"[{item}]" + (f" ({code})" if code else "")
            node = node[item] if isinstance(node, list | tuple) and item < len(node) else None
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(file)"


def _raw_tier_order_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The whole-tiers rules on the file as written: pydantic checks them only once every
    tier is valid on its own, and a shop should hear of every problem at once."""
    tiers = data.get("tiers")
    if not isinstance(tiers, list) or not all(isinstance(tier, dict) for tier in tiers):
        return []
    return [("tiers", problem) for problem in tier_order_problems(
        [(tier.get("code"), tier.get("threshold")) for tier in tiers])]


def parse_program(data: dict[str, Any]) -> Program:
    """The program ``data`` describes, or ``ProgramError`` naming every bad key."""
    try:
        return Program.model_validate(data)
    except ValidationError as error:
        problems = [(_key_path(issue["loc"], data), issue["msg"]) for issue in error.errors()]
    if not any(key == "tiers" for key, _ in problems):
        problems += _raw_tier_order_problems(data)
    raise ProgramError(problems)


def read_program_file(path: str | Path) -> Program:
    """The program in the TOML file at ``path``, or ``ProgramError`` naming every bad key."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ProgramError([("(file)", f"cannot read {path}: {error.strerror}")],
                           heading="program file") from None
    except tomllib.TOMLDecodeError as error:
        raise ProgramError([("(file)", f"{path} is not valid TOML: {error}")],
                           heading="program file") from None
    return parse_program(data)


def load_program(path: str | Path | None) -> Program:
    """The program in ``path``, or the SPEC defaults when no file is given."""
    return Program() if path is None else read_program_file(path)


def program_toml(program: Program) -> str:
    """The whole program as a program file: what ``read_program_file`` reads back to the
    same program."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [plain(item) for item in value]
        # A multiplier such as 1.2 goes through its text when read, so it stays exact.
        return float(value) if isinstance(value, Decimal) else value
    return tomli_w.dumps(plain(program.model_dump()))


def program_document(program: Program) -> dict[str, Any]:
    """The whole program as JSON, exact (multipliers as decimal text): what is stored with a
    program version, and what ``parse_program`` reads back to the same program."""
    return program.model_dump(mode="json")
