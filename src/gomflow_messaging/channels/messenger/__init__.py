"""Facebook Messenger, the fourth chat: one package, reached by the core through the registry.

`build` makes the sender (`channel.MessengerChannel`), `routes` the webhook
(`GET|POST /webhook/messenger`), `cli` the ``messenger-profile`` commands; their modules are
imported only when Messenger is enabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from starlette.routing import BaseRoute

    from gomflow_messaging.channels.messenger.channel import MessengerChannel
    from gomflow_messaging.db import Pool
    from gomflow_messaging.settings import Settings

NAME = "messenger"
WEBHOOK_PATH = "/webhook/messenger"


def build(settings: Settings, pool: Pool, redis: Redis) -> MessengerChannel:
    from gomflow_messaging.channels.messenger import settings as messenger_settings
    from gomflow_messaging.channels.messenger.channel import MessengerChannel
    from gomflow_messaging.settings import Environment

    return MessengerChannel(
        messenger_settings.load(settings),
        pool,
        redis,
        queue_name=settings.queue_name,
        max_file_size=settings.max_file_size,
        allow_http_downloads=settings.environment is not Environment.production,
    )


def routes(settings: Settings) -> list[BaseRoute]:
    from gomflow_messaging.channels.messenger.webhook import routes as webhook_routes

    return webhook_routes(settings)
