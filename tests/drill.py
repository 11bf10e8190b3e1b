"""Campaigns to distinct Telegram chats, counted at the fake platform: sent, lost, duplicated.

Shared by the fault drills in `tests/test_drills.py` (short) and `bench/drills.py` (full).
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from tests.fakes.telegram import FakeTelegram


@dataclass
class Tally:
    """What the platform received for a campaign of ``expected`` messages (one per chat)."""

    expected: int
    sent: int
    lost: int
    duplicated: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __str__(self) -> str:
        return f"sent {self.sent}/{self.expected}, lost {self.lost}, duplicated {self.duplicated}"


def campaign_chats(n: int) -> list[str]:
    """``n`` distinct private chat ids, unlike any other run's."""
    base = 100_000_000 + secrets.randbelow(800_000) * 1000
    return [str(base + i) for i in range(n)]


def notify_bodies(chats: list[str], text: str, batch: int = 1000) -> list[dict[str, Any]]:
    return [
        {
            "event": "custom",
            "data": {"text": text},
            "recipients": [{"channel": "telegram", "address": c} for c in chats[i : i + batch]],
        }
        for i in range(0, len(chats), batch)
    ]


def tally(fake: FakeTelegram, chats: list[str]) -> Tally:
    counts = Counter(call.chat_id for call in fake.sent())
    sent = sum(1 for chat in chats if counts[chat] >= 1)
    duplicated = sum(counts[chat] - 1 for chat in chats if counts[chat] > 1)
    return Tally(len(chats), sent, len(chats) - sent, duplicated)


def received(fake: FakeTelegram, chats: list[str]) -> int:
    wanted = set(chats)
    return len({call.chat_id for call in fake.sent() if call.chat_id in wanted})
