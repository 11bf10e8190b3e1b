"""The bot's menu as Discord application commands (slash commands and their options)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import hikari

from gomflow_messaging.channels.discord.render import MAX_OPTION_DESCRIPTION


class CommandLike(Protocol):
    """What the bot's menu gives (workflows.chat.types.CommandInfo), without importing workflows."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def argument(self) -> str: ...


def command_builders(commands: Sequence[CommandLike]) -> list[hikari.api.SlashCommandBuilder]:
    """Slash commands for the bot's menu: one optional string option per argument.

    An option's description is what Discord shows while it is typed (1-100 characters);
    options the bot can suggest for are marked ``autocomplete`` (answered in
    webhook.py). Discord has no Filipino or Malay locale for descriptions, so they
    are in English.
    """
    builders: list[hikari.api.SlashCommandBuilder] = []
    for command in commands:
        builder = hikari.impl.SlashCommandBuilder(command.name, command.description[:100])
        if command.argument:
            help_text = getattr(command, "argument_help", "") or command.argument.capitalize()
            builder.add_option(
                hikari.CommandOption(
                    type=hikari.OptionType.STRING,
                    name=command.argument,
                    description=help_text[:MAX_OPTION_DESCRIPTION],
                    is_required=False,
                    autocomplete=bool(getattr(command, "suggest", False)),
                    max_length=90,
                )
            )
        attachment = getattr(command, "attachment", "")
        if attachment:
            help_text = getattr(command, "attachment_help", "") or attachment.capitalize()
            builder.add_option(
                hikari.CommandOption(
                    type=hikari.OptionType.ATTACHMENT,
                    name=attachment,
                    description=help_text[:MAX_OPTION_DESCRIPTION],
                    is_required=False,
                )
            )
        builder.set_integration_types([hikari.ApplicationIntegrationType.GUILD_INSTALL])
        builder.set_context_types(
            [hikari.ApplicationContextType.GUILD, hikari.ApplicationContextType.BOT_DM]
        )
        builders.append(builder)
    return builders


def describe_command(
    command: hikari.PartialCommand | hikari.api.SlashCommandBuilder,
) -> dict[str, Any]:
    options = getattr(command, "options", None) or ()
    return {
        "name": command.name,
        "description": getattr(command, "description", ""),
        "options": [
            {"name": o.name, "description": o.description, "required": o.is_required}
            for o in options
        ],
    }
