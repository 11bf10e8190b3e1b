"""The SAQ job queue on Redis: one place that names jobs and enqueues deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from redis.asyncio import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from saq.queue.redis import RedisQueue

log = logging.getLogger(__name__)

DELIVER_JOB = "deliver"
DELIVER_BATCH_JOB = "deliver_batch"
WORKERS_KEY = "gomflow:{queue}:workers"
#: The channels a live worker sends on (comma-separated), expiring with its heartbeat.
WORKER_CHANNELS_KEY = "gomflow:{queue}:worker-channels:{worker}"
#: A job for a channel this worker does not send on is put back for another after this.
HAND_OVER_DELAY_SECONDS = 1
ENQUEUE_BATCH = 200
#: Messages due now that one job carries. A worker runs `worker_concurrency` jobs at once, so
#: up to 20 x 20 messages are claimed per process: at a 30/s platform cap that is 13 s of
#: sends, well inside the pacer's max wait and the lease.
DELIVERY_BATCH = 20


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
        kwargs = self._job(self.job_key(message_id, attempt), message_id, scheduled_at)
        return await self._enqueue(DELIVER_JOB, kwargs)

    async def enqueue_batch(self, message_ids: list[UUID]) -> bool:
        """One job for messages due now (claimed together); False when Redis cannot take it."""
        kwargs = self._options(f"batch:{message_ids[0]}:{len(message_ids)}")
        # A batch may wait for the claim budget and send in two groups, each within its own
        # leases: the job's timeout (which only frees a dead worker's job) covers them all.
        kwargs["timeout"] = int(self._lease) * 3 + 5
        kwargs["message_ids"] = [str(m) for m in message_ids]
        return await self._enqueue(DELIVER_BATCH_JOB, kwargs)

    async def _enqueue(self, job: str, kwargs: dict[str, Any]) -> bool:
        try:
            await self.saq.enqueue(job, **kwargs)
        except (RedisError, OSError) as exc:
            log.warning("enqueue failed, the sweeper will retry: %s", type(exc).__name__)
            return False
        return True

    def _options(self, key: str) -> dict[str, Any]:
        return {
            "key": key,
            "timeout": int(self._lease) + 5,
            "retries": 3,
            "retry_delay": 1.0,
            "retry_backoff": True,
            # Postgres holds the truth; a finished job is dropped from Redis at once.
            "ttl": -1,
        }

    def _job(self, key: str, message_id: UUID, scheduled_at: datetime | None) -> dict[str, Any]:
        kwargs = self._options(key)
        kwargs["message_id"] = str(message_id)
        if scheduled_at is not None and scheduled_at.timestamp() > time.time():
            kwargs["scheduled"] = int(scheduled_at.timestamp())
        return kwargs

    async def hand_over(self, message_ids: list[UUID]) -> bool:
        """Put messages of a channel this worker does not send on back in line, under a fresh
        key, for a worker that does (during a rolling deploy that turns a channel on, workers
        with different ENABLE_* share the queue). Scheduled a moment ahead, so a worker
        without the channel does not take the same job again and again at once."""
        key = f"handover:{message_ids[0]}:{uuid.uuid4().hex[:8]}"
        kwargs = self._options(key)
        kwargs["scheduled"] = int(time.time()) + HAND_OVER_DELAY_SECONDS
        if len(message_ids) == 1:
            kwargs["message_id"] = str(message_ids[0])
            return await self._enqueue(DELIVER_JOB, kwargs)
        kwargs["timeout"] = int(self._lease) * 3 + 5
        kwargs["message_ids"] = [str(m) for m in message_ids]
        return await self._enqueue(DELIVER_BATCH_JOB, kwargs)

    async def requeue(self, message_id: UUID, attempt: int) -> bool:
        """For the sweeper: enqueue again; if a job under this key is held by a worker that is
        no longer alive (killed between taking the job and claiming the message), enqueue it
        under a fresh key instead of waiting minutes for SAQ's own sweep to free it. The
        claim in Postgres still lets only one job send the message."""
        key = self.job_key(message_id, attempt)
        try:
            if await self.saq.enqueue(DELIVER_JOB, **self._job(key, message_id, None)):
                return True
            held = await self.saq.job(key)
            if held is None or not held.worker_id:
                return True  # waiting its turn in the queue
            live = await self.redis.zrangebyscore(
                WORKERS_KEY.format(queue=self.name), time.time(), "+inf"
            )
            if held.worker_id.encode() in live:
                return True  # a live worker has it
            fresh = f"{key}:{uuid.uuid4().hex[:8]}"
            await self.saq.enqueue(DELIVER_JOB, **self._job(fresh, message_id, None))
            log.info(
                "job %s was held by %s, which is gone: enqueued as %s", key, held.worker_id, fresh
            )
        except (RedisError, OSError) as exc:
            log.warning("re-enqueue failed, the sweeper will retry: %s", type(exc).__name__)
            return False
        return True

    async def requeue_many(self, items: Iterable[tuple[UUID, int]]) -> int:
        """`requeue` in batches of concurrent calls; returns how many Redis took."""
        ok = 0
        batch: list[tuple[UUID, int]] = []
        for item in [*items, None]:
            if item is not None:
                batch.append(item)
            if batch and (item is None or len(batch) >= ENQUEUE_BATCH):
                results = await asyncio.gather(*(self.requeue(*i) for i in batch))
                ok += sum(results)
                if not all(results):
                    return ok  # Redis is away: the next sweep tries again
                batch = []
        return ok

    async def enqueue_many(
        self, items: Iterable[tuple[UUID, int, datetime | None]]
    ) -> tuple[int, int]:
        """Enqueue in batches of concurrent calls; returns (enqueued, deferred to sweeper).

        Messages due now go DELIVERY_BATCH to a job; one scheduled for later, or alone, gets
        a job of its own (keyed by message and attempt)."""
        due: list[tuple[UUID, int, datetime | None]] = []
        jobs: list[list[tuple[UUID, int, datetime | None]]] = []
        for item in items:
            if item[2] is None or item[2].timestamp() <= time.time():
                due.append(item)
            else:
                jobs.append([item])
        jobs += [due[i : i + DELIVERY_BATCH] for i in range(0, len(due), DELIVERY_BATCH)]
        ok = failed = 0
        for start in range(0, len(jobs), ENQUEUE_BATCH):
            chunk = jobs[start : start + ENQUEUE_BATCH]
            results = await asyncio.gather(
                *(
                    self.enqueue_delivery(*job[0])
                    if len(job) == 1
                    else self.enqueue_batch([m for m, _, _ in job])
                    for job in chunk
                )
            )
            for job, good in zip(chunk, results, strict=True):
                ok, failed = (ok + len(job), failed) if good else (ok, failed + len(job))
            if failed:
                # Redis is away: leave the rest to the sweeper instead of timing out each.
                return ok, failed
        return ok, failed

    async def oldest_waiting(self) -> datetime | None:
        """When the job next in line (the head of SAQ's queue) was put in line; None when no
        job waits, or Redis cannot say (the sweeper then sweeps as if no job waited). Jobs
        leave in order: any job put in line before this one has been taken by a worker."""
        try:
            head = await self.redis.lindex(self.saq.namespace("queued"), 0)  # type: ignore[misc]
            job = self.saq.deserialize(await self.redis.get(head)) if head else None
        except (RedisError, OSError, ValueError):  # away, or a job it cannot read: sweep all
            return None
        if job is None:
            return None
        # `queued` is when it was enqueued (ms); a retry or a scheduled job joins the line later.
        return datetime.fromtimestamp(max(job.queued / 1000, job.scheduled), UTC)

    async def ping(self) -> bool:
        try:
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
