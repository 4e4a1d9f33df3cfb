"""Personal data that tests put into events, and how to find it in clear in a text."""

from __future__ import annotations

# A phone of each shape the events accept, none of them Vietnamese but the first two.
PHONES = ("0901234567", "+84901234567", "+6591234567", "12025550123", "91234567",
          "+441632960961", "+999123456789012")
NAME = "Hoa Leaktest"  # distinctive: a SQL error that quoted its parameters would show it


def spellings(phone: str) -> set[str]:
    """The ways a log could write ``phone`` in clear."""
    digits = phone.lstrip("+")
    found = {phone, digits}
    if digits.startswith("0"):
        found.add("84" + digits[1:])
    if digits.startswith("84"):
        found.add("0" + digits[2:])
    return found


def leaks(log: str, phones: tuple[str, ...] = PHONES) -> list[str]:
    """The lines of ``log`` that hold one of ``phones`` in clear, or the test's name."""
    return [line for line in log.splitlines()
            if NAME in line or any(spelling in line for phone in phones
                                   for spelling in spellings(phone))]


