"""The composition root: builds the pool, the queue and the enabled channels, once."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from gomflow_messaging import db
from gomflow_messaging.dispatcher import Dispatcher
from gomflow_messaging.queue import JobQueue
from gomflow_messaging.settings import ConfigError
from gomflow_messaging.workflows import gom_alerts, reminders
from gomflow_messaging.workflows.chat.router import Bot
from gomflow_messaging.workflows.proofs import PaymentProofs

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from starlette.routing import BaseRoute

    from gomflow_messaging.channels.base import Channel
    from gomflow_messaging.settings import Settings
    from gomflow_messaging.workflows.chat.types import Sender

log = logging.getLogger(__name__)

# name -> "module:factory". A disabled channel's module (and so its SDK) is never imported.
# A factory is called as factory(settings, pool, redis) and returns a Channel.
CHANNEL_FACTORIES: dict[str, str] = {
    "sandbox": "gomflow_messaging.channels.sandbox:build",
    "whatsapp": "gomflow_messaging.channels.whatsapp:build",
    "discord": "gomflow_messaging.channels.discord:build",
    "telegram": "gomflow_messaging.channels.telegram:build",
}

# name -> "module:attribute" holding a list of Starlette routes (the platform's webhooks), or
# a function of the settings returning one (paths from settings), mounted only when that
# channel is enabled.
WEBHOOK_ROUTES: dict[str, str] = {
    "whatsapp": "gomflow_messaging.api.whatsapp:routes",
    "discord": "gomflow_messaging.api.discord:routes",
    "telegram": "gomflow_messaging.api.telegram:routes",
}


def _load(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def build_channel(name: str, settings: Settings, pool: db.Pool, redis: Redis) -> Channel:
    channel: Channel = _load(CHANNEL_FACTORIES[name])(settings, pool, redis)
    return channel


def webhook_routes(settings: Settings) -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for name in settings.enabled_channels:
        if name in WEBHOOK_ROUTES:
            found = _load(WEBHOOK_ROUTES[name])
            routes += found(settings) if callable(found) else found
    return routes


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
            channel = build_channel(name, settings, pool, queue.redis)
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

    async def gom_chat(sender: Sender, gom: bool) -> None:
        channel = channels.get(sender.channel)
        if sender.channel == "telegram" and channel is not None:
            # Imported here: Telegram's module only when that channel is on.
            from gomflow_messaging.telegram_webhook import change_gom_menu

            change_gom_menu(channel, sender.address, gom)

    bot = Bot(
        pool,
        queue.redis,
        proofs=PaymentProofs(ports),
        on_submission=submission_created,
        remind_now=remind_now,
        on_gom_chat=gom_chat,
    )
    return Services(settings, pool, queue, channels, dispatcher, bot)
