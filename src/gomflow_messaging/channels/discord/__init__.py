"""The Discord channel (REST through hikari, HTTP interactions; no gateway).

Its registry entry: the channel, ``POST /webhook/discord`` and ``discord-commands sync|list``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gomflow_messaging.channels.discord.settings import DiscordSettings
from gomflow_messaging.channels.registry import ChannelPlugin, lazy

if TYPE_CHECKING:
    from gomflow_messaging.channels.registry import AddCommand

WEBHOOK_PATH = "/webhook/discord"


def _cli(add: AddCommand) -> None:
    discord = add(
        "discord-commands",
        lazy("gomflow_messaging.channels.discord.cli:command"),
        "Register the bot's slash commands with Discord (bulk overwrite; to DISCORD_GUILD_ID "
        "when set, else global), or list what Discord has.",
    )
    discord.add_argument("action", choices=["sync", "list"], help="sync: register; list: show")


PLUGIN = ChannelPlugin(
    name="discord",
    title="Discord",
    settings=DiscordSettings,
    build=lazy("gomflow_messaging.channels.discord.channel:build"),
    routes=lazy("gomflow_messaging.channels.discord.webhook:routes"),
    webhook_paths=lambda settings: [WEBHOOK_PATH],
    body_limits=lambda settings: {WEBHOOK_PATH: settings.max_discord_interaction_bytes},
    cli=_cli,
    openapi_paths=lazy("gomflow_messaging.channels.discord.webhook:openapi_paths"),
    link_how="/link {code}",
    submission_platform=True,
)
