"""The Telegram channel (Bot API through aiogram, webhook mode).

Its registry entry: the channel, ``POST /webhook/telegram``, ``telegram-webhook
set|info|delete``, and the GOM command menu of a chat that becomes (or stops being) a GOM's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gomflow_messaging.channels.registry import ChannelPlugin, lazy
from gomflow_messaging.channels.telegram.settings import TelegramSettings

if TYPE_CHECKING:
    from gomflow_messaging.channels.registry import AddCommand

WEBHOOK_PATH = "/webhook/telegram"


def _cli(add: AddCommand) -> None:
    webhook = add(
        "telegram-webhook",
        lazy("gomflow_messaging.channels.telegram.cli:command"),
        "Register the Telegram webhook (TELEGRAM_WEBHOOK_URL, TELEGRAM_WEBHOOK_SECRET) and the "
        "command menus, show it, or remove it.",
    )
    webhook.add_argument("action", choices=("set", "info", "delete"), help="what to do")
    webhook.add_argument(
        "--drop-pending",
        action="store_true",
        help="with set or delete: discard updates Telegram is still holding for us",
    )


PLUGIN = ChannelPlugin(
    name="telegram",
    title="Telegram",
    settings=TelegramSettings,
    build=lazy("gomflow_messaging.channels.telegram.channel:build"),
    routes=lazy("gomflow_messaging.channels.telegram.webhook:routes"),
    webhook_paths=lambda settings: [WEBHOOK_PATH],
    body_limits=lambda settings: {WEBHOOK_PATH: settings.max_telegram_update_bytes},
    cli=_cli,
    on_gom_chat=lazy("gomflow_messaging.channels.telegram.cli:change_gom_menu"),
    openapi_paths=lazy("gomflow_messaging.channels.telegram.webhook:openapi_paths"),
    link_how="/start {code}",
    submission_platform=True,
    # A group's chat id is negative; a person's (their private chat) is not.
    is_person=lambda address: not address.startswith("-"),
)
