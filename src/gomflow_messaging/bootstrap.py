"""The composition root: builds the pool, the queue and the enabled channels, once."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gomflow_messaging import db
from gomflow_messaging.dispatcher import Dispatcher
from gomflow_messaging.queue import JobQueue
from gomflow_messaging.settings import ConfigError
from gomflow_messaging.workflows.bot import Bot

if TYPE_CHECKING:
    from gomflow_messaging.channels.base import Channel
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

# name -> "module:factory". A disabled channel's module (and so its SDK) is never imported.
CHANNEL_FACTORIES: dict[str, str] = {
    "sandbox": "gomflow_messaging.channels.sandbox:build",
}


def build_channel(name: str, settings: Settings, pool: db.Pool) -> Channel:
    module_name, _, factory = CHANNEL_FACTORIES[name].partition(":")
    module = importlib.import_module(module_name)
    channel: Channel = getattr(module, factory)(settings, pool)
    return channel


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
    accepted and the sweeper enqueues once it is back.
    """
    pool = await db.create_pool(settings.database_url, max_size=settings.db_pool_size)
    queue = JobQueue(
        settings.redis_url,
        settings.queue_name,
        lease_seconds=settings.dispatch_lease_seconds,
        blocking=blocking_queue,
    )
    await queue.connect()
    channels: dict[str, Channel] = {}
    try:
        for name in settings.enabled_channels:
            if name not in CHANNEL_FACTORIES:
                raise ConfigError(
                    f"ENABLE_{name.upper()}: the {name} channel is not part of this build yet"
                )
            channel = build_channel(name, settings, pool)
            await channel.start()
            channels[name] = channel
    except BaseException:
        for channel in channels.values():
            await channel.close()
        await queue.close()
        await pool.close()
        raise
    dispatcher = Dispatcher(settings, pool, queue, channels, worker_id=worker_id)
    bot = Bot(pool, queue.redis)
    return Services(settings, pool, queue, channels, dispatcher, bot)
