"""Scheduled jobs: run by the worker's cron, or now with `gomflow-messaging run-job NAME`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from saq import CronJob

from gomflow_messaging.workflows import gom_alerts, holds, reminders
from gomflow_messaging.workflows.proofs import retention
from gomflow_messaging.workflows.proofs.agent import AgentCheck

if TYPE_CHECKING:
    from gomflow_messaging.bootstrap import Services
    from gomflow_messaging.worker import WorkerContext

JobFunc = Callable[["Services", datetime], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    cron: str
    run: JobFunc
    help: str


async def sweep_outbox(services: Services, at: datetime) -> dict[str, Any]:
    """Ring the doorbells of channels with messages overdue (a ring lost, a worker killed)."""
    return {"rung": await services.dispatcher.sweep()}


async def sweep_payment_proofs(services: Services, at: datetime) -> dict[str, Any]:
    """Ask the Smart Agent again about receipts whose job was lost; after an hour, the GOM."""
    return await AgentCheck(services).sweep()


async def proof_images(services: Services, at: datetime) -> dict[str, Any]:
    """Delete receipt images after PROOF_IMAGE_RETENTION_DAYS (decided or not); rows stay."""
    return await retention.purge_images(services, at)


async def purge_expired(services: Services, at: datetime) -> dict[str, Any]:
    """Forget idempotency keys after a day and inbound update ids after a week."""
    async with services.pool.acquire() as conn:
        keys = await conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < $1::timestamptz - interval '1 day'", at
        )
        updates = await conn.execute(
            "DELETE FROM inbound_updates WHERE received_at < $1::timestamptz - interval '7 days'",
            at,
        )
    return {"idempotency_keys": int(keys.split()[-1]), "inbound_updates": int(updates.split()[-1])}


async def payment_reminders(services: Services, at: datetime) -> dict[str, Any]:
    """Remind unpaid buyers at REMINDER_OFFSETS_HOURS before the deadline."""
    return await reminders.run(services, at)


async def expire_holds(services: Services, at: datetime) -> dict[str, Any]:
    """Unpaid holds: a last reminder, then expiry past deadline + HOLD_GRACE_HOURS."""
    return await holds.expire(services, at)


async def deadline_alerts(services: Services, at: datetime) -> dict[str, Any]:
    """Tell GOMs about orders closing in 6, 2 and 1 hours."""
    return await gom_alerts.deadline_alerts(services, at)


async def gom_summaries(services: Services, at: datetime) -> dict[str, Any]:
    """Daily and weekly summaries at SUMMARY_HOUR in each GOM's time zone."""
    return await gom_alerts.summaries(services, at)


JOBS: dict[str, ScheduledJob] = {
    job.name: job
    for job in (
        ScheduledJob(
            "payment-reminders", "*/5 * * * *", payment_reminders, payment_reminders.__doc__ or ""
        ),
        ScheduledJob("expire-holds", "*/5 * * * *", expire_holds, expire_holds.__doc__ or ""),
        ScheduledJob(
            "deadline-alerts", "*/5 * * * *", deadline_alerts, deadline_alerts.__doc__ or ""
        ),
        ScheduledJob("gom-summaries", "0 * * * *", gom_summaries, gom_summaries.__doc__ or ""),
        ScheduledJob("sweep-outbox", "* * * * *", sweep_outbox, sweep_outbox.__doc__ or ""),
        ScheduledJob(
            "sweep-payment-proofs",
            "* * * * *",
            sweep_payment_proofs,
            sweep_payment_proofs.__doc__ or "",
        ),
        ScheduledJob("purge-expired", "17 * * * *", purge_expired, purge_expired.__doc__ or ""),
        ScheduledJob("proof-images", "23 * * * *", proof_images, proof_images.__doc__ or ""),
    )
}


def cron_jobs() -> list[CronJob[WorkerContext]]:
    """SAQ cron jobs, unique per queue: with several workers each runs once per tick."""
    jobs = []
    for job in JOBS.values():
        jobs.append(CronJob(_cron_function(job), cron=job.cron, unique=True, timeout=300))
    return jobs


def _cron_function(job: ScheduledJob) -> Callable[[WorkerContext], Awaitable[dict[str, Any]]]:
    async def run(ctx: WorkerContext) -> dict[str, Any]:
        return await job.run(ctx["services"], datetime.now(UTC))

    # SAQ names a function by its qualified name; each job needs its own.
    run.__qualname__ = run.__name__ = "cron_" + job.name.replace("-", "_")
    return run
