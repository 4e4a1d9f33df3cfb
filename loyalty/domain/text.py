"""Text that every store and log can hold.

PostgreSQL text cannot hold NUL, and a lone surrogate (``"\\ud800"``, which JSON can carry)
cannot be encoded as UTF-8 for either database. The other control characters are storable
but are never meant in an id or a name, and would garble logs and the refused-event list.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the surrogate code points (only ever lone in a Python str).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# What neither database can store at all.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def first_control(text: str) -> str | None:
    """A description of the first character that text fields refuse, or None."""
    found = CONTROL.search(text)
    if found is None:
        return None
    kind = "lone surrogate" if "\ud800" <= found.group() <= "\udfff" else "control character"
    return f"{kind} U+{ord(found.group()):04X} at position {found.start()}"


def escaped(text: str, characters: re.Pattern[str] = CONTROL) -> str:
    """``text`` with each of ``characters`` written as a JSON escape (``\\u0000``).

    In JSON written by ``json.dumps`` such a character can only stand inside a string, where
    its escape means the same: the document escaped this way is the same document.
    """
    return characters.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
