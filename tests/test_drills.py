"""Fault drills, short: a Telegram campaign through the real dispatcher while something breaks,
counted at the fake platform. Every drill ends with nothing lost and nothing sent twice.

Also drills, kept where they were written first:
- the worker killed with SIGKILL mid-batch: tests/test_worker_process.py
  (test_sigkill_mid_batch_loses_nothing, and SIGTERM beside it);
- Redis flushed while messages wait / down during notify: tests/test_recovery.py;
- 50 concurrent /api/notify with one Idempotency-Key: tests/test_idempotency.py
  (test_fifty_parallel_requests_one_key_make_one_notification).
The full-length versions (30 s outage, real processes) are `bench/drills.py`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator

from gomflow_messaging.settings import Settings
from tests.conftest import REDIS_URL
from tests.drill import (
    LOST_ANSWER_REMEDY,
    Tally,
    campaign_chats,
    lost_answer_campaign,
    notify_bodies,
    received,
    tally,
)
from tests.fakes.messenger import FakeGraph, Sent, messenger_env, page_event, run_psid
from tests.fakes.messenger import sign as sign_event
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SENDER, FakeTwilio
from tests.helpers import AUTH, TcpProxy, eventually, quiet, running_app

N = 60
WEBHOOK_SECRET = "drill-webhook-secret_0123456789"


@pytest.fixture
def fake(fake_telegram: FakeTelegram) -> FakeTelegram:
    """The shared fake Bot API (conftest), by the short name these drills use."""
    return fake_telegram


@pytest.fixture
def drill_settings(telegram_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "telegram_webhook_secret": WEBHOOK_SECRET,
            # Slow enough that the fault lands mid-campaign (60 messages in about 1.5 s).
            "telegram_rate_per_second": 40,
            "telegram_request_timeout_seconds": 1,
        }
        return telegram_settings(**{**values, **overrides})

    return make


async def start_campaign(client: httpx.AsyncClient, chats: list[str], text: str) -> None:
    for body in notify_bodies(chats, text):
        response = await client.post("/api/notify", json=body, headers=AUTH)
        assert response.status_code == 202, response.text


async def finish(fake: FakeTelegram, chats: list[str], timeout: float = 30) -> Tally:
    await eventually(lambda: _all_received(fake, chats), timeout=timeout)
    await quiet(0.3)  # a duplicate still in flight would land by now
    result = tally(fake, chats)
    print(f"drill: {result}")
    return result


async def _all_received(fake: FakeTelegram, chats: list[str]) -> bool:
    return received(fake, chats) == len(chats)


async def test_drill_redis_flushed_and_cut_mid_campaign(
    drill_settings: Callable[..., Settings], fake: FakeTelegram, redis: Redis
) -> None:
    target = urlsplit(REDIS_URL)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    chats = campaign_chats(N)
    try:
        settings = drill_settings(redis_url=f"redis://127.0.0.1:{proxy.port}{target.path}")
        async with running_app(settings) as client:
            await start_campaign(client, chats, "redis drill")
            await eventually(lambda: _at_least(fake, chats, 10))
            await redis.flushdb()  # every queued job is gone: only the outbox remembers
            await proxy.cut()  # and Redis is away for a moment, as in a restart
            assert received(fake, chats) < N, "the fault came too late to test anything"
            await eventually(lambda: _noticed_down(client, "redis"))  # away until it shows
            await proxy.restore()
            result = await finish(fake, chats)
    finally:
        await proxy.close()
    assert result == Tally(N, N, 0, 0)


async def _noticed_down(client: httpx.AsyncClient, component: str) -> bool:
    """The outage lasts until the service itself reports the dependency away (its health)."""
    health = await client.get("/api/health")
    return not health.json()["components"][component]["ok"]


async def _at_least(fake: FakeTelegram, chats: list[str], n: int) -> bool:
    return received(fake, chats) >= n


async def test_drill_postgres_cut_mid_campaign(
    drill_settings: Callable[..., Settings], fake: FakeTelegram, database_url: str
) -> None:
    target = urlsplit(database_url)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    chats = campaign_chats(N)
    try:
        url = database_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
        async with running_app(drill_settings(database_url=url)) as client:
            await start_campaign(client, chats, "postgres drill")
            await eventually(lambda: _at_least(fake, chats, 10))
            await proxy.cut()  # every connection reset, new ones refused: a restart
            assert received(fake, chats) < N, "the fault came too late to test anything"
            await eventually(lambda: _noticed_down(client, "database"))
            await proxy.restore()
            result = await finish(fake, chats)
    finally:
        await proxy.close()
    assert result == Tally(N, N, 0, 0)


@pytest.mark.parametrize("kind", ["server_error", "hang"])
async def test_drill_platform_fails_for_a_while(
    drill_settings: Callable[..., Settings], fake: FakeTelegram, kind: Any
) -> None:
    chats = campaign_chats(30)
    async with running_app(drill_settings()) as client:
        fake.outage(kind, 2.0)
        await start_campaign(client, chats, f"{kind} drill")
        result = await finish(fake, chats)
    failed = [c for c in fake.calls if c.method == "sendMessage" and c.status >= 500]
    assert failed, "the platform never failed"
    assert result == Tally(30, 30, 0, 0)


async def test_drill_telegram_update_delivered_three_times_is_answered_once(
    drill_settings: Callable[..., Settings], fake: FakeTelegram, demo: dict[str, Any]
) -> None:
    chat = campaign_chats(1)[0]
    update = {
        "update_id": int(chat) * 10,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": int(chat), "type": "private", "first_name": "Ana"},
            "from": {"id": int(chat), "is_bot": False, "first_name": "Ana"},
            "text": "/orders",
            "entities": [{"type": "bot_command", "offset": 0, "length": 7}],
        },
    }
    headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    async with running_app(drill_settings(), mode="web") as client:
        first = await client.post("/webhook/telegram", json=update, headers=headers)
        # /orders answers with the list, then one card per open order.
        once = [r.text for r in fake.sent(chat)]
        again = [
            await client.post("/webhook/telegram", json=update, headers=headers) for _ in range(2)
        ]
    assert [a.status_code for a in [first, *again]] == [200, 200, 200]
    assert [a.json() for a in again] == [{}, {}]
    assert len(once) >= 2 and once[0].startswith("Open orders")
    assert [r.text for r in fake.sent(chat)] == once
    print(f"drill: update delivered 3 times, {len(once)} replies sent once each")


async def test_drill_twilio_message_delivered_three_times_is_answered_once(
    make_settings: Callable[..., Settings], demo: dict[str, Any]
) -> None:
    twilio = await FakeTwilio().start()
    public = "https://gomflow.example.com"
    settings = make_settings(
        enable_whatsapp=True,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_whatsapp_number=SENDER,
        twilio_api_base_url=twilio.base_url,
        public_base_url=public,
    )
    form = {
        "MessageSid": f"SM{campaign_chats(1)[0]}drill",
        "From": "whatsapp:+639170000777",
        "Body": "HELP",
        "ProfileName": "Ana",
    }
    signature = RequestValidator(AUTH_TOKEN).compute_signature(public + "/webhooks/whatsapp", form)
    try:
        async with running_app(settings, mode="web") as client:
            answers = [
                await client.post(
                    "/webhooks/whatsapp", data=form, headers={"X-Twilio-Signature": signature}
                )
                for _ in range(3)
            ]
    finally:
        await twilio.close()
    assert [a.status_code for a in answers] == [200, 200, 200]
    answered = [a for a in answers if "<Message>" in a.text]
    assert len(answered) == 1, [a.text for a in answers]
    print("drill: Twilio message delivered 3 times, answered once")


async def test_drill_a_ring_taken_by_a_killed_worker_is_not_lost(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    """A worker killed between taking a channel's ring and claiming its messages leaves no ring
    behind and no job to rescue: a live worker's poll claims the message all the same (the
    sweeper, which would ring again, is a minute away)."""
    from gomflow_messaging.bootstrap import build_services

    settings = make_settings(sweep_interval_seconds=60)
    text = f"rang-{campaign_chats(1)[0]}"
    async with running_app(settings, mode="web") as web:
        response = await web.post(
            "/api/notify",
            json={
                "event": "custom",
                "data": {"text": text},
                "recipients": [{"channel": "sandbox", "address": text}],
            },
            headers=AUTH,
        )
        assert response.status_code == 202
    services = await build_services(settings)
    try:
        # The worker that will die takes the ring (and then dies before it claims).
        assert await services.queue.wait_for_ring("sandbox", 1.0)
        assert await services.queue.redis.llen(services.queue.doorbell("sandbox")) == 0  # type: ignore[misc]
    finally:
        await services.close()
    async with running_app(settings):  # a live worker, which no ring wakes

        async def sent() -> Any:
            return await conn.fetchval(
                "SELECT deliveries FROM sandbox_messages WHERE payload->>'text' = $1", text
            )

        assert await eventually(sent, timeout=5) == 1
    print("drill: ring taken by a killed worker: sent 1/1, lost 0, duplicated 0")


async def test_drill_messenger_event_delivered_three_times_is_answered_once(
    make_settings: Callable[..., Settings], demo: dict[str, Any]
) -> None:
    graph = await FakeGraph().start()
    psid = run_psid(int(campaign_chats(1)[0]) % 1_000_000, 777)
    body = json.dumps(
        page_event(
            {
                "sender": {"id": psid},
                "recipient": {"id": "1"},
                "timestamp": 1,
                "message": {"mid": f"m_drill_{psid}", "text": "orders"},
            }
        )
    ).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign_event(body)}
    try:
        async with running_app(make_settings(**messenger_env(graph.base_url)), mode="web") as c:
            answers = [
                await c.post("/webhook/messenger", content=body, headers=headers) for _ in range(3)
            ]
            replies = await eventually(lambda: _sent_to(graph, psid))
    finally:
        await graph.close()
    assert [a.status_code for a in answers] == [200, 200, 200]
    # ORDERS answers with one carousel (or a line when no order is open): exactly once.
    assert len(replies) == len({json.dumps(r.message, sort_keys=True) for r in replies})
    print(f"drill: Messenger event delivered 3 times, {len(replies)} replies sent once each")


@pytest.mark.parametrize("kind", ["server_error", "hang"])
async def test_drill_messenger_fails_for_a_while(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection, kind: str
) -> None:
    graph = await FakeGraph().start()
    run = int(campaign_chats(1)[0]) % 1_000_000
    psids = [run_psid(run, n) for n in range(30)]
    contact = await conn.fetchval(
        "INSERT INTO contacts (display_name) VALUES ('drill') RETURNING id"
    )
    for psid in psids:
        # People who wrote a moment ago: inside Messenger's 24-hour window.
        await conn.execute(
            "INSERT INTO contact_addresses (contact_id, channel, address, last_inbound_at)"
            " VALUES ($1, 'messenger', $2, now())",
            contact,
            psid,
        )
    graph.faults += [(kind, None)] * 20  # the next 20 sends fail, then Graph is back
    settings = make_settings(**messenger_env(graph.base_url, messenger_timeout_seconds=0.5))
    try:
        async with running_app(settings) as client:
            body = {
                "event": "custom",
                "data": {"text": f"{kind} drill"},
                "recipients": [{"channel": "messenger", "address": p} for p in psids],
            }
            response = await client.post("/api/notify", json=body, headers=AUTH)
            assert response.status_code == 202, response.text
            await eventually(lambda: _all_sent(graph, psids), timeout=60)
            await quiet(0.3)  # a duplicate still in flight would land by now
    finally:
        await graph.close()
        await conn.execute("DELETE FROM contacts WHERE id = $1", contact)
    counts = Counter(s.psid for s in graph.sent)
    assert not graph.faults, "the platform never failed"
    assert [counts[p] for p in psids] == [1] * 30
    print(f"drill: Messenger {kind} for 20 sends: sent 30/30, lost 0, duplicated 0")


async def _sent_to(graph: FakeGraph, psid: str) -> list[Sent]:
    return graph.to(psid)


async def _all_sent(graph: FakeGraph, psids: list[str]) -> bool:
    return {s.psid for s in graph.sent} >= set(psids)


#: Extra copies a retry of a send whose answer was lost makes, per channel (see
#: LOST_ANSWER_REMEDY): Discord recognises the retry by its nonce; the others cannot.
DUPLICATES_PER_LOST_ANSWER = {"telegram": 1, "whatsapp": 1, "messenger": 1, "discord": 0}


@pytest.mark.parametrize("channel", sorted(DUPLICATES_PER_LOST_ANSWER))
async def test_drill_platform_accepts_and_the_answer_is_lost(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection, channel: str
) -> None:
    """The platform accepts 3 sends of a campaign of 12 and never answers them: each request
    times out, the dispatcher retries the message. The duplicates are counted at the platform,
    not assumed away: one per lost answer where the platform has no idempotency key."""
    n, lost = 12, 3
    result = await lost_answer_campaign(make_settings, conn, channel, n, lost)
    print(f"drill: {channel} accepted but answer lost x{lost}: {result}")
    print(f"  what remains: {LOST_ANSWER_REMEDY[channel]}")
    assert result == Tally(n, n, 0, lost * DUPLICATES_PER_LOST_ANSWER[channel])
