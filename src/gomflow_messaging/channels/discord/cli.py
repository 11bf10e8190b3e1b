"""`discord-commands sync|list`: register the bot's slash commands with Discord, or show them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gomflow_messaging.channels.discord.channel import DiscordRest
from gomflow_messaging.cli import CommandError, run
from gomflow_messaging.errors import ChannelError
from gomflow_messaging.workflows.chat.types import command_menu

if TYPE_CHECKING:
    import argparse

    from gomflow_messaging.settings import Settings


def command(settings: Settings, args: argparse.Namespace) -> int:
    """`discord-commands sync|list`."""
    missing = [
        name
        for name, value in (
            ("DISCORD_TOKEN", settings.discord_token),
            ("DISCORD_CLIENT_ID", settings.discord_client_id),
        )
        if not value
    ]
    if missing:
        raise CommandError(f"discord-commands: set {' and '.join(missing)}")
    if args.action == "sync" and not settings.enable_slash_commands:
        raise CommandError("discord-commands sync: ENABLE_SLASH_COMMANDS is false; nothing to do")
    scope = f"guild {settings.discord_guild_id}" if settings.discord_guild_id else "global"

    async def main() -> list[dict[str, Any]]:
        rest = DiscordRest.from_settings(settings)
        await rest.start()
        try:
            if args.action == "list":
                return await rest.fetch_commands(settings.discord_guild_id)
            owner = await rest.application_id_of_token()
            if owner != settings.discord_client_id:
                raise CommandError(
                    f"discord-commands sync: DISCORD_CLIENT_ID is {settings.discord_client_id} "
                    f"but DISCORD_TOKEN belongs to application {owner}"
                )
            return await rest.set_commands(command_menu("en", gom=True), settings.discord_guild_id)
        except ChannelError as exc:
            raise CommandError(
                f"discord-commands {args.action}: {exc.message} [{exc.code}]"
            ) from None
        finally:
            await rest.close()

    commands = run(main())
    names = ", ".join(f"/{c['name']}" for c in commands) or "none"
    if args.action == "sync":
        print(f"registered {len(commands)} commands ({scope}): {names}")
    else:
        print(f"{len(commands)} commands registered ({scope}): {names}")
    return 0
