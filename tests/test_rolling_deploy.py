"""A rolling deploy that turns a channel on: workers with different ENABLE_* share one queue.

A worker never fails a message of a channel it has not enabled: the message waits, queued
(and health says for which channel), until a worker that has the channel sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from gomflow_messaging.settings import Settings
from tests.conftest import unique_text
from tests.drill import campaign_chats
from tests.fakes.telegram import FakeTelegram
from tests.helpers import AUTH, eventually, running_app


async def _statuses(conn: asyncpg.Connection, text: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM messages WHERE body->>'text' = $1 GROUP BY status",
        text,
    )
    return {row["status"]: row["n"] for row in rows}


async def test_a_worker_without_the_channel_leaves_its_messages_to_one_that_has_it(
    telegram_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
) -> None:
    queue = unique_text("rolling")
    old = telegram_settings(queue_name=queue, enable_telegram=False)  # before the deploy
    new = telegram_settings(queue_name=queue)  # Telegram turned on
    text = unique_text("deploy")
    chats = campaign_chats(30)
    sandbox = [f"rolling-{i}" for i in range(30)]
    recipients: list[dict[str, Any]] = [{"channel": "telegram", "address": c} for c in chats]
    recipients += [{"channel": "sandbox", "address": a} for a in sandbox]
    body = {"event": "custom", "data": {"text": text}, "recipients": recipients}

    async with running_app(old) as _old_serve, running_app(new, mode="web") as new_web:
        response = await new_web.post("/api/notify", json=body, headers=AUTH)
        assert response.status_code == 202, response.text

        # Only the old worker is live: it sends the sandbox's and leaves Telegram's queued.
        async def sandbox_sent() -> Any:
            now = await _statuses(conn, text)
            return now if now.get("sent") == len(sandbox) else None

        now = await eventually(sandbox_sent, timeout=30)
        assert now == {"sent": len(sandbox), "queued": len(chats)}, now
        health = (await new_web.get("/api/health", headers=AUTH)).json()
        assert health["status"] == "degraded", health
        worker = health["components"]["worker"]
        assert worker["channels"] == {"sandbox": 1}
        assert worker["waiting_for_a_worker"]["telegram"] >= len(chats)
        assert fake_telegram.sent() == []
        # Without the secret: degraded, and no channel named.
        bare = (await new_web.get("/api/health")).json()
        assert bare["status"] == "degraded" and "telegram" not in str(bare)

        # The new worker starts beside the old one: every message sent, none failed.
        async with running_app(new) as new_serve:
            mixed = (await new_serve.get("/api/health", headers=AUTH)).json()
            assert mixed["components"]["worker"]["agree"] is False
            assert "live workers send on different channels" in mixed["problems"]
            assert mixed["status"] == "degraded"

            async def all_sent() -> Any:
                now = await _statuses(conn, text)
                return now if now == {"sent": len(chats) + len(sandbox)} else None

            await eventually(all_sent, timeout=60)
    ours = [c for c in fake_telegram.sent() if c.chat_id in set(chats)]
    assert sorted(c.chat_id for c in ours) == sorted(chats)  # each once
    failed_attempts = await conn.fetchval(
        "SELECT count(*) FROM delivery_attempts a JOIN messages m ON m.id = a.message_id"
        " WHERE m.body->>'text' = $1 AND a.outcome IS DISTINCT FROM 'sent'",
        text,
    )
    assert failed_attempts == 0
