"""The SAQ job queue on Redis: one place that names jobs and enqueues deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from redis.asyncio import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from saq.queue.redis import RedisQueue

log = logging.getLogger(__name__)

DELIVER_JOB = "deliver"
WORKERS_KEY = "gomflow:{queue}:workers"
ENQUEUE_BATCH = 200


def redis_client(url: str, *, blocking: bool = False) -> Redis:
    """A client that fails fast when Redis is away, so a request never hangs on it."""
    return Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=None if blocking else 5,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        health_check_interval=15,
    )


class JobQueue:
    """Enqueues delivery jobs keyed by message id and attempt; jobs take ids, never objects."""

    def __init__(self, redis_url: str, name: str, *, lease_seconds: float, blocking: bool = False):
        self.name = name
        self.redis = redis_client(redis_url, blocking=blocking)
        self.saq = RedisQueue(self.redis, name=name)
        self._lease = lease_seconds

    async def connect(self) -> None:
        await self.saq.connect()

    async def close(self) -> None:
        # Closing must not fail because Redis is away: there is nothing left to tell it.
        with contextlib.suppress(RedisError, OSError):
            await self.saq.disconnect()
            return
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()
        await self.redis.connection_pool.disconnect(inuse_connections=True)

    def job_key(self, message_id: UUID, attempt: int) -> str:
        return f"msg:{message_id}:{attempt}"

    async def enqueue_delivery(
        self, message_id: UUID, attempt: int, scheduled_at: datetime | None = None
    ) -> bool:
        """Enqueue one delivery; False (logged) when Redis cannot take it now.

        The outbox row is already committed, so the sweeper enqueues it later: a request
        never fails because Redis is down. A job still waiting under the same key is kept.
        """
        kwargs: dict[str, Any] = {
            "key": self.job_key(message_id, attempt),
            "timeout": int(self._lease) + 5,
            "retries": 3,
            "retry_delay": 1.0,
            "retry_backoff": True,
            # Postgres holds the truth; a finished job is dropped from Redis at once.
            "ttl": -1,
            "message_id": str(message_id),
        }
        if scheduled_at is not None and scheduled_at.timestamp() > time.time():
            kwargs["scheduled"] = int(scheduled_at.timestamp())
        try:
            await self.saq.enqueue(DELIVER_JOB, **kwargs)
        except (RedisError, OSError) as exc:
            log.warning("enqueue failed, the sweeper will retry: %s", type(exc).__name__)
            return False
        return True

    async def enqueue_many(
        self, items: Iterable[tuple[UUID, int, datetime | None]]
    ) -> tuple[int, int]:
        """Enqueue in batches of concurrent calls; returns (enqueued, deferred to sweeper)."""
        ok = failed = 0
        batch: list[tuple[UUID, int, datetime | None]] = []

        async def flush() -> None:
            nonlocal ok, failed
            results = await asyncio.gather(*(self.enqueue_delivery(*item) for item in batch))
            ok += sum(results)
            failed += len(results) - sum(results)
            batch.clear()

        for item in items:
            batch.append(item)
            if len(batch) >= ENQUEUE_BATCH:
                await flush()
                if failed:
                    # Redis is away: leave the rest to the sweeper instead of timing out each.
                    return ok, failed
        if batch:
            await flush()
        return ok, failed

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())  # type: ignore[misc]
        except (RedisError, OSError):
            return False

    async def beat(self, worker_id: str, ttl: float) -> None:
        """A worker says it is alive; health counts workers seen within their ttl."""
        key = WORKERS_KEY.format(queue=self.name)
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {worker_id: now + ttl})
            pipe.zremrangebyscore(key, 0, now)
            await pipe.execute()

    async def forget_worker(self, worker_id: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.zrem(WORKERS_KEY.format(queue=self.name), worker_id)

    async def live_workers(self) -> int:
        key = WORKERS_KEY.format(queue=self.name)
        return int(await self.redis.zcount(key, time.time(), "+inf"))

    async def depth(self) -> dict[str, int]:
        return {
            "queued": int(await self.saq.count("queued")),
            "active": int(await self.saq.count("active")),
        }
