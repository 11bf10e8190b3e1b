"""Batched dispatch: a campaign's messages travel twenty to a job, are claimed together, sent
concurrently and recorded together, with every attempt and audit row still there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from gomflow_messaging.settings import Settings
from tests.conftest import unique_text
from tests.drill import campaign_chats
from tests.fakes.telegram import FakeTelegram
from tests.helpers import AUTH, eventually, queued_jobs, running_app


def campaign(text: str, recipients: list[dict[str, str]]) -> dict[str, Any]:
    return {"event": "custom", "data": {"text": text}, "recipients": recipients}


async def test_a_campaign_is_claimed_in_batches_and_every_attempt_recorded(
    settings: Settings, conn: asyncpg.Connection, redis: Any
) -> None:
    text = unique_text("batch")
    addresses = [f"b-{i}" for i in range(45)]
    async with running_app(settings, mode="web") as web:
        body = campaign(text, [{"channel": "sandbox", "address": a} for a in addresses])
        response = await web.post("/api/notify", json=body, headers=AUTH)
        assert response.status_code == 202
    ours = {m["id"] for m in response.json()["messages"]}
    jobs = [ids for ids in await queued_jobs(redis, settings.queue_name) if ours & set(ids)]
    assert sorted(len(ids) for ids in jobs) == [5, 20, 20]  # three jobs, not 45
    assert {i for ids in jobs for i in ids} == ours

    async def delivered() -> Any:
        rows = await conn.fetch(
            "SELECT address, deliveries FROM sandbox_messages WHERE payload->>'text' = $1", text
        )
        return rows if len(rows) == 45 else None

    async with running_app(settings):
        rows = await eventually(delivered, timeout=20)
    assert sorted(r["address"] for r in rows) == sorted(addresses)
    assert all(r["deliveries"] == 1 for r in rows)
    attempts = await conn.fetch(
        """
        SELECT m.status, m.attempts, a.attempt, a.outcome, a.finished_at IS NOT NULL AS finished,
               (SELECT count(*) FROM audit_log l
                 WHERE l.subject = m.id::text AND l.action = 'message' AND l.result = 'sent')
                 AS audited
          FROM messages m JOIN delivery_attempts a ON a.message_id = m.id
         WHERE m.body->>'text' = $1
        """,
        text,
    )
    assert len(attempts) == 45
    assert {tuple(r.values()) for r in attempts} == {("sent", 1, 1, "sent", True, 1)}


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = await FakeTelegram().start()
    yield server
    await server.close()


async def test_a_hung_send_does_not_hold_back_recording_its_batch(
    make_settings: Callable[..., Settings], fake: FakeTelegram, conn: asyncpg.Connection
) -> None:
    """The sends of a batch that went out are recorded while one of them still hangs: a
    worker killed meanwhile must not leave them to be sent again when the lease runs out."""
    settings = make_settings(
        enable_telegram=True,
        telegram_bot_token=fake.token,
        telegram_webhook_secret="batch-webhook-secret-0123456789",
        telegram_api_base_url=fake.url,
        telegram_request_timeout_seconds=25,
    )
    chats = campaign_chats(6)
    fake.fail_next("hang", chat_id=chats[0])
    text = unique_text("hung")

    async def statuses() -> dict[str, str]:
        rows = await conn.fetch(
            "SELECT address, status FROM messages WHERE body->>'text' = $1", text
        )
        return {r["address"]: r["status"] for r in rows}

    async with running_app(settings) as client:
        body = campaign(text, [{"channel": "telegram", "address": c} for c in chats])
        response = await client.post("/api/notify", json=body, headers=AUTH)
        assert response.status_code == 202

        async def others_sent() -> Any:
            now = await statuses()
            return now if sum(s == "sent" for s in now.values()) == 5 else None

        now = await eventually(others_sent, timeout=15)
        assert now[chats[0]] == "sending"  # still hanging: the batch did not wait for it
        assert len(fake.sent()) == 5
        await fake.close()  # the hang ends; the message is retried later
