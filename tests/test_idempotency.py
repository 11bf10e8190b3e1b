"""Idempotency-Key: a replay answers the same and sends nothing; another body 422; racing 409."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from gomflow_messaging.settings import Settings
from tests.conftest import unique_text
from tests.helpers import AUTH, eventually, quiet, running_app


def body(text: str) -> dict[str, Any]:
    return {
        "event": "custom",
        "data": {"text": text},
        "recipients": [{"channel": "sandbox", "address": "idem"}],
    }


async def sandbox_count(conn: asyncpg.Connection, text: str) -> int:
    count: int = await conn.fetchval(
        "SELECT coalesce(sum(deliveries), 0) FROM sandbox_messages WHERE payload->>'text' = $1",
        text,
    )
    return count


async def test_replay_gets_the_same_answer_and_sends_nothing_more(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    text = unique_text("idem")
    headers = {**AUTH, "Idempotency-Key": str(uuid.uuid4())}
    async with running_app(settings) as client:
        first = await client.post("/api/notify", json=body(text), headers=headers)
        assert first.status_code == 202
        await eventually(lambda: sandbox_count(conn, text))
        again = await client.post("/api/notify", json=body(text), headers=headers)
        assert again.status_code == 202
        assert again.json() == first.json()
        await quiet()  # a second delivery, if there were one, would land by now
        assert await sandbox_count(conn, text) == 1
        assert (
            await conn.fetchval("SELECT count(*) FROM messages WHERE body->>'text' = $1", text) == 1
        )


async def test_same_key_other_body_is_422(settings: Settings) -> None:
    headers = {**AUTH, "Idempotency-Key": str(uuid.uuid4())}
    async with running_app(settings, mode="web") as client:
        assert (
            await client.post("/api/notify", json=body("a"), headers=headers)
        ).status_code == 202
        other = await client.post("/api/notify", json=body("b"), headers=headers)
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        assert "Idempotency-Key" in other.json()["error"]["fields"]


async def test_failed_request_leaves_the_key_free(settings: Settings) -> None:
    headers = {**AUTH, "Idempotency-Key": str(uuid.uuid4())}
    bad = {"event": "custom", "data": {}, "recipients": [{"channel": "sandbox", "address": "a"}]}
    async with running_app(settings, mode="web") as client:
        assert (await client.post("/api/notify", json=bad, headers=headers)).status_code == 422
        good = await client.post("/api/notify", json=body(unique_text()), headers=headers)
        assert good.status_code == 202


async def test_fifty_parallel_requests_one_key_make_one_notification(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    text = unique_text("race")
    headers = {**AUTH, "Idempotency-Key": f"race-{uuid.uuid4()}"}
    async with running_app(settings) as client:
        responses = await asyncio.gather(
            *(client.post("/api/notify", json=body(text), headers=headers) for _ in range(50))
        )
        codes = sorted({r.status_code for r in responses})
        assert set(codes) <= {202, 409}, codes
        accepted = {r.json()["notification_id"] for r in responses if r.status_code == 202}
        assert len(accepted) == 1
        conflicts = [r for r in responses if r.status_code == 409]
        for r in conflicts:
            assert r.json()["error"]["code"] == "idempotency_in_flight"
            assert r.headers["retry-after"] == "1"
        await eventually(lambda: sandbox_count(conn, text))
        await quiet()
        assert (
            await conn.fetchval("SELECT count(*) FROM messages WHERE body->>'text' = $1", text) == 1
        )
        assert await sandbox_count(conn, text) == 1


async def test_key_must_be_printable(settings: Settings) -> None:
    async with running_app(settings, mode="web") as client:
        response = await client.post(
            "/api/notify", json=body("x"), headers={**AUTH, "Idempotency-Key": "x" * 300}
        )
        assert response.status_code == 422
        assert "Idempotency-Key" in response.json()["error"]["fields"]
