"""The channel registry: the one place where the core learns which platforms exist.

A channel is one package, ``gomflow_messaging.channels.<name>/``, whose ``__init__`` defines
``PLUGIN``, a `ChannelPlugin`. That ``__init__`` and the package's ``settings`` module are
imported at start-up (every variable is validated, even a disabled channel's); everything else
(``channel``, ``webhook``, ``cli``, ``render``, and so the platform's SDK) is imported only
inside the plugin's functions, that is only when the channel is enabled or its command runs.

What a channel package provides:

- ``settings.py``: a pydantic model (a mixin of `Settings`) with the channel's variables,
  ``enable_<name>`` among them, their validation, and a model validator that names the
  variable missing when the channel is on without its credentials
  (`gomflow_messaging.channels.base.require_when_enabled`).
- ``channel.py``: the `Channel` protocol (send, health, one error map) and a factory
  ``build(settings, pool, redis)``.
- ``webhook.py`` (when the platform calls us): the routes; verify first, dedupe, parse, hand
  to the chat bot, render the reply.
- ``cli.py`` (when it has commands): the subcommands' functions.
- ``__init__.py``: ``PLUGIN = ChannelPlugin(...)`` tying these together lazily.

Adding a channel: write the package, add one line to `BUILTIN` below (its place there is its
place in the default delivery order). A channel shipped as its own distribution instead
declares an entry point in the ``gomflow_messaging.channels`` group naming its plugin
(``messenger = "gomflow_messenger:PLUGIN"``); built-ins need no entry point, so a development
checkout finds them without reinstalling.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any
from uuid import UUID

from starlette.routing import Route

from gomflow_messaging.errors import ApiError

if TYPE_CHECKING:
    import argparse

    from pydantic import BaseModel
    from redis.asyncio import Redis
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from gomflow_messaging.channels.base import Channel
    from gomflow_messaging.db import Connection, Pool
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

#: name -> the package defining ``PLUGIN``. One line per channel, in default delivery order.
BUILTIN: dict[str, str] = {
    "sandbox": "gomflow_messaging.channels.sandbox",
    "telegram": "gomflow_messaging.channels.telegram",
    "discord": "gomflow_messaging.channels.discord",
    "whatsapp": "gomflow_messaging.channels.whatsapp",
    "messenger": "gomflow_messaging.channels.messenger",
}
ENTRY_POINT_GROUP = "gomflow_messaging.channels"

#: ``add(name, func, help)`` as the CLI gives it to a plugin: registers one subcommand whose
#: ``func(settings, args)`` returns the exit code (or raises ``cli.CommandError``).
AddCommand = Callable[[str, Callable[..., int], str], "argparse.ArgumentParser"]


@dataclass(frozen=True)
class ChannelPlugin:
    """One channel as the core sees it; every callable imports its module only when called."""

    #: The channel's name: in ``ENABLE_<NAME>``, in the outbox, in metrics labels, in the API.
    name: str
    #: How people call it (help texts).
    title: str
    #: The mixin of `Settings` holding this channel's variables (``enable_<name>`` among them).
    settings: type[BaseModel]
    #: ``build(settings, pool, redis)``: the `Channel`, not yet started.
    build: Callable[[Settings, Pool, Redis], Channel]
    #: The routes it serves (its webhooks), mounted when the channel is enabled.
    routes: Callable[[Settings], list[BaseRoute]] | None = None
    #: Its routes answer for themselves when the channel is off (so they are always mounted).
    routes_when_off: bool = False
    #: Paths the platform calls and signs: a refused signature counts under this channel.
    webhook_paths: Callable[[Settings], list[str]] | None = None
    #: Path -> the most bytes a body may have there (api/limits.py), for this channel's paths.
    body_limits: Callable[[Settings], dict[str, int]] | None = None
    #: Registers the channel's subcommands (``telegram-webhook``, ...).
    cli: Callable[[AddCommand], None] | None = None
    #: Start-up warnings about settings that run but should not stay so.
    warnings: Callable[[Settings], list[str]] | None = None
    #: The person in ``address`` became a GOM (or stopped being one) in this channel's chat.
    on_gom_chat: Callable[[Channel, str, bool], None] | None = None
    #: Erases what the channel itself stored about a person (their contact, the notifications
    #: that speak of them, their addresses on this channel), in the erasure's transaction.
    erase: Callable[[Connection, UUID, list[UUID], list[str]], Awaitable[None]] | None = None
    #: Records messages here instead of reaching anyone (the sandbox): it does not count as a
    #: way to reach buyers, and the deployment check sends its test message through it.
    local: bool = False
    #: What a person sends here to redeem a link code, ``{code}`` standing for it
    #: (``/start {code}``); "" when a code cannot be redeemed in this chat.
    link_how: str = ""
    #: A person's address here is their phone number (E.164): a submission's ``buyer_phone``
    #: reaches them here, and a new chat links itself to the submissions made with that phone.
    phone_address: bool = False
    #: A value of the core schema's ``submissions.buyer_platform`` (``whatsapp``,
    #: ``telegram``, ``discord``): ``buyer_platform_id`` is then this channel's address.
    submission_platform: bool = False
    #: Whether an address here is a person, not a group (Telegram groups have negative ids):
    #: what is private never goes to a group.
    is_person: Callable[[str], bool] = lambda address: True
    #: The OpenAPI path items of its webhooks (``api/openapi.py`` adds them to the document).
    openapi_paths: Callable[[Settings], dict[str, Any]] | None = None


def lazy(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` as a function that imports its module when called, so
    that a plugin names its parts without importing them (nor their SDK)."""
    module, _, attribute = target.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), attribute)(*args, **kwargs)

    return call


def _load_builtin(name: str, package: str) -> ChannelPlugin:
    plugin = importlib.import_module(package).PLUGIN
    if not isinstance(plugin, ChannelPlugin) or plugin.name != name:
        raise RuntimeError(f"{package}.PLUGIN must be the ChannelPlugin named {name!r}")
    return plugin


@functools.cache
def plugins() -> tuple[ChannelPlugin, ...]:
    """The built-in channels in order, then those installed as distributions."""
    found = {name: _load_builtin(name, package) for name, package in BUILTIN.items()}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in found:
            log.warning("channel %s from %s ignored: built in already", point.name, point.value)
            continue
        plugin: Any = point.load()
        if isinstance(plugin, ChannelPlugin) and plugin.name == point.name:
            found[point.name] = plugin
        else:
            raise RuntimeError(f"entry point {point.value} is not the ChannelPlugin {point.name!r}")
    return tuple(found.values())


def names() -> tuple[str, ...]:
    return tuple(plugin.name for plugin in plugins())


def settings_models() -> tuple[type[BaseModel], ...]:
    return tuple(plugin.settings for plugin in plugins())


def get(name: str) -> ChannelPlugin:
    for plugin in plugins():
        if plugin.name == name:
            return plugin
    raise KeyError(name)


def enabled(settings: Settings) -> list[ChannelPlugin]:
    return [get(name) for name in settings.enabled_channels]


def build_channel(name: str, settings: Settings, pool: Pool, redis: Redis) -> Channel:
    return get(name).build(settings, pool, redis)


def routes(settings: Settings) -> list[BaseRoute]:
    """Each enabled channel's routes, and those of channels whose routes answer when off.

    A disabled channel's webhook paths answer 404 in the JSON error envelope, naming the
    variable that turns the channel on (a platform set up before the deployment was).
    """
    on = set(settings.enabled_channels)
    found: list[BaseRoute] = []
    for plugin in plugins():
        if plugin.routes is not None and (plugin.name in on or plugin.routes_when_off):
            found += plugin.routes(settings)
        elif plugin.webhook_paths is not None:
            endpoint = _not_enabled(plugin)
            found += [
                Route(path, endpoint, methods=["GET", "POST"])
                for path in plugin.webhook_paths(settings)
            ]
    return found


def _not_enabled(plugin: ChannelPlugin) -> Callable[[Request], Awaitable[Response]]:
    async def answer(request: Request) -> Response:
        raise ApiError(
            404,
            "channel_disabled",
            f"The {plugin.title} channel is not enabled here: ENABLE_{plugin.name.upper()}=true "
            "(with its credentials) turns it on.",
        )

    return answer


def webhook_platforms(settings: Settings) -> dict[str, str]:
    """Path -> channel name, for the webhook paths of every enabled channel."""
    return {
        path: plugin.name
        for plugin in enabled(settings)
        if plugin.webhook_paths is not None
        for path in plugin.webhook_paths(settings)
    }


def body_limits(settings: Settings) -> dict[str, int]:
    limits: dict[str, int] = {}
    for plugin in plugins():
        if plugin.body_limits is not None:
            limits.update(plugin.body_limits(settings))
    return limits


def link_instructions(code: str) -> dict[str, str]:
    """Channel -> what a person sends there to redeem ``code``."""
    return {p.name: p.link_how.format(code=code) for p in plugins() if p.link_how}


def phone_channel() -> str | None:
    """The channel on which a person's address is their phone number, if one is registered."""
    return next((p.name for p in plugins() if p.phone_address), None)


def submission_platforms() -> tuple[str, ...]:
    """The channels the core schema's ``submissions.buyer_platform`` can name."""
    return tuple(p.name for p in plugins() if p.submission_platform)


def local_channel(enabled_names: Iterable[str]) -> str | None:
    """The first enabled channel that records locally (the deployment check's target)."""
    on = set(enabled_names)
    return next((p.name for p in plugins() if p.local and p.name in on), None)
