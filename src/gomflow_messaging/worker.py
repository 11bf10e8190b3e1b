"""The worker: a drainer per channel sending due messages, SAQ running the other jobs (receipts,
digests, cron, an older web's deliveries), the outbox sweeper and a liveness heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from redis.exceptions import RedisError
from saq import Worker
from saq.types import Context

from gomflow_messaging.doctor import where
from gomflow_messaging.drainer import Drainer
from gomflow_messaging.logs import Outage, OutageFilter
from gomflow_messaging.queue import DELIVER_BATCH_JOB, DELIVER_JOB
from gomflow_messaging.schedule import cron_jobs
from gomflow_messaging.workflows import gom_alerts
from gomflow_messaging.workflows.proofs.agent import PROOF_JOB, AgentCheck

if TYPE_CHECKING:
    from gomflow_messaging.bootstrap import Services

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
#: Postgres refusing, restarting or gone: an outage to report, not a bug to trace.
POSTGRES_AWAY = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)


class WorkerContext(Context, total=False):
    services: Services


def new_worker_id() -> str:
    """``host-pid-random``: no colon, as SAQ's queue info reads a worker's id back as the text
    after the last colon of its stats key (a colon here hid every worker from ``/saq``)."""
    host = socket.gethostname().replace(":", "-")
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def deliver(ctx: WorkerContext, *, message_id: str) -> dict[str, Any]:
    """SAQ job of an older web replica: deliver one outbox message (the id is all it carries)."""
    return await ctx["services"].dispatcher.deliver(uuid.UUID(message_id))


async def deliver_batch(ctx: WorkerContext, *, message_ids: list[str]) -> dict[str, Any]:
    """SAQ job of an older web replica: deliver the due ones of these messages, together."""
    ids = [uuid.UUID(m) for m in message_ids]
    return await ctx["services"].dispatcher.deliver_batch(ids)


async def gom_digest(ctx: WorkerContext, *, gom_id: str, window: int) -> dict[str, Any]:
    """SAQ job: the GOM's folded new-submission alerts for one minute."""
    services = ctx["services"]
    sent = await gom_alerts.send_digest(services, uuid.UUID(gom_id), window, datetime.now(UTC))
    return {"folded": sent}


async def check_payment_proof(ctx: WorkerContext, *, proof_id: str) -> dict[str, Any]:
    """SAQ job: the Smart Agent reads one receipt; approved, or on to the GOM."""
    return await AgentCheck(ctx["services"]).check(uuid.UUID(proof_id))


def build_worker(services: Services) -> _Worker:
    settings = services.settings

    async def startup(ctx: WorkerContext) -> None:
        ctx["services"] = services

    worker = _Worker(
        services.queue.saq,
        functions={
            (DELIVER_JOB, deliver),
            (DELIVER_BATCH_JOB, deliver_batch),
            (gom_alerts.DIGEST_JOB, gom_digest),
            (PROOF_JOB, check_payment_proof),
        },
        cron_jobs=cron_jobs(),
        concurrency=settings.worker_concurrency,
        startup=startup,
        shutdown_grace_period_s=settings.shutdown_grace_seconds,
        # SAQ's own sweep of dead jobs; our outbox sweeper is the real safety net.
        timers={"sweep": 30, "schedule": 1},  # type: ignore[arg-type]
        id=services.dispatcher.worker_id,
        # Idle slots wake every second, so a stop never waits on an empty queue.
        dequeue_timeout=1.0,
    )
    # Signals belong to whoever runs us (uvicorn or our CLI), so shutdown stays orderly.
    worker.SIGNALS = []
    return worker


class _Worker(Worker[WorkerContext]):
    """SAQ's worker, whose job slots pause while Redis is known to be away.

    Each of its slots otherwise retries the dequeue at once, connecting over and over.
    """

    redis_outage: Outage | None = None
    redis_ping: Callable[[], Awaitable[bool]] | None = None

    async def process(self) -> bool:
        outage, ping = self.redis_outage, self.redis_ping
        if outage is not None and ping is not None and outage.down:
            await asyncio.sleep(1.0)
            # Each slot looks for itself, so work resumes within a second of Redis's return.
            if not await ping():
                return False
            outage.ok()
        return await super().process()


async def _every(
    interval: float, name: str, func: Any, redis: Outage, postgres: Outage | None = None
) -> None:
    while True:
        try:
            await func()
        except asyncio.CancelledError:
            raise
        except RedisError as exc:
            redis.failed(exc)
        except POSTGRES_AWAY as exc:
            # redis-py wraps its socket errors, so a bare OSError here is Postgres's.
            (postgres or redis).failed(exc)
        except Exception:
            log.exception("%s failed", name)
        else:
            # The sweeper may not touch Redis at all (nothing stuck): its success proves only
            # Postgres; the heartbeat's proves Redis.
            (postgres or redis).ok()
        await asyncio.sleep(interval)


class WorkerRunner:
    """Runs the SAQ worker with the sweeper and heartbeat beside it; stops them in order."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.worker = build_worker(services)
        self._tasks: list[asyncio.Task[None]] = []
        settings = services.settings
        every = settings.outage_warning_seconds
        self.redis_outage = Outage(
            "Redis",
            where(settings.redis_url),
            every,
            effect="receipts, scheduled jobs and messages on paced channels (every platform's)"
            " wait until it is back (the others are still sent: the workers look in Postgres"
            f" every {settings.dispatch_poll_seconds:g} s)",
        )
        self.postgres_outage = Outage("Postgres", where(settings.database_url), every)
        self.worker.redis_outage = self.redis_outage
        self.worker.redis_ping = services.queue.ping
        # SAQ logs each failed upkeep round with a traceback; while Redis is away those
        # become the outage's lines.
        self._saq_filter = OutageFilter(self.redis_outage, (RedisError, OSError))
        # asyncpg's pool does the same each time it fails to reconnect while Postgres is away.
        self._pool_filter = OutageFilter(self.postgres_outage, POSTGRES_AWAY)
        self.drainers = [
            Drainer(
                services.dispatcher,
                channel,
                redis_outage=self.redis_outage,
                postgres_outage=self.postgres_outage,
            )
            for channel in services.dispatcher.channel_names
        ]

    async def start(self) -> None:
        services = self.services
        worker_id = services.dispatcher.worker_id
        logging.getLogger("saq").addFilter(self._saq_filter)
        logging.getLogger("asyncpg.pool").addFilter(self._pool_filter)
        for drainer in self.drainers:
            drainer.start()
        self._tasks = [
            asyncio.create_task(self.worker.start(), name="saq-worker"),
            asyncio.create_task(
                _every(
                    services.settings.sweep_interval_seconds,
                    "outbox sweeper",
                    services.dispatcher.sweep,
                    self.redis_outage,
                    self.postgres_outage,
                ),
                name="outbox-sweeper",
            ),
            asyncio.create_task(
                _every(
                    services.settings.sweep_interval_seconds,
                    "proof sweeper",
                    AgentCheck(services).sweep,
                    self.redis_outage,
                    self.postgres_outage,
                ),
                name="proof-sweeper",
            ),
            asyncio.create_task(
                _every(
                    HEARTBEAT_SECONDS,
                    "heartbeat",
                    lambda: services.queue.beat(
                        worker_id, HEARTBEAT_SECONDS * 3, services.dispatcher.channel_names
                    ),
                    self.redis_outage,
                ),
                name="worker-heartbeat",
            ),
        ]

    async def stop(self) -> None:
        """Stop taking jobs and claiming messages, let in-flight ones finish (up to the grace
        period), then quit.

        A send cut off by the grace period keeps its lease; a worker claims it again later.
        """
        for task in self._tasks[1:]:
            task.cancel()
        grace = self.services.settings.shutdown_grace_seconds
        drained = asyncio.gather(*(drainer.stop(grace) for drainer in self.drainers))
        worker = self.worker
        worker.event.set()  # no new jobs; each slot returns after its current one
        # SAQ's stop waits for all its tasks, and its upkeep loops would sleep out the grace
        # period: end them now (they return quietly once the event is set).
        for task in list(worker.tasks):
            if task.get_name() != "process":
                task.cancel()
        await worker.stop()
        await drained
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            await self.services.queue.forget_worker(self.services.dispatcher.worker_id)
        finally:
            logging.getLogger("saq").removeFilter(self._saq_filter)
            logging.getLogger("asyncpg.pool").removeFilter(self._pool_filter)

    async def wait(self) -> None:
        """Until the SAQ worker ends (it only ends when stopped or on a fatal error)."""
        await self._tasks[0]
