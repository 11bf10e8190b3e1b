"""Redis: the doorbells that wake the workers when messages are due, and SAQ's job queue
(receipts, digests, cron) in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from redis.asyncio import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from saq.queue.redis import RedisQueue

log = logging.getLogger(__name__)

#: Jobs an older web replica may still enqueue during a rolling deploy (one message, or a
#: campaign's batch); this version rings doorbells instead, and its workers still run them.
DELIVER_JOB = "deliver"
DELIVER_BATCH_JOB = "deliver_batch"
#: A Redis list per channel holding at most one ring: "messages on this channel are due".
DOORBELL_KEY = "gomflow:{queue}:due:{channel}"
WORKERS_KEY = "gomflow:{queue}:workers"
#: The channels a live worker sends on (comma-separated), expiring with its heartbeat.
WORKER_CHANNELS_KEY = "gomflow:{queue}:worker-channels:{worker}"
#: How long after a BLPOP's own timeout its answer is given up for: Redis answers up to a
#: tenth of a second late (its timer's resolution).
RING_ANSWER_GRACE = 1.0
#: The longest a ring waits for Redis, on any client (a worker's has no socket timeout).
RING_TIMEOUT = 5.0


def redis_client(url: str, *, blocking: bool = False) -> Redis:
    """A client that fails fast when Redis is away, so a request never hangs on it."""
    return Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=None if blocking else 5,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        health_check_interval=15,
    )


async def live_worker_channels(redis: Redis, queue: str) -> dict[str, frozenset[str] | None]:
    """Each live worker of this queue and its channels (None: it has not said, e.g. an older
    version, which may send on any)."""
    key = WORKERS_KEY.format(queue=queue)
    ids = [i.decode() for i in await redis.zrangebyscore(key, time.time(), "+inf")]
    if not ids:
        return {}
    values = await redis.mget([WORKER_CHANNELS_KEY.format(queue=queue, worker=i) for i in ids])
    return {
        worker: None if value is None else frozenset(filter(None, value.decode().split(",")))
        for worker, value in zip(ids, values, strict=True)
    }


class JobQueue:
    """The doorbells, SAQ's queue and the workers' heartbeats, on one Redis client; jobs take
    ids, never objects."""

    def __init__(self, redis_url: str, name: str, *, blocking: bool = False):
        self.name = name
        self.redis = redis_client(redis_url, blocking=blocking)
        self.saq = RedisQueue(self.redis, name=name)

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

    def doorbell(self, channel: str) -> str:
        return DOORBELL_KEY.format(queue=self.name, channel=channel)

    async def ring(self, channels: Iterable[str]) -> bool:
        """Tell the workers of these channels that messages are due; False (logged) when Redis
        cannot take it now (the workers' poll finds the messages a moment later anyway).

        A doorbell holds at most one ring: any number of notifies before a worker looks cost
        it one claim, and a ring with no worker listening waits for the first one that comes.
        """
        names = sorted(set(channels))
        try:
            async with (
                asyncio.timeout(RING_TIMEOUT),
                self.redis.pipeline(transaction=False) as pipe,
            ):
                for name in names:
                    pipe.lpush(self.doorbell(name), 1)
                    pipe.ltrim(self.doorbell(name), 0, 0)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("ringing %s failed: %s", ", ".join(names), type(exc).__name__)
            return False
        return True

    async def wait_for_ring(self, channel: str, seconds: float) -> bool:
        """Until this channel's doorbell rings (True; the ring is taken) or ``seconds`` pass.

        A ring taken is answered by claiming everything due: a notify that commits after the
        claim rings again, so no ring is ever lost between a worker's look and its claim.

        Raises TimeoutError when Redis has not answered a moment after ``seconds``: a worker's
        client has no socket timeout, and a Redis gone silent (a network partition) must not
        hold the drainer, whose poll of Postgres still finds the due messages."""
        async with asyncio.timeout(seconds + RING_ANSWER_GRACE):
            got = await self.redis.blpop([self.doorbell(channel)], timeout=seconds)  # type: ignore[misc]
        return got is not None

    async def ping(self) -> bool:
        try:
            # Bounded: a worker's client has no socket timeout (see `wait_for_ring`).
            async with asyncio.timeout(RING_ANSWER_GRACE * 2):
                return bool(await self.redis.ping())  # type: ignore[misc]
        except (RedisError, OSError):
            return False

    async def beat(self, worker_id: str, ttl: float, channels: Iterable[str] = ()) -> None:
        """A worker says it is alive and which channels it sends on; health counts workers
        seen within their ttl."""
        key = WORKERS_KEY.format(queue=self.name)
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {worker_id: now + ttl})
            pipe.zremrangebyscore(key, 0, now)
            pipe.set(self._channels_key(worker_id), ",".join(sorted(channels)), ex=int(ttl) + 1)
            await pipe.execute()

    def _channels_key(self, worker_id: str) -> str:
        return WORKER_CHANNELS_KEY.format(queue=self.name, worker=worker_id)

    async def forget_worker(self, worker_id: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.zrem(WORKERS_KEY.format(queue=self.name), worker_id)
            await self.redis.delete(self._channels_key(worker_id))

    async def live_worker_channels(self) -> dict[str, frozenset[str] | None]:
        return await live_worker_channels(self.redis, self.name)

    async def depth(self) -> dict[str, int]:
        return {
            "queued": int(await self.saq.count("queued")),
            "active": int(await self.saq.count("active")),
        }
