"""Batched dispatch: a campaign rings its channel's doorbell once, its messages are claimed
together (a statement for many), sent concurrently and recorded together, with every attempt
and audit row still there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from gomflow_messaging.settings import Settings
from tests.conftest import REDIS_URL, unique_text
from tests.drill import campaign_chats
from tests.fakes.telegram import FakeTelegram
from tests.helpers import AUTH, TcpProxy, eventually, queued_jobs, running_app


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
    # No job per message (nor per twenty): one ring on the channel's doorbell.
    assert not [ids for ids in await queued_jobs(redis, settings.queue_name) if ours & set(ids)]
    assert await redis.lrange(f"gomflow:{settings.queue_name}:due:sandbox", 0, -1) == [b"1"]

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
    # Claimed together: the attempts a claim opens share its statement's time.
    claims = await conn.fetchval(
        "SELECT count(DISTINCT a.started_at) FROM messages m"
        " JOIN delivery_attempts a ON a.message_id = m.id WHERE m.body->>'text' = $1",
        text,
    )
    assert claims <= 6, f"45 messages took {claims} claims"


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


async def _sent_once(conn: asyncpg.Connection, text: str) -> Any:
    return await conn.fetchval(
        "SELECT deliveries FROM sandbox_messages WHERE payload->>'text' = $1", text
    )


async def test_a_notify_wakes_an_idle_worker_before_its_poll(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    """The doorbell, not the poll, carries a transactional message to the worker: with a poll
    and a sweep far away, an idle worker sends it at once."""
    settings = make_settings(dispatch_poll_seconds=4, sweep_interval_seconds=60)
    text = unique_text("rang")
    async with running_app(settings) as client:
        await asyncio.sleep(0.3)  # the drainers' first look is over: they wait on the bell
        body = campaign(text, [{"channel": "sandbox", "address": text}])
        assert (await client.post("/api/notify", json=body, headers=AUTH)).status_code == 202
        assert await eventually(lambda: _sent_once(conn, text), timeout=3) == 1


async def test_with_redis_away_a_running_worker_still_sends_due_messages(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    """Redis holds only the doorbells: with it away, no ring comes, and the drainers' poll of
    Postgres still finds and sends what is due."""
    target = urlsplit(REDIS_URL)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    settings = make_settings(
        redis_url=f"redis://127.0.0.1:{proxy.port}{target.path}", sweep_interval_seconds=60
    )
    text = unique_text("no-redis")
    try:
        async with running_app(settings) as client:
            await proxy.cut()
            body = campaign(
                text, [{"channel": "sandbox", "address": f"{text}-{i}"} for i in range(3)]
            )
            assert (await client.post("/api/notify", json=body, headers=AUTH)).status_code == 202

            async def all_sent() -> Any:
                rows = await conn.fetch(
                    "SELECT deliveries FROM sandbox_messages WHERE payload->>'text' = $1", text
                )
                return rows if len(rows) == 3 else None

            rows = await eventually(all_sent, timeout=10)
            assert [r["deliveries"] for r in rows] == [1, 1, 1]
            await proxy.restore()
    finally:
        await proxy.close()


async def test_a_worker_whose_redis_goes_silent_still_sends_due_messages(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    """A `worker` process waits on its doorbells with a client that has no socket timeout (a
    BLPOP must not time out): Redis gone silent (a network partition: no answer, no reset)
    must not hold its drainers' poll of Postgres for ever."""
    from gomflow_messaging.bootstrap import build_services
    from gomflow_messaging.worker import WorkerRunner, new_worker_id

    target = urlsplit(REDIS_URL)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    queue = f"test-silent-{unique_text('q')}"
    settings = make_settings(queue_name=queue, sweep_interval_seconds=60)
    worker_settings = make_settings(
        queue_name=queue,
        redis_url=f"redis://127.0.0.1:{proxy.port}{target.path}",
        sweep_interval_seconds=60,
    )
    services = await build_services(worker_settings, blocking_queue=True, worker_id=new_worker_id())
    runner = WorkerRunner(services)
    text = unique_text("silent")
    try:
        await runner.start()
        await asyncio.sleep(0.3)  # the drainers' first look is over: they wait on the bell
        proxy.freeze()
        async with running_app(settings, mode="web") as web:
            body = campaign(text, [{"channel": "sandbox", "address": text}])
            assert (await web.post("/api/notify", json=body, headers=AUTH)).status_code == 202
        assert await eventually(lambda: _sent_once(conn, text), timeout=8) == 1
    finally:
        proxy.thaw()
        await runner.stop()
        await services.close()
        await proxy.close()


async def test_the_longest_poll_allowed_waits_quietly_on_the_web_client(
    make_settings: Callable[..., Settings],
) -> None:
    """`serve` runs the drainers on the web's Redis client, whose reads time out: a wait for
    the doorbell as long as the longest DISPATCH_POLL_SECONDS allowed must end in time (Redis
    answers a timed-out BLPOP up to a tenth of a second late), not as a Redis outage."""
    from gomflow_messaging.queue import JobQueue

    bounds = Settings.model_fields["dispatch_poll_seconds"].metadata
    longest = next(b.le for b in bounds if getattr(b, "le", None) is not None)
    settings = make_settings(dispatch_poll_seconds=longest)
    queue = JobQueue(settings.redis_url, f"test-longest-{unique_text('q')}")
    try:
        assert await queue.wait_for_ring("sandbox", settings.dispatch_poll_seconds) is False
    finally:
        await queue.close()


async def test_a_late_outcome_leaves_another_workers_claim_alone(
    settings: Settings, pool: Any, conn: asyncpg.Connection
) -> None:
    """A worker whose lease ran out before it wrote its attempt's outcome (Postgres slow, the
    process paused) finds the message claimed again by another worker, which the drainers'
    poll does within a second: its late "retry later", "fall back" or "failed" must not undo
    that live claim (the other worker's send would then go unrecorded, and the message out
    again at the retry)."""
    from gomflow_messaging import outbox

    text = unique_text("late")
    async with running_app(settings, mode="web") as web:
        body = campaign(text, [{"channel": "sandbox", "address": text}])
        response = await web.post("/api/notify", json=body, headers=AUTH)
    message_id = uuid.UUID(response.json()["messages"][0]["id"])
    first = await outbox.claim(pool, message_id, 60, "worker-a", ["sandbox"])
    assert first is not None
    await conn.execute(  # worker-a's lease runs out
        "UPDATE messages SET claimed_until = now() - interval '1 second' WHERE id = $1",
        message_id,
    )
    second = await outbox.claim(pool, message_id, 60, "worker-b", ["sandbox"])
    assert second is not None and second["attempts"] == 2

    await conn.execute(  # an address to fall back to, so that a late fall-back could move it
        """UPDATE messages SET routes = '[{"channel": "sandbox", "address": "next"}]'"""
        " WHERE id = $1",
        message_id,
    )
    late = first["attempt_id"]
    assert (
        await outbox.finish_retry(
            pool,
            message_id,
            late,
            delay_seconds=5,
            error_code="timeout",
            error="late",
            retry_after=None,
        )
        is None
    )
    assert await outbox.fall_back(pool, message_id, late, reason="rejected", error="late") is None
    await outbox.finish_failed(pool, message_id, late, reason="rejected", error="late")
    row = await conn.fetchrow(
        "SELECT status, attempts, claimed_until IS NOT NULL AS leased FROM messages WHERE id = $1",
        message_id,
    )
    assert dict(row) == {"status": "sending", "attempts": 2, "leased": True}
    await outbox.finish_sent(pool, message_id, second["attempt_id"], "ok")  # worker-b's
    assert await conn.fetchval("SELECT status FROM messages WHERE id = $1", message_id) == "sent"


async def _blocks_read(conn: asyncpg.Connection, sql: str, *args: Any) -> int:
    """The pages a statement reads (the json codec of `conn` decodes EXPLAIN's answer)."""
    plan = (await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *args))[0]
    return int(plan["Plan"]["Shared Hit Blocks"]) + int(plan["Plan"]["Shared Read Blocks"])


async def test_a_large_scheduled_campaign_costs_the_sweeper_and_health_nothing(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    """The sweeper (every worker, every SWEEP_INTERVAL_SECONDS) and /health ask which channels
    have messages due; a campaign scheduled for tomorrow is not due, and must not be read
    message by message to find that out (with messages_pending_idx gone, a filter on the due
    time alone read every unfinished message, or the whole table)."""
    from gomflow_messaging import outbox
    from gomflow_messaging.settings import CHANNEL_NAMES

    text = unique_text("tomorrow")
    async with running_app(settings, mode="web") as web:
        body = campaign(text, [{"channel": "sandbox", "address": text}])
        response = await web.post("/api/notify", json=body, headers=AUTH)
    notification_id = uuid.UUID(response.json()["notification_id"])
    await conn.execute(
        "INSERT INTO messages (notification_id, channel, address, event, body, status,"
        "                      next_attempt_at)"
        " SELECT $1, 'telegram', 'c' || g, 'custom', '{}'::jsonb, 'queued',"
        "        now() + interval '1 day' + g * interval '1 ms'"
        "   FROM generate_series(1, 100000) AS g",
        notification_id,
    )
    try:
        await conn.execute("ANALYZE messages")
        channels = list(CHANNEL_NAMES)
        assert await _blocks_read(conn, outbox._OVERDUE_CHANNELS, 30.0, channels) < 100
        assert await _blocks_read(conn, outbox._DUE_BY_CHANNEL, channels) < 100
    finally:
        await conn.execute("DELETE FROM messages WHERE notification_id = $1", notification_id)


async def test_a_ring_on_a_workers_client_gives_up_when_redis_is_silent() -> None:
    """A worker rings too (a fallback to another channel, a job handed over, the sweeper),
    on its client without a socket timeout: with Redis silent (a partition), the ring must
    give up (the poll finds the message anyway), not hold the send, and its place in the
    drainer's budget, for as long as TCP takes to give up (minutes)."""
    from gomflow_messaging.queue import JobQueue

    target = urlsplit(REDIS_URL)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    queue = JobQueue(
        f"redis://127.0.0.1:{proxy.port}{target.path}",
        f"test-ring-{unique_text('q')}",
        blocking=True,
    )
    try:
        assert await queue.ring(["sandbox"])
        proxy.freeze()
        assert await asyncio.wait_for(queue.ring(["sandbox"]), 10) is False
    finally:
        proxy.thaw()
        await queue.close()
        await proxy.close()
