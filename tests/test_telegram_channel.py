"""The Telegram adapter beyond the contract: rendering, retries of split messages, migration."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from gomflow_messaging import db
from gomflow_messaging.channels.base import Button, OutboundMessage
from gomflow_messaging.channels.telegram.channel import (
    TelegramChannel,
    split_for_telegram,
    utf16_length,
)
from gomflow_messaging.errors import PermanentError, TransientError
from tests.fakes.telegram import FakeTelegram, new_token


@pytest.fixture
async def channel(
    fake_telegram: FakeTelegram, pool: db.Pool, redis: Any
) -> AsyncIterator[TelegramChannel]:
    adapter = TelegramChannel(
        token=fake_telegram.token,
        api_base_url=fake_telegram.url,
        pool=pool,
        redis=redis,
        request_timeout=1.0,
        pace_max_wait=5.0,
    )
    await adapter.start()
    yield adapter
    await adapter.close()


def message(address: str | int, text: str, **extra: Any) -> OutboundMessage:
    return OutboundMessage(message_id=uuid.uuid4(), address=str(address), text=text, **extra)


def chat() -> int:
    return 100_000_000 + uuid.uuid4().int % 800_000_000


async def test_text_is_escaped_html_and_arrives_as_written(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    to = chat()
    text = "<3 SVT & Carat > all: <b>not bold</b> &amp; ₱1,250.00 💎"
    result = await channel.send(message(to, text))
    [call] = fake_telegram.sent(to)
    assert call.params["parse_mode"] == "HTML"
    assert call.text == text
    assert result.provider_message_id == f"{to}:{call.result['message_id']}"


async def test_url_and_action_buttons(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    to = chat()
    rows = (
        (Button("Pay", action="pay"), Button("Site", url="https://gomflow.example/o/1")),
        (Button("My orders", action="status"),),
    )
    await channel.send(message(to, "Choose", buttons=rows))
    [call] = fake_telegram.sent(to)
    keyboard = call.params["reply_markup"]["inline_keyboard"]
    assert keyboard == [
        [
            {"text": "Pay", "callback_data": "pay"},
            {"text": "Site", "url": "https://gomflow.example/o/1"},
        ],
        [{"text": "My orders", "callback_data": "status"}],
    ]


async def test_photo_with_caption_and_buttons(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    to = chat()
    buttons = ((Button("Join", action="submit x"),),)
    await channel.send(
        message(to, "New drop", image_url="https://cdn.example/a.jpg", buttons=buttons)
    )
    [call] = fake_telegram.sent(to)
    assert call.method == "sendPhoto"
    assert call.params["photo"] == "https://cdn.example/a.jpg"
    assert call.text == "New drop"
    assert [b["text"] for b in call.buttons] == ["Join"]


async def test_long_caption_becomes_photo_then_text(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    to = chat()
    text = "word " * 300  # 1500 characters: above the 1024 caption limit
    buttons = ((Button("Join", action="submit x"),),)
    await channel.send(message(to, text, image_url="https://cdn.example/a.jpg", buttons=buttons))
    photo, words = fake_telegram.sent(to)
    assert photo.method == "sendPhoto" and not photo.params.get("caption")
    assert words.method == "sendMessage" and words.text == text
    assert [b["text"] for b in words.buttons] == ["Join"]


def test_split_counts_utf16_units_like_telegram() -> None:
    text = "💎" * 3000  # 6000 UTF-16 units in 3000 characters
    parts = split_for_telegram(text)
    assert all(utf16_length(p) <= 4096 for p in parts)
    assert "".join(parts) == text


async def test_emoji_heavy_text_is_split_within_telegram_limit(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    to = chat()
    text = "💎" * 3000
    await channel.send(message(to, text))
    parts = fake_telegram.sent(to)
    assert len(parts) == 2
    assert "".join(p.text for p in parts) == text


async def test_retry_after_429_on_second_part_does_not_resend_the_first(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    to = chat()
    text = "\n".join(f"line {n} of a long order update" for n in range(400))
    parts = len(split_for_telegram(text))
    assert parts >= 3
    msg = message(to, text)
    fake_telegram.fail_next(
        "rate_limited", retry_after=1, method="sendMessage", chat_id=to, after=1
    )
    with pytest.raises(TransientError) as info:
        await channel.send(msg)
    assert info.value.retry_after == 1
    assert info.value.code == "rate_limited"
    [first] = fake_telegram.texts(to)
    await channel.send(msg)  # the dispatcher's retry of the same message
    texts = fake_telegram.texts(to)
    assert len(texts) == parts and texts[0] == first
    assert "".join(texts).replace("\n", "") == text.replace("\n", "")


async def test_group_migrated_to_supergroup_follows_and_retries_once(
    fake_telegram: FakeTelegram, channel: TelegramChannel, conn: asyncpg.Connection
) -> None:
    old, new = -(400_000_000 + chat() % 1000), -(1_000_000_000_000 + chat())
    contact = await conn.fetchval("INSERT INTO contacts (display_name) VALUES ('g') RETURNING id")
    await conn.execute(
        "INSERT INTO contact_addresses (contact_id, channel, address) VALUES ($1, 'telegram', $2)",
        contact,
        str(old),
    )
    fake_telegram.migrated[str(old)] = new
    result = await channel.send(message(old, "Order closed"))
    assert fake_telegram.texts(new) == ["Order closed"]
    assert result.provider_message_id.startswith(f"{new}:")
    addresses = await conn.fetch(
        "SELECT address FROM contact_addresses WHERE contact_id = $1", contact
    )
    assert [r["address"] for r in addresses] == [str(new)]


async def test_migrating_twice_is_permanent(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    old, mid, new = -(500_000_000 + chat() % 1000), -1_000_000_000_001, -1_000_000_000_002
    fake_telegram.migrated[str(old)] = mid
    fake_telegram.migrated[str(mid)] = new
    with pytest.raises(PermanentError) as info:
        await channel.send(message(old, "hi"))
    assert info.value.code == "chat_migrated"


async def test_chat_not_found_is_unreachable(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    to = chat()
    fake_telegram.unknown_chats.add(str(to))
    with pytest.raises(PermanentError) as info:
        await channel.send(message(to, "hi"))
    assert info.value.code == "chat_not_found" and info.value.address_unreachable


async def test_unreadable_answer_is_transient(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    fake_telegram.fail_next("garbage")
    with pytest.raises(TransientError) as info:
        await channel.send(message(chat(), "hi"))
    assert info.value.code == "bad_response"


async def test_overlong_callback_data_is_rejected_not_retried(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    buttons = ((Button("Pay", action="x" * 65),),)
    with pytest.raises(PermanentError) as info:
        await channel.send(message(chat(), "hi", buttons=buttons))
    assert info.value.code == "rejected" and not info.value.address_unreachable


async def test_wrong_token_is_permanent_bad_credentials(
    fake_telegram: FakeTelegram, pool: db.Pool, redis: Any
) -> None:
    adapter = TelegramChannel(
        token=new_token(),
        api_base_url=fake_telegram.url,
        pool=pool,
        redis=redis,
        request_timeout=1.0,
    )
    try:
        with pytest.raises(PermanentError) as info:
            await adapter.send(message(chat(), "hi"))
        assert info.value.code == "bad_credentials"
        health = await adapter.health()
        assert not health.ok and "bad_credentials" in health.detail
    finally:
        await adapter.close()


async def test_unreachable_api_is_transient(pool: db.Pool, redis: Any) -> None:
    adapter = TelegramChannel(
        token=new_token(), api_base_url="http://127.0.0.1:9", pool=pool, redis=redis
    )
    try:
        with pytest.raises(TransientError) as info:
            await adapter.send(message(chat(), "hi"))
        assert info.value.code == "network"
    finally:
        await adapter.close()


async def test_health_calls_get_me_and_caches_it(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    first = await channel.health()
    second = await channel.health()
    assert first.ok and first.detail == "@gomflow_test_bot"
    assert second == first
    assert len(fake_telegram.requests("getMe")) == 1


def test_addresses(channel: TelegramChannel) -> None:
    assert channel.validate_address(" 12345 ") == "12345"
    assert channel.validate_address("-1001234567890") == "-1001234567890"
    assert channel.validate_address("@gomflow_news") == "@gomflow_news"
    for bad in ("", "abc", "12 34", "@x"):
        with pytest.raises(ValueError):
            channel.validate_address(bad)


def test_group_chats_are_paced_per_minute(channel: TelegramChannel) -> None:
    scopes = [(lim.scope, lim.count, lim.per_seconds) for lim in channel.limits_for(-42)]
    assert scopes == [("bot", 30.0, 1.0), ("group:-42", 20.0, 60.0)]
    scopes = [(lim.scope, lim.count, lim.per_seconds) for lim in channel.limits_for(42)]
    assert scopes == [("bot", 30.0, 1.0), ("chat:42", 1.0, 1.0)]


async def test_a_429_carries_the_wait_telegram_names(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    """The error carries whatever retry_after Telegram answered, not a figure of ours."""
    fake_telegram.fail_next("rate_limited", retry_after=4)
    with pytest.raises(TransientError) as info:
        await channel.send(message(chat(), "one"))
    [refused] = [c for c in fake_telegram.calls if c.status == 429]
    assert info.value.code == "rate_limited"
    assert info.value.retry_after == refused.result["retry_after"] == 4


async def test_a_429_on_one_chat_does_not_hold_back_another(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    held, other = chat(), chat()
    fake_telegram.fail_next("rate_limited", retry_after=10, chat_id=held)
    with pytest.raises(TransientError):
        await channel.send(message(held, "first"))
    # The held chat is told to come back after Telegram's 10 s (longer than the pacer waits)
    # without asking Telegram again; the other chat's send goes at once, within 5 s (an
    # explicit margin for a loaded machine: held back too, it would take 10).
    with pytest.raises(TransientError) as paced:
        await channel.send(message(held, "second"))
    assert paced.value.code == "paced" and fake_telegram.texts(held) == []
    await asyncio.wait_for(channel.send(message(other, "not held back")), timeout=5)
    assert fake_telegram.texts(other) == ["not held back"]


async def test_sends_to_one_chat_keep_within_telegrams_limits(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    """Six messages to one person at once: the fake answers 429 past Telegram's per-chat
    limit (a burst of 3 in any second, 12 in any 10 s); the pacer keeps every send inside."""
    to = chat()
    await asyncio.gather(*(channel.send(message(to, f"update {i}")) for i in range(6)))
    assert sorted(fake_telegram.texts(to)) == [f"update {i}" for i in range(6)]
    assert [c for c in fake_telegram.calls if c.status == 429] == []


async def test_a_file_is_fetched_only_as_the_bot_api_serves_it(
    fake_telegram: FakeTelegram, channel: TelegramChannel
) -> None:
    """The download guard: within the size cap, from the Bot API server, no redirect."""
    fake_telegram.files["photos/receipt-1.jpg"] = b"\xff\xd8 a receipt"
    assert await channel.download("receipt-1", limit=100) == b"\xff\xd8 a receipt"

    # A size getFile declares past the cap: refused before anything is fetched.
    fake_telegram.files["photos/big-1.jpg"] = b"x" * 1000
    fetched = len(fake_telegram.downloads)
    with pytest.raises(PermanentError) as declared:
        await channel.download("big-1", limit=100)
    assert declared.value.code == "too_large" and len(fake_telegram.downloads) == fetched

    # No size declared and none sent: the stream is cut at the cap.
    fake_telegram.hide_file_sizes = True
    fake_telegram.files["photos/big-2.jpg"] = b"x" * 300_000
    with pytest.raises(PermanentError) as streamed:
        await channel.download("big-2", limit=100_000)
    assert streamed.value.code == "too_large"

    # A redirect (to anywhere, here a file the bot may read) is not followed.
    elsewhere = f"/file/bot{fake_telegram.token}/photos/receipt-1.jpg"
    fake_telegram.file_redirects["photos/moved-1.jpg"] = elsewhere
    with pytest.raises(PermanentError) as redirected:
        await channel.download("moved-1", limit=100)
    assert redirected.value.code == "unavailable"
    assert fake_telegram.downloads[-1] == "photos/moved-1.jpg"
