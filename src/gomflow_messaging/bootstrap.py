"""The composition root: builds the pool, the queue and the enabled channels, once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from gomflow_messaging import db
from gomflow_messaging.channels import registry
from gomflow_messaging.dispatcher import Dispatcher
from gomflow_messaging.queue import JobQueue
from gomflow_messaging.workflows import console_links, gom_alerts, holds, reminders
from gomflow_messaging.workflows.chat.router import Bot
from gomflow_messaging.workflows.proofs import PaymentProofs

if TYPE_CHECKING:
    from gomflow_messaging.channels.base import Channel
    from gomflow_messaging.settings import Settings
    from gomflow_messaging.workflows.chat.types import Sender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Ports:
    settings: Settings
    pool: db.Pool
    queue: JobQueue
    channels: dict[str, Channel]


@dataclass
class Services:
    settings: Settings
    pool: db.Pool
    queue: JobQueue
    channels: dict[str, Channel]
    dispatcher: Dispatcher
    bot: Bot
    extras: dict[str, Any] = field(default_factory=dict)

    async def close(self) -> None:
        for channel in self.channels.values():
            try:
                await channel.close()
            except Exception:
                log.exception("closing channel %s", channel.name)
        await self.queue.close()
        await self.pool.close()


async def build_services(
    settings: Settings, *, blocking_queue: bool = False, worker_id: str = "local"
) -> Services:
    """Connect to Postgres and Redis and start every enabled channel.

    Postgres must answer (the outbox lives there); Redis may be down: requests are still
    accepted and the workers' poll finds the messages meanwhile.
    """
    pool = await db.create_pool(settings.database_url, max_size=settings.db_pool_size)
    queue = JobQueue(settings.redis_url, settings.queue_name, blocking=blocking_queue)
    await queue.connect()
    channels: dict[str, Channel] = {}
    try:
        # Only enabled channels are built: a disabled one's modules (and SDK) stay unimported.
        for name in settings.enabled_channels:
            channel = registry.build_channel(name, settings, pool, queue.redis)
            await channel.start()
            channels[name] = channel
    except BaseException:
        for channel in channels.values():
            await channel.close()
        await queue.close()
        await pool.close()
        raise
    dispatcher = Dispatcher(settings, pool, queue, channels, worker_id=worker_id)
    # What the workflows are given (workflows.ports.Ports): not the Services container.
    ports = _Ports(settings, pool, queue, channels)

    async def submission_created(submission_id: UUID) -> None:
        await gom_alerts.on_new_submission(ports, submission_id, datetime.now(UTC))

    async def remind_now(order_id: UUID) -> int:
        return await reminders.remind_now(ports, order_id, datetime.now(UTC))

    async def cancel_hold(submission_id: UUID, gom_id: UUID, place: str) -> holds.CancelResult:
        return await holds.cancel_hold(ports, submission_id, by=gom_id, place=place)

    async def gom_chat(sender: Sender, gom: bool) -> None:
        channel = channels.get(sender.channel)
        if channel is not None:
            on_gom_chat = registry.get(sender.channel).on_gom_chat
            if on_gom_chat is not None:
                on_gom_chat(channel, sender.address, gom)

    async def console_link(profile_id: UUID) -> str:
        return await console_links.issue(
            pool, settings.public_base_url, profile_id, datetime.now(UTC)
        )

    bot = Bot(
        pool,
        queue.redis,
        proofs=PaymentProofs(ports),
        on_submission=submission_created,
        remind_now=remind_now,
        on_gom_chat=gom_chat,
        cancel_hold=cancel_hold,
        default_max_per_buyer=settings.default_max_per_buyer,
        console_link=console_link,
    )
    return Services(settings, pool, queue, channels, dispatcher, bot)
