"""The one inbound pipeline's failure policy, through the real webhooks (channels/inbound.py).

Redis away: every chat webhook and the sandbox answer 503 (platforms retry), the update is
forgotten so the retry is handled in full, and the outage is one log line, no traceback.
A bug in the bot: the person gets an apology, the update stays handled.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from gomflow_messaging.settings import Settings
from tests.conftest import REDIS_URL
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SENDER, FakeTwilio
from tests.helpers import AUTH, TcpProxy, running_app
from tests.test_telegram_webhook import message_update, new_chat, post
from tests.test_whatsapp import PUBLIC, Chat, new_phone


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = await FakeTwilio().start()
    yield fake
    await fake.close()


@pytest.fixture
async def redis_proxy() -> AsyncIterator[TcpProxy]:
    target = urlsplit(REDIS_URL)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    yield proxy
    await proxy.close()


@pytest.fixture
def chats_settings(
    telegram_settings: Callable[..., Settings], twilio: FakeTwilio, redis_proxy: TcpProxy
) -> Settings:
    path = urlsplit(REDIS_URL).path
    return telegram_settings(
        redis_url=f"redis://127.0.0.1:{redis_proxy.port}{path}",
        enable_whatsapp=True,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_whatsapp_number=SENDER,
        twilio_api_base_url=twilio.base_url,
        public_base_url=PUBLIC,
    )


async def test_redis_away_answers_503_once_logged_and_the_retry_is_handled(
    chats_settings: Settings,
    redis_proxy: TcpProxy,
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chat = new_chat()
    update = message_update(chat, "/help")
    _typed, phone = new_phone()
    async with running_app(chats_settings, mode="web") as client:
        whatsapp = Chat(client, phone)
        form = whatsapp.form("HELP")
        await redis_proxy.cut()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="gomflow_messaging"):
            for _ in range(5):
                sandbox = await client.post(
                    "/api/sandbox/inbound",
                    json={"address": "redis-away", "text": "/help"},
                    headers=AUTH,
                )
                assert sandbox.status_code == 503, sandbox.text
                assert sandbox.json()["error"]["code"] == "unavailable"
                assert (await post(client, update)).status_code == 503
                assert (await whatsapp.post(form)).status_code == 503
        lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r for r in lines if r.exc_info] == [], "a traceback per request"
        outage = [r.getMessage() for r in lines if "chat webhooks answer 503" in r.getMessage()]
        assert len(outage) == 1, [r.getMessage() for r in lines]
        assert len(lines) <= 2, [r.getMessage() for r in lines]  # the outage (+ a Postgres one)
        # Nothing was kept of the refused updates: Telegram's and Twilio's retries are answered.
        assert not await conn.fetchval(
            "SELECT count(*) FROM inbound_updates WHERE update_id = ANY($1::text[])",
            [str(update["update_id"]), form["MessageSid"]],
        )
        await redis_proxy.restore()
        retried = await post(client, update)
        assert retried.status_code == 200
        assert "/orders" in retried.json()["text"]
        answered = await whatsapp.post(form)
        assert answered.status_code == 200
        assert "ORDERS" in answered.text
    assert fake_telegram.sent(chat) == []


async def test_a_bug_in_the_bot_is_an_apology_and_the_update_stays_handled(
    chats_settings: Settings,
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    demo: dict[str, Any],
) -> None:
    """A contact whose stored time zone no longer exists makes the bot fail on /orders."""
    chat = new_chat()
    async with running_app(chats_settings, mode="web") as client:
        assert (await post(client, message_update(chat, "/start"))).status_code == 200
        await conn.execute(
            "UPDATE contacts SET timezone = 'Mars/Olympus_Mons' WHERE id = ("
            " SELECT contact_id FROM contact_addresses"
            " WHERE channel = 'telegram' AND address = $1)",
            str(chat),
        )
        update = message_update(chat, "/orders")
        with caplog.at_level(logging.ERROR, logger="gomflow_messaging"):
            response = await post(client, update)
        assert response.status_code == 200
        assert "Something went wrong on our side" in response.json()["text"]
        assert [r for r in caplog.records if r.exc_info]  # the bug is logged with its traceback
        again = await post(client, update)
        assert again.status_code == 200 and again.json() == {}  # kept: a retry is a repeat
        assert await conn.fetchval(
            "SELECT count(*) FROM inbound_updates WHERE platform = 'telegram' AND update_id = $1",
            str(update["update_id"]),
        )
