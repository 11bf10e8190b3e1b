"""Recovery: Redis flushed or down while messages wait; health when a dependency is away."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gomflow_messaging import ratelimit
from gomflow_messaging.settings import Settings
from tests.conftest import REDIS_URL, unique_text
from tests.drill import campaign_chats
from tests.fakes.smart_agent import FakeSmartAgent
from tests.helpers import (
    AUTH,
    TcpProxy,
    eventually,
    running_app,
    sweepable,
)


def batch(text: str, n: int) -> dict[str, Any]:
    return {
        "event": "custom",
        "data": {"text": text},
        "recipients": [{"channel": "sandbox", "address": f"rec-{i}"} for i in range(n)],
    }


async def delivered(conn: asyncpg.Connection, text: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT address, deliveries FROM sandbox_messages WHERE payload->>'text' = $1", text
        )
    )


async def test_outbox_recovers_after_redis_is_flushed(
    settings: Settings, conn: asyncpg.Connection, redis: Redis
) -> None:
    text = unique_text("flush")
    async with running_app(settings, mode="web") as web:
        response = await web.post("/api/notify", json=batch(text, 20), headers=AUTH)
        assert response.status_code == 202
    # The channel's doorbell rang before Redis forgets it all.
    assert await redis.llen(f"gomflow:{settings.queue_name}:due:sandbox") == 1
    await redis.flushdb()  # the ring is gone; only the outbox remembers
    async with running_app(settings):
        rows = await eventually(lambda: _all(delivered(conn, text), 20), timeout=20)
    assert sorted(r["address"] for r in rows) == sorted(f"rec-{i}" for i in range(20))
    assert all(r["deliveries"] == 1 for r in rows)


async def _all(rows_coro: Any, n: int) -> Any:
    rows = await rows_coro
    return rows if len(rows) == n else None


async def test_notify_succeeds_while_redis_is_down(
    make_settings: Any, conn: asyncpg.Connection
) -> None:
    target = urlsplit(REDIS_URL)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    try:
        settings = make_settings(redis_url=f"redis://127.0.0.1:{proxy.port}{target.path}")
        text = unique_text("redis-down")
        async with running_app(settings, mode="web") as web:
            await proxy.cut()
            # Answered from the outbox (how fast: bench/timing.py), delivered once Redis is back.
            response = await web.post("/api/notify", json=batch(text, 5), headers=AUTH)
            assert response.status_code == 202, response.text
            assert {m["status"] for m in response.json()["messages"]} == {"queued"}
            health = await web.get("/api/health")
            assert health.status_code == 503
            assert health.json()["components"]["redis"]["ok"] is False
            await proxy.restore()
            # A worker comes up once Redis is back; the sweeper enqueues what was missed.
            async with running_app(settings):
                await eventually(lambda: _all(delivered(conn, text), 5), timeout=20)
    finally:
        await proxy.close()


async def test_health_is_200_with_a_live_worker(settings: Settings) -> None:
    async with running_app(settings) as client:

        async def healthy() -> Any:
            response = await client.get("/api/health", headers=AUTH)
            return response if response.status_code == 200 else None

        response = await eventually(healthy)
        assert response.json()["status"] == "ok", response.json()
        components = response.json()["components"]
        assert components["database"]["ok"] and components["redis"]["ok"]
        assert components["worker"]["live"] >= 1
        assert components["channels"]["sandbox"]["ok"]
        assert components["smart_agent"] == {"ok": True, "detail": "not used"}
        # Railway asks without the secret: whether each part works, and nothing it names: no
        # channel (the sandbox included), nor whether the Smart Agent is configured.
        bare = (await client.get("/api/health")).json()
        assert bare["status"] == "ok"
        assert bare["components"] == {
            "database": {"ok": True},
            "redis": {"ok": True},
            "worker": {"ok": True},
            "platforms": {"ok": True},
        }
        assert "version" not in bare and "sandbox" not in json.dumps(bare)
        # The original GOMFLOW services' monitoring polls /health: the same answer.
        for headers in ({}, AUTH):
            same = await client.get("/health", headers=headers)
            assert same.status_code == 200
            assert (
                same.json().keys()
                == (await client.get("/api/health", headers=headers)).json().keys()
            )
        assert (await client.get("/health")).json()["components"] == bare["components"]


async def test_a_web_replica_without_a_worker_is_degraded_not_down(make_settings: Any) -> None:
    """A web service's job is to accept: split web and worker services deploy on Railway."""
    settings = make_settings(queue_name=unique_text("no-workers"))
    async with running_app(settings, mode="web") as client:
        response = await client.get("/api/health", headers=AUTH)
        assert response.status_code == 200
        assert response.json()["status"] == "degraded"
        assert response.json()["components"]["worker"] == {"ok": False, "live": 0}
        bare = await client.get("/api/health")
        assert bare.status_code == 200
        assert bare.json()["components"]["worker"] == {"ok": False}  # no count


async def test_serve_without_a_live_worker_is_503(make_settings: Any) -> None:
    """`serve` carries its own worker: if it is not alive, this process cannot do its job."""
    from gomflow_messaging.app import create_app
    from gomflow_messaging.bootstrap import build_services

    settings = make_settings(queue_name=unique_text("dead-worker"))
    services = await build_services(settings)
    app = create_app(settings, mode="serve", services=services)
    app.state.services = services  # the lifespan (and so the worker) never runs
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            response = await client.get("/api/health")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
        assert response.json()["components"]["worker"] == {"ok": False}
    finally:
        await services.close()


async def test_the_smart_agent_down_is_degraded(make_settings: Any) -> None:
    agent = await FakeSmartAgent(secret="").start()
    try:
        settings = make_settings(smart_agent_service_url=agent.url)
        async with running_app(settings) as client:
            response = await eventually(lambda: _status(client, 200))
            assert response.json()["status"] == "ok"
            agent.healthy = False
            response = await client.get("/api/health", headers=AUTH)
            assert response.status_code == 200
            assert response.json()["status"] == "degraded"
            assert response.json()["components"]["smart_agent"] == {
                "ok": False,
                "error": "http_503",
            }
        await agent.close()
        async with running_app(settings) as client:
            response = await eventually(lambda: _status(client, 200))
            assert response.json()["status"] == "degraded"
            # Without the secret: one flag for the platforms and the agent together.
            assert response.json()["components"]["platforms"] == {"ok": False}
    finally:
        await agent.close()


async def test_health_is_503_when_postgres_is_unreachable(
    make_settings: Any, database_url: str
) -> None:
    target = urlsplit(database_url)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    try:
        url = database_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
        settings = make_settings(database_url=url)
        async with running_app(settings) as client:
            await eventually(lambda: _status(client, 200))
            await proxy.cut()
            response = await eventually(lambda: _status(client, 503))
            assert response.json()["components"]["database"]["ok"] is False
            await proxy.restore()
            await eventually(lambda: _status(client, 200))
    finally:
        await proxy.close()


async def test_health_is_503_when_redis_is_unreachable(make_settings: Any) -> None:
    target = urlsplit(REDIS_URL)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    try:
        settings = make_settings(redis_url=f"redis://127.0.0.1:{proxy.port}{target.path}")
        async with running_app(settings) as client:
            await eventually(lambda: _status(client, 200))
            await proxy.cut()
            response = await eventually(lambda: _status(client, 503))
            assert response.json()["components"]["redis"]["ok"] is False
    finally:
        await proxy.close()


async def _status(client: Any, code: int) -> Any:
    response = await client.get("/api/health")
    return response if response.status_code == code else None


async def test_the_sweeper_rings_again_for_overdue_messages(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection, redis: Redis
) -> None:
    """A ring lost (Redis restarted empty) is rung again by the sweeper once the messages are
    past the grace: once, whatever their number and the number of sweeps."""
    from gomflow_messaging.bootstrap import build_services

    queue = f"test-sweep-{uuid.uuid4().hex[:8]}"
    settings = make_settings(queue_name=queue, sweep_grace_seconds=0.2)
    text = unique_text("overdue")
    async with running_app(settings, mode="web") as web:  # no worker: the messages wait
        response = await web.post("/api/notify", json=batch(text, 3), headers=AUTH)
    assert response.status_code == 202
    doorbell = f"gomflow:{queue}:due:sandbox"
    await redis.delete(doorbell)  # the ring is lost
    services = await build_services(settings)
    try:
        await eventually(lambda: sweepable(conn, text, 0.2, 3))
        assert "sandbox" in await services.dispatcher.sweep()
        assert "sandbox" in await services.dispatcher.sweep()
        assert await redis.lrange(doorbell, 0, -1) == [b"1"]  # rung twice, one ring waits
    finally:
        await services.close()
        await redis.delete(doorbell)


async def test_run_job_sweep_outbox_rings_the_doorbells(
    settings: Settings, conn: asyncpg.Connection, redis: Redis
) -> None:
    from gomflow_messaging.bootstrap import build_services
    from gomflow_messaging.schedule import JOBS

    text = unique_text("sweep")
    async with running_app(settings, mode="web") as web:
        await web.post("/api/notify", json=batch(text, 3), headers=AUTH)
    await redis.flushdb()

    await eventually(lambda: sweepable(conn, text, settings.sweep_grace_seconds, 3))
    services = await build_services(settings)
    try:
        result = await JOBS["sweep-outbox"].run(services, __import__("datetime").datetime.now())
    finally:
        await services.close()
    assert "sandbox" in result["rung"]
    assert await redis.llen(f"gomflow:{settings.queue_name}:due:sandbox") == 1


async def test_with_redis_away_messages_are_refused_to_the_platform_and_uploads_let_through(
    make_settings: Callable[..., Settings],
) -> None:
    """With Redis away nobody can be counted. A message's limit raises, so the chat pipeline
    answers 503 and the platform delivers it again later (tests/test_inbound.py); an upload's
    limit fails open (its other bounds are in Postgres)."""
    target = urlsplit(REDIS_URL)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    away = Redis.from_url(f"redis://127.0.0.1:{proxy.port}{target.path}")
    settings = make_settings(rate_limit_max_messages=1, rate_limit_max_uploads=1)
    person = unique_text("limiter")
    try:
        assert await ratelimit.inbound(away, settings, "telegram", person) == ("ok", "messages")
        await proxy.cut()
        with pytest.raises(RedisError):
            await ratelimit.inbound(away, settings, "telegram", person)
        with pytest.raises(RedisError):
            await ratelimit.inbound(away, settings, "telegram", person, link_attempt=True)
        uploads = [
            await ratelimit.hit(away, settings, "uploads", "telegram", person) for _ in range(3)
        ]
    finally:
        await away.aclose()
        await proxy.close()
    assert uploads == ["ok", "ok", "ok"]


async def test_a_ring_taken_by_a_stopping_drainer_is_left_for_another_worker(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    """A drainer told to stop (SIGTERM, a deploy) claims nothing more, but still waits out
    its BLPOP: a ring it takes meanwhile is rung again for the other workers, not swallowed
    (their messages would wait for another worker's poll, or for the sweeper)."""
    from gomflow_messaging.bootstrap import build_services
    from gomflow_messaging.drainer import Drainer
    from gomflow_messaging.logs import Outage

    queue = f"test-stopping-{uuid.uuid4().hex[:8]}"
    settings = make_settings(queue_name=queue, dispatch_poll_seconds=4)
    services = await build_services(settings, blocking_queue=True)
    doorbell = services.queue.doorbell("sandbox")
    drainer = Drainer(
        services.dispatcher,
        "sandbox",
        redis_outage=Outage("Redis", "test"),
        postgres_outage=Outage("Postgres", "test"),
    )
    try:
        drainer.start()
        await asyncio.sleep(0.3)  # its first look is over: it waits on the bell
        stopping = asyncio.create_task(drainer.stop(5))
        await asyncio.sleep(0.1)
        await services.queue.ring(["sandbox"])
        await stopping
        assert await redis.lrange(doorbell, 0, -1) == [b"1"]  # type: ignore[misc]
    finally:
        await services.close()
        await redis.delete(doorbell)


async def test_a_stopping_drainer_claims_nothing_more_once_its_sends_end(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    """A drainer told to stop while it waits for places (every place sending: a backlog, the
    usual state when a deploy stops a busy worker) claims no new batch when they come back:
    that batch would start its sends as the grace period runs out, to be cut off and sent
    again once its lease ends."""
    from gomflow_messaging.bootstrap import build_services
    from gomflow_messaging.drainer import Drainer
    from gomflow_messaging.logs import Outage

    queue = f"test-stopping-{uuid.uuid4().hex[:8]}"
    settings = make_settings(queue_name=queue, worker_concurrency=2, sandbox_delay_ms=1000)
    text = unique_text("backlog")
    async with running_app(settings, mode="web") as web:
        response = await web.post("/api/notify", json=batch(text, 6), headers=AUTH)
        assert response.status_code == 202
    services = await build_services(settings, blocking_queue=True)
    drainer = Drainer(
        services.dispatcher,
        "sandbox",
        redis_outage=Outage("Redis", "test"),
        postgres_outage=Outage("Postgres", "test"),
    )
    try:
        drainer.start()
        await asyncio.sleep(0.3)  # two sends under way, the drainer waits for their places
        told_at = await conn.fetchval("SELECT clock_timestamp()")
        await drainer.stop(10)
        claimed_after = await conn.fetchval(
            "SELECT count(*) FROM delivery_attempts WHERE started_at > $1", told_at
        )
        assert claimed_after == 0
    finally:
        await services.close()
        await conn.execute(
            "UPDATE messages SET status = 'failed' WHERE body->>'text' = $1"
            " AND status IN ('queued', 'sending')",
            text,
        )


async def test_a_drainer_says_when_postgres_is_back(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    """The drainers are the first to find Postgres gone (they look every second); they also
    say when it is back, not the sweeper a SWEEP_INTERVAL_SECONDS later, nor nobody."""
    from gomflow_messaging.bootstrap import build_services
    from gomflow_messaging.drainer import Drainer
    from gomflow_messaging.logs import Outage

    target = urlsplit(database_url)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    url = database_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
    settings = make_settings(database_url=url, queue_name=f"test-pg-{uuid.uuid4().hex[:8]}")
    services = await build_services(settings, blocking_queue=True)
    postgres = Outage("Postgres", "test")
    drainer = Drainer(
        services.dispatcher,
        "sandbox",
        redis_outage=Outage("Redis", "test"),
        postgres_outage=postgres,
    )
    try:
        drainer.start()
        await proxy.cut()

        async def down() -> bool:
            return postgres.down

        async def back() -> bool:
            return not postgres.down

        await eventually(down, timeout=5)
        await proxy.restore()
        await eventually(back, timeout=5)
    finally:
        await drainer.stop(1)
        await services.close()
        await proxy.close()


async def test_a_paced_channel_waits_for_redis_instead_of_failing(
    telegram_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    """Telegram's sends go through the pacer, which lives in Redis: with Redis away none can
    leave. The drainers still find the due messages in Postgres; those must wait for Redis
    (as their jobs did in Redis's queue), not be tried until they fail for good: with
    production's backoff (2 + 4 + ... + 128 s), every due message had failed some four
    minutes into an outage."""
    target = urlsplit(REDIS_URL)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    settings = telegram_settings(
        redis_url=f"redis://127.0.0.1:{proxy.port}{target.path}",
        sweep_interval_seconds=60,
        dispatch_max_attempts=3,
    )
    chat = campaign_chats(1)[0]

    async def status() -> str:
        return str(await conn.fetchval("SELECT status FROM messages WHERE address = $1", chat))

    async def sent() -> bool:
        return await status() == "sent"

    try:
        async with running_app(settings) as client:
            await proxy.cut()
            body = {
                "event": "custom",
                "data": {"text": unique_text("paced")},
                "recipients": [{"channel": "telegram", "address": chat}],
            }
            assert (await client.post("/api/notify", json=body, headers=AUTH)).status_code == 202
            # Time for every attempt allowed (backoff 0.1 s, doubling, in tests), and more.
            await asyncio.sleep(3)
            assert await status() == "queued"
            await proxy.restore()
            await eventually(sent, timeout=10)
    finally:
        await proxy.close()


async def test_postgres_away_is_503_with_retry_after_not_a_traceback(
    make_settings: Callable[..., Settings], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The core API's notify while Postgres restarts (or refuses: max_connections reached) is
    told to try again, 503 with Retry-After; it was a 500 with a traceback per request."""
    target = urlsplit(database_url)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    url = database_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
    try:
        async with running_app(make_settings(database_url=url), mode="web") as client:
            await proxy.cut()  # every connection reset, new ones refused: a restart
            caplog.clear()
            answers = [
                await client.post(
                    "/api/notify", json=batch(unique_text("pg-away"), 1), headers=AUTH
                )
                for _ in range(3)
            ]
            assert [a.status_code for a in answers] == [503, 503, 503]
            assert {a.json()["error"]["code"] for a in answers} == {"unavailable"}
            assert all(a.headers["retry-after"] == "5" for a in answers)
            away = [r for r in caplog.records if "a dependency is away" in r.getMessage()]
            assert len(away) <= 1 and not any(r.exc_info for r in caplog.records), [
                r.getMessage() for r in caplog.records if r.exc_info
            ]
            await proxy.restore()
    finally:
        await proxy.close()
