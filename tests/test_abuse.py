"""Replays, floods and odd arguments on the chat webhooks, posted with real signatures:
Ed25519 for Discord, Twilio's HMAC, Telegram's secret header, against the loopback fakes."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from gomflow_messaging.settings import Settings
from tests.fakes.discord import Signer, modal_submit, new_user_id, press, slash
from tests.fakes.twilio import FakeTwilio
from tests.helpers import AUTH, running_app
from tests.test_bot import PHP_ORDER, Chat, texts
from tests.test_discord_interactions import discord_settings, fake
from tests.test_telegram_webhook import callback_update, message_update, new_chat, shown
from tests.test_telegram_webhook import post as telegram_post
from tests.test_whatsapp import Chat as WhatsAppChat
from tests.test_whatsapp import new_phone, twilio, wa_settings

# Fixtures shared with the channels' own test modules.
__all__ = ["discord_settings", "fake", "twilio", "wa_settings"]

EPHEMERAL = 64
TOO_MANY_CODES = "too many link codes"


def _code() -> str:
    """A wrong guess shaped like a real link code (10 letters and digits)."""
    return secrets.token_hex(5).upper()


async def _link_code(client: httpx.AsyncClient, **owner: str) -> str:
    response = await client.post("/api/link-tokens", headers=AUTH, json=owner)
    assert response.status_code == 201, response.text
    code: str = response.json()["code"]
    return code


@pytest.fixture
async def gom_id(conn: asyncpg.Connection) -> str:
    """A GOM of this test's own: linking chats to the demo GOM would change other tests."""
    profile = uuid.uuid4()
    await conn.execute(
        "INSERT INTO profiles (id, name, email, country, timezone)"
        " VALUES ($1, 'Abuse Test GOM', $2, 'PH', 'Asia/Manila')",
        profile,
        f"{profile.hex[:12]}@example.com",
    )
    return str(profile)


async def _linked(conn: asyncpg.Connection, channel: str, address: str) -> bool:
    profile = await conn.fetchval(
        "SELECT c.profile_id FROM contact_addresses ca JOIN contacts c ON c.id = ca.contact_id"
        " WHERE ca.channel = $1 AND ca.address = $2",
        channel,
        address,
    )
    return profile is not None


# -- Discord -------------------------------------------------------------------------------


def _signed(signer: Signer, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, signer.headers(body)


async def _discord(
    client: httpx.AsyncClient, signer: Signer, payload: dict[str, Any]
) -> dict[str, Any]:
    body, headers = _signed(signer, payload)
    response = await client.post("/webhook/discord", content=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def _signed_create_form(
    client: httpx.AsyncClient, signer: Signer, gom_id: str, title: str
) -> tuple[bytes, dict[str, str]]:
    """A newly linked GOM's filled-in ``/create`` modal, signed: the request to replay."""
    gom = new_user_id()
    code = await _link_code(client, gom_id=gom_id)
    await _discord(client, signer, slash("link", {"code": code}, user_id=gom))
    await _discord(client, signer, press("link confirm", user_id=gom))
    deadline = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d %H:%M")
    values = {
        "title": title,
        "price": "980",
        "currency": "PHP",
        "deadline": deadline,
        "max_orders": "40",
    }
    return _signed(signer, modal_submit("create:new", values, user_id=gom))


async def test_replayed_discord_create_form_opens_one_order(
    discord_settings: Callable[..., Settings],
    signer: Signer,
    conn: asyncpg.Connection,
    demo: dict[str, Any],
    gom_id: str,
) -> None:
    title = f"Replay check {uuid.uuid4().hex[:8]}"
    async with running_app(discord_settings(), mode="web") as client:
        # The same signed request, three times.
        body, headers = await _signed_create_form(client, signer, gom_id, title)
        answers = [
            (await client.post("/webhook/discord", content=body, headers=headers)).json()
            for _ in range(3)
        ]
    assert await conn.fetchval("SELECT count(*) FROM orders WHERE title = $1", title) == 1
    assert title in answers[0]["data"]["content"]
    for replay in answers[1:]:
        assert replay["type"] == 4
        assert replay["data"]["flags"] & EPHEMERAL
        assert "handled already" in replay["data"]["content"]
        assert title not in replay["data"]["content"]


async def test_one_discord_interaction_at_two_replicas_at_once_takes_effect_once(
    discord_settings: Callable[..., Settings],
    signer: Signer,
    conn: asyncpg.Connection,
    demo: dict[str, Any],
    gom_id: str,
) -> None:
    title = f"Two replicas {uuid.uuid4().hex[:8]}"
    async with (
        running_app(discord_settings(), mode="web") as one,
        running_app(discord_settings(), mode="web") as two,
    ):
        body, headers = await _signed_create_form(one, signer, gom_id, title)
        answers = await asyncio.gather(
            *(
                replica.post("/webhook/discord", content=body, headers=headers)
                for replica in (one, two, one, two)
            )
        )
    assert [a.status_code for a in answers] == [200] * 4
    assert await conn.fetchval("SELECT count(*) FROM orders WHERE title = $1", title) == 1
    replays = [a for a in answers if "handled already" in a.json()["data"]["content"]]
    assert len(replays) == 3


async def test_replayed_discord_ping_is_still_a_pong(
    discord_settings: Callable[..., Settings], signer: Signer
) -> None:
    body, headers = _signed(signer, {"type": 1, "id": new_user_id(), "token": "t"})
    async with running_app(discord_settings(), mode="web") as client:
        answers = [
            (await client.post("/webhook/discord", content=body, headers=headers)).json()
            for _ in range(2)
        ]
    assert answers == [{"type": 1}, {"type": 1}]


async def test_discord_link_code_guesses_are_limited_per_person(
    discord_settings: Callable[..., Settings],
    signer: Signer,
    conn: asyncpg.Connection,
    demo: dict[str, Any],
    gom_id: str,
) -> None:
    settings = discord_settings(link_code_max_attempts=5)
    guesser, other = new_user_id(), new_user_id()
    async with running_app(settings, mode="web") as client:
        guesses = [
            await _discord(client, signer, slash("link", {"code": _code()}, user_id=guesser))
            for _ in range(6)
        ]
        real = await _link_code(client, gom_id=gom_id)
        blocked = await _discord(client, signer, slash("link", {"code": real}, user_id=guesser))
        # Another person is not held back by this one's guesses.
        await _discord(client, signer, slash("link", {"code": real}, user_id=other))
        fine = await _discord(client, signer, press("link confirm", user_id=other))
    for answer in guesses[:5]:
        assert "not valid" in answer["data"]["content"]
    for answer in (guesses[5], blocked):
        assert TOO_MANY_CODES in answer["data"]["content"]
        assert "15 minutes" in answer["data"]["content"]
        assert answer["data"]["flags"] & EPHEMERAL
    assert not await _linked(conn, "discord", guesser)
    assert "linked to your GOM profile" in fine["data"]["content"]


# -- WhatsApp ------------------------------------------------------------------------------


async def test_whatsapp_flood_gets_the_limit_then_one_slow_down_then_nothing(
    wa_settings: Settings, twilio: FakeTwilio, demo: dict[str, Any]
) -> None:
    limit = wa_settings.rate_limit_max_messages
    _typed, phone = new_phone()
    _typed, neighbour = new_phone()
    async with running_app(wa_settings, mode="web") as client:
        chat = WhatsAppChat(client, phone)
        answers = [await chat.say("HELP") for _ in range(40)]
        other = await WhatsAppChat(client, neighbour).say("HELP")
    assert all("what I can do" in "\n".join(a) for a in answers[:limit])
    assert answers[limit] == [
        "You are sending messages very fast. Please wait a minute, then try again."
    ]
    assert answers[limit + 1 :] == [[]] * (39 - limit)  # an empty <Response/>: nothing billed
    assert "what I can do" in "\n".join(other)
    assert twilio.sent == []  # every answer was TwiML, none a REST send


async def test_whatsapp_link_code_guesses_are_limited(
    wa_settings: Settings, conn: asyncpg.Connection, demo: dict[str, Any], gom_id: str
) -> None:
    _typed, phone = new_phone()
    async with running_app(wa_settings, mode="web") as client:
        chat = WhatsAppChat(client, phone)
        guesses = [await chat.say(f"LINK {_code()}") for _ in range(5)]
        # START CODE links too, so it counts as a guess.
        warned = await chat.say(f"START {_code()}")
        real = await _link_code(client, gom_id=gom_id)
        blocked = await chat.say(f"LINK {real}")
        still_served = await chat.say("HELP")
    assert all("not valid" in "\n".join(g) for g in guesses)
    assert len(warned) == 1 and TOO_MANY_CODES in warned[0]
    assert blocked == []
    assert not await _linked(conn, "whatsapp", phone)
    assert "what I can do" in "\n".join(still_served)  # other messages still answered


@pytest.mark.parametrize(
    "text",
    ["orders 0", "ORDERS 0", "ORDERS -1", "orders 99999999999999999999", "ORDERS ²", "ORDERS x"],
)
async def test_whatsapp_orders_with_a_page_that_does_not_exist_shows_the_first(
    wa_settings: Settings, demo: dict[str, Any], text: str
) -> None:
    _typed, phone = new_phone()
    async with running_app(wa_settings, mode="web") as client:
        answer = await WhatsAppChat(client, phone).say(text)  # asserts 200 and TwiML
    assert answer[0].startswith("Open orders (page 1 of")
    assert any("SEVENTEEN" in line for line in answer)


# -- Telegram ------------------------------------------------------------------------------


async def test_telegram_start_code_guesses_are_limited_per_person_across_chats(
    telegram_settings: Callable[..., Settings],
    conn: asyncpg.Connection,
    demo: dict[str, Any],
    gom_id: str,
) -> None:
    person, neighbour = new_chat(), new_chat()
    group = -(400_000_000 + secrets.randbelow(10**6))
    async with running_app(telegram_settings(), mode="web") as client:
        for _ in range(3):
            await telegram_post(client, message_update(person, f"/start {_code()}"))
        for _ in range(2):  # the same person, from a group: the same budget
            update = message_update(group, f"/start@gomflow_test_bot {_code()}", user_id=person)
            await telegram_post(client, update)
        warned = (await telegram_post(client, message_update(person, f"/start {_code()}"))).json()
        real = await _link_code(client, gom_id=gom_id)
        blocked = await telegram_post(client, message_update(person, f"/start {real}"))
        await telegram_post(client, message_update(neighbour, f"/start {real}"))
        other = await telegram_post(client, callback_update(neighbour, "link confirm"))
    assert TOO_MANY_CODES in shown(warned)
    assert blocked.json() == {}
    assert not await _linked(conn, "telegram", str(person))
    assert other.status_code == 200
    assert await _linked(conn, "telegram", str(neighbour))


# -- every chat: arguments that are not what a parser expects ------------------------------


@pytest.fixture
async def sandbox(settings: Settings, demo: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings, mode="web") as client:
        yield client


@pytest.mark.parametrize(
    "argument",
    ["0", "-1", "99999999999999999999", "9" * 5000, "²", "abc", "\u0661", "\uff11", "🙂"],
)
async def test_orders_argument_never_crashes(sandbox: httpx.AsyncClient, argument: str) -> None:
    body = texts(await Chat(sandbox).say(f"orders {argument}"))
    assert body.startswith("Open orders (page ")


@pytest.mark.parametrize("answer", ["²", "9" * 5000, "-1", "0", "1.5", "🙂"])
async def test_quantity_answer_never_crashes(sandbox: httpx.AsyncClient, answer: str) -> None:
    chat = Chat(sandbox)
    for step in (f"submit {PHP_ORDER}", "Ana Cruz", "0917 555 0199"):
        await chat.say(step)
    assert "whole number" in texts(await chat.say(answer))
    assert "delivered" in texts(await chat.say("\u0661"))  # an Arabic-Indic one is a 1


async def _creating(sandbox: httpx.AsyncClient, gom_id: str, *answers: str) -> Chat:
    """A newly linked GOM's sandbox chat, in the middle of /create."""
    gom = Chat(sandbox)
    await gom.say(f"link {await _link_code(sandbox, gom_id=gom_id)}")
    await gom.say("link confirm")
    for text in ("/create", *answers):
        await gom.say(text)
    return gom


@pytest.mark.parametrize("answer", ["²", "9" * 5000, "-5", "0"])
async def test_create_max_orders_answer_never_crashes(
    sandbox: httpx.AsyncClient, gom_id: str, answer: str
) -> None:
    gom = await _creating(sandbox, gom_id, "Twice Ready To Be", "980", "PHP")
    await gom.say("2030-01-15 20:00")
    assert "whole number" in texts(await gom.say(answer))


@pytest.mark.parametrize("answer", ["0.001", "1e-10", "85.505"])
async def test_create_price_finer_than_a_centavo_is_refused(
    sandbox: httpx.AsyncClient, gom_id: str, answer: str
) -> None:
    gom = await _creating(sandbox, gom_id, "Twice Ready To Be")
    assert "price like 1250" in texts(await gom.say(answer))
    assert "currency" in texts(await gom.say("85.50"))


async def test_quiet_hours_that_start_and_end_together_are_refused(
    sandbox: httpx.AsyncClient,
) -> None:
    assert "QUIET 22-8" in texts(await Chat(sandbox).say("quiet 08-8"))


async def test_sandbox_chat_is_limited_too(
    make_settings: Callable[..., Settings], demo: dict[str, Any]
) -> None:
    async with running_app(make_settings(rate_limit_max_messages=2), mode="web") as client:
        chat = Chat(client)
        answers = [await chat.say("help") for _ in range(4)]
    assert all("what I can do" in texts(a) for a in answers[:2])
    assert "very fast" in texts(answers[2])
    assert answers[3] == []
