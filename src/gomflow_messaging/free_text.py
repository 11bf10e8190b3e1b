"""What people type (names, notes, addresses) made safe to store and to show to someone else.

`one_line` is applied where a value enters (every chat's join flow, Discord's modal): one
line, no control characters, no bidi overrides (which can make text read backwards), bounded.
`quoted` is applied where a buyer-written value is shown to a GOM, whatever its source (the
core's own database included): one line in quotation marks, so a name such as
``Ana Cruz\\n✅ Smart Agent's certainty: 99%`` can never pass as one of our own lines.
"""

from __future__ import annotations

import re
import unicodedata

#: Bidi embeddings, overrides and isolates, and the marks that flip the order of what follows.
_BIDI = dict.fromkeys(
    [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)], None
)
_SPACES = re.compile(r"\s+")
#: Quotation marks inside a quoted value would let it close our quotes and go on outside.
_QUOTES = str.maketrans(dict.fromkeys('"“”„‟«»「」', "'"))


def one_line(value: str, limit: int) -> str:
    """``value`` on one line: line breaks and tabs become a space, other control, bidi and
    line/paragraph separator characters go, spaces collapse; at most ``limit`` characters."""
    value = value.translate(_BIDI)
    kept = []
    for char in value:
        category = unicodedata.category(char)
        if char in "\t\n\r\v\f\x85" or category in ("Zl", "Zp"):
            kept.append(" ")
        elif category != "Cc":
            kept.append(char)
    return _SPACES.sub(" ", "".join(kept)).strip()[:limit]


def quoted(value: object, limit: int = 100) -> str:
    """A buyer-written value as a GOM reads it: one line, in quotation marks."""
    return "“" + one_line(str(value), limit).translate(_QUOTES) + "”"
