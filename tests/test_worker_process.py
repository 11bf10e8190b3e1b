"""The worker as a real process: SIGKILL mid-batch loses nothing; SIGTERM finishes in-flight."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from gomflow_messaging.settings import Settings
from tests.conftest import unique_text
from tests.helpers import AUTH, SECRET, eventually, running_app

BATCH = 200
CONCURRENCY = 5


@pytest.fixture
def worker_env(settings: Settings) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return {
        **keep,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SERVICE_SECRET": SECRET,
        "QUEUE_NAME": settings.queue_name,
        "ENABLE_SANDBOX": "true",
        "SANDBOX_DELAY_MS": "50",  # 200 messages take seconds: time to kill mid-batch
        "WORKER_CONCURRENCY": str(CONCURRENCY),
        "DISPATCH_LEASE_SECONDS": "3",
        "SWEEP_INTERVAL_SECONDS": "0.5",
        "SWEEP_GRACE_SECONDS": "1",
        "SHUTDOWN_GRACE_SECONDS": "10",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def start_worker(worker_env: dict[str, str], tmp_path: Any) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def start() -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"worker{len(procs)}.log", "wb")  # noqa: SIM115
        logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gomflow_messaging", "worker"],
            env=worker_env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    for log in logs:
        log.close()


async def enqueue_batch(settings: Settings, text: str) -> list[str]:
    body = {
        "event": "custom",
        "data": {"text": text},
        "recipients": [{"channel": "sandbox", "address": f"{text}-{i}"} for i in range(BATCH)],
    }
    async with running_app(settings, mode="web") as web:
        response = await web.post("/api/notify", json=body, headers=AUTH)
        assert response.status_code == 202, response.text
        return [m["id"] for m in response.json()["messages"]]


async def sandbox_rows(conn: asyncpg.Connection, text: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT message_id, deliveries FROM sandbox_messages WHERE payload->>'text' = $1", text
        )
    )


async def at_least(conn: asyncpg.Connection, text: str, n: int) -> list[asyncpg.Record] | None:
    rows = await sandbox_rows(conn, text)
    return rows if len(rows) >= n else None


async def test_sigkill_mid_batch_loses_nothing(
    settings: Settings, conn: asyncpg.Connection, start_worker: Any
) -> None:
    text = unique_text("kill")
    ids = await enqueue_batch(settings, text)
    first = start_worker()
    await eventually(lambda: at_least(conn, text, 30), timeout=30)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert len(await sandbox_rows(conn, text)) < BATCH, "the kill came too late to test anything"
    start_worker()
    rows = await eventually(lambda: at_least(conn, text, BATCH), timeout=60)
    # Every message reached the sandbox exactly once as the recipient sees it...
    assert sorted(str(r["message_id"]) for r in rows) == sorted(ids)
    statuses = await conn.fetch(
        "SELECT id, status, attempts FROM messages WHERE id = ANY($1::uuid[])", ids
    )
    assert {r["status"] for r in statuses} == {"sent"}
    # ...and only a message cut off in flight by the kill was handed over twice.
    redelivered = {r["message_id"] for r in rows if r["deliveries"] > 1}
    retried = {r["id"] for r in statuses if r["attempts"] > 1}
    assert redelivered <= retried
    assert len(retried) <= CONCURRENCY


async def test_sigterm_finishes_in_flight_and_loses_nothing(
    settings: Settings, conn: asyncpg.Connection, start_worker: Any
) -> None:
    text = unique_text("term")
    ids = await enqueue_batch(settings, text)
    first = start_worker()
    await eventually(lambda: at_least(conn, text, 30), timeout=30)
    first.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(first.wait, 20)
    assert code == 0
    in_flight = await conn.fetchval(
        "SELECT count(*) FROM messages WHERE id = ANY($1::uuid[]) AND status = 'sending'", ids
    )
    assert in_flight == 0, "a job was abandoned mid-send instead of finishing"
    assert len(await sandbox_rows(conn, text)) < BATCH, "the stop came too late to test anything"
    start_worker()
    rows = await eventually(lambda: at_least(conn, text, BATCH), timeout=60)
    assert sorted(str(r["message_id"]) for r in rows) == sorted(ids)
    assert sum(r["deliveries"] for r in rows) == BATCH  # a clean stop duplicates nothing
