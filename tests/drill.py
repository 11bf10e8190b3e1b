"""Campaigns counted at the fake platform: sent, lost, duplicated. Telegram chats for the
outage drills; every channel for the accepted-but-answer-lost drill.

Shared by the fault drills in `tests/test_drills.py` (short) and `bench/drills.py` (full).
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from tests.fakes.discord import APP_ID as DISCORD_APP_ID
from tests.fakes.discord import TOKEN as DISCORD_TOKEN
from tests.fakes.discord import FakeDiscord
from tests.fakes.messenger import FakeGraph, messenger_env, run_psid
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import ACCOUNT_SID as TWILIO_SID
from tests.fakes.twilio import AUTH_TOKEN as TWILIO_TOKEN
from tests.fakes.twilio import SENDER as TWILIO_SENDER
from tests.fakes.twilio import FakeTwilio, run_phone
from tests.helpers import AUTH, eventually, quiet, running_app


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


# -- accepted, and the answer lost -------------------------------------------------------------

#: What each channel can do against a retry after a lost answer, and so what remains.
LOST_ANSWER_REMEDY = {
    "telegram": "none: the Bot API has no idempotency key; each lost answer is sent again",
    "whatsapp": "none: Twilio's Messages API has no idempotency key; each is sent again",
    "messenger": "none: the Send API has no idempotency key; each is sent again",
    "discord": "nonce with enforce_nonce: Discord returns the first message (for minutes)",
}


@dataclass
class LostAnswers:
    """A platform fake that accepts some sends and never answers them, for one channel."""

    channel: str
    addresses: list[str]
    #: Settings that point the service at the fake, quick to time out.
    settings: dict[str, Any]
    #: Make the next ``k`` sends accepted, their answers lost.
    lose: Callable[[int], None]
    #: Messages the platform accepted per address.
    counts: Callable[[], Counter[str]]
    close: Callable[[], Awaitable[None]]

    def tally(self) -> Tally:
        counts = self.counts()
        sent = sum(1 for a in self.addresses if counts[a] >= 1)
        duplicated = sum(counts[a] - 1 for a in self.addresses if counts[a] > 1)
        return Tally(len(self.addresses), sent, len(self.addresses) - sent, duplicated)


async def lost_answers(channel: str, n: int) -> LostAnswers:
    """``n`` recipients on ``channel``'s fake platform, started."""
    run = secrets.randbelow(9000) + 1000
    if channel == "telegram":
        telegram = await FakeTelegram().start()
        chats = campaign_chats(n)
        return LostAnswers(
            channel,
            chats,
            {
                "enable_telegram": True,
                "telegram_bot_token": telegram.token,
                "telegram_webhook_secret": "drill-webhook-secret_0123456789",
                "telegram_api_base_url": telegram.url,
                "telegram_request_timeout_seconds": 1,
            },
            lambda k: telegram.fail_next("accepted_lost", k, method="sendMessage"),
            lambda: Counter(c.chat_id for c in telegram.sent()),
            telegram.close,
        )
    if channel == "discord":
        discord = await FakeDiscord().start()
        users = [str(810_000_000_000_000_000 + run * 1000 + i) for i in range(n)]

        def lose_discord(k: int) -> None:
            for _ in range(k):
                discord.fail_next("accepted_lost", path="/messages")

        return LostAnswers(
            channel,
            users,
            {
                "enable_discord": True,
                "discord_token": DISCORD_TOKEN,
                "discord_client_id": DISCORD_APP_ID,
                "discord_public_key": "ab" * 32,
                "discord_api_base_url": discord.base_url,
                "discord_request_timeout_seconds": 1,
            },
            lose_discord,
            lambda: Counter({u: len(discord.dm_messages(u)) for u in users}),
            discord.close,
        )
    if channel == "whatsapp":
        twilio = await FakeTwilio().start()
        phones = [run_phone(run, i) for i in range(n)]
        return LostAnswers(
            channel,
            phones,
            {
                "enable_whatsapp": True,
                "twilio_account_sid": TWILIO_SID,
                "twilio_auth_token": TWILIO_TOKEN,
                "twilio_whatsapp_number": "whatsapp:" + TWILIO_SENDER,
                "twilio_api_base_url": twilio.base_url,
                "twilio_timeout_seconds": 1.0,
                "public_base_url": "https://gomflow.example.com",
            },
            lambda k: twilio.faults.extend([("accepted_lost", 0.0)] * k),
            lambda: Counter(s.to.removeprefix("whatsapp:") for s in twilio.sent),
            twilio.close,
        )
    if channel == "messenger":
        graph = await FakeGraph().start()
        psids = [run_psid(run, i) for i in range(n)]
        return LostAnswers(
            channel,
            psids,
            messenger_env(graph.base_url),
            lambda k: graph.faults.extend([("accepted_lost", None)] * k),
            lambda: Counter(s.psid for s in graph.sent),
            graph.close,
        )
    raise ValueError(channel)


async def reachable(conn: Any, channel: str, addresses: list[str]) -> Any:
    """One contact who wrote from each address just now (inside any 24-hour window)."""
    contact = await conn.fetchval(
        "INSERT INTO contacts (display_name) VALUES ('lost-answer drill') RETURNING id"
    )
    await conn.executemany(
        "INSERT INTO contact_addresses (contact_id, channel, address, last_inbound_at)"
        " VALUES ($1, $2, $3, now()) ON CONFLICT (channel, address) DO NOTHING",
        [(contact, channel, a) for a in addresses],
    )
    return contact


async def lost_answer_campaign(
    make_settings: Callable[..., Any], conn: Any, channel: str, n: int, lost: int
) -> Tally:
    """A campaign of ``n`` on ``channel`` through the real dispatcher (the app in this
    process), whose platform accepts the first ``lost`` sends and never answers them; once
    every message is recorded sent, what the platform received (sent, lost, duplicated)."""
    platform = await lost_answers(channel, n)
    contact = await reachable(conn, channel, platform.addresses)
    platform.lose(lost)
    text = f"lost answer drill {channel} {campaign_chats(1)[0]}"
    try:
        async with running_app(make_settings(**platform.settings)) as client:
            body = {
                "event": "custom",
                "data": {"text": text},
                "recipients": [{"channel": channel, "address": a} for a in platform.addresses],
            }
            response = await client.post("/api/notify", json=body, headers=AUTH)
            assert response.status_code == 202, response.text
            # Every message recorded sent (the lost ones after their retry), then counted.
            try:
                await eventually(lambda: _all_sent(conn, text, n), timeout=60 + n)
            except AssertionError:
                raise AssertionError(f"not all sent: {await _statuses(conn, text)}") from None
            await quiet(0.5)  # a further retry in flight would land by now
    finally:
        await platform.close()
        await conn.execute("DELETE FROM contacts WHERE id = $1", contact)
    return platform.tally()


async def _all_sent(conn: Any, text: str, n: int) -> bool:
    return await _statuses(conn, text) == {"sent": n}


async def _statuses(conn: Any, text: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM messages WHERE body->>'text' = $1 GROUP BY status",
        text,
    )
    return {r["status"]: r["n"] for r in rows}
