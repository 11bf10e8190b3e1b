"""`telegram-webhook set|info|delete`: register our webhook and command menus with Telegram.

Also the menu of a linked GOM's chat: the GOM commands, in that chat only (a chat scope),
published when the chat is linked and removed on STOP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from aiogram.methods import (
    DeleteMyCommands,
    DeleteWebhook,
    GetWebhookInfo,
    SetMyCommands,
    SetWebhook,
    TelegramMethod,
)
from aiogram.types import BotCommand, BotCommandScopeChat

from gomflow_messaging.channels.telegram import WEBHOOK_PATH
from gomflow_messaging.channels.telegram.channel import (
    TelegramChannel,
    make_bot,
    parse_chat_id,
    translate_error,
)
from gomflow_messaging.cli import CommandError, run
from gomflow_messaging.errors import ChannelError, TransientError
from gomflow_messaging.workflows.chat.types import command_menu

if TYPE_CHECKING:
    import argparse

    from aiogram import Bot

    from gomflow_messaging.channels.base import Channel
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

# Telegram wants two-letter ISO 639-1 codes: Filipino is "tl" there. The default list
# (no code) is English, for everyone whose app language has no list of its own.
MENU_LANGUAGES: tuple[tuple[str | None, str], ...] = ((None, "en"), ("tl", "fil"), ("ms", "ms"))
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
# A GOM chat's menu is tried this many times; a 429's retry-after is waited up to the cap.
MENU_ATTEMPTS = 3
MENU_MAX_WAIT_SECONDS = 10.0


class WebhookError(Exception):
    """Printed as one line by the CLI."""


def webhook_url(settings: Settings) -> str:
    """TELEGRAM_WEBHOOK_URL, or our route under PUBLIC_BASE_URL when it is not set."""
    return settings.telegram_webhook_url or settings.public_base_url + WEBHOOK_PATH


def allowed_updates(settings: Settings) -> list[str]:
    # my_chat_member: a user blocked or unblocked the bot.
    updates = ["message", "callback_query", "my_chat_member"]
    if settings.enable_inline_payments:
        updates.append("inline_query")
    return updates


def menu(locale: str, *, gom: bool = False) -> list[BotCommand]:
    # The menu is static text; the chat bot reads no data to list it.
    return [
        BotCommand(command=info.name, description=info.description[:256])
        for info in command_menu(locale, gom=gom)
    ]


def change_gom_menu(channel: Channel, address: str, gom: bool) -> None:
    """Show (``gom``) or hide the GOM commands in one chat's menu, after the answer goes.

    Failures are logged, never raised: the link or STOP that asked for it stands, and the
    commands work when typed whatever the menu shows.
    """
    if isinstance(channel, TelegramChannel):
        channel.spawn(_gom_menu(channel, address, gom))


async def _gom_menu(channel: TelegramChannel, address: str, gom: bool) -> None:
    method: TelegramMethod[bool]
    try:
        scope = BotCommandScopeChat(chat_id=parse_chat_id(address))
        for language_code, locale in MENU_LANGUAGES:
            if gom:
                method = SetMyCommands(
                    commands=menu(locale, gom=True), scope=scope, language_code=language_code
                )
            else:
                method = DeleteMyCommands(scope=scope, language_code=language_code)
            await _call_with_retries(channel, method)
    except (ChannelError, ValueError) as exc:
        reason = exc.code if isinstance(exc, ChannelError) else "bad_address"
        log.warning("GOM menu of telegram chat %s not changed: %s", address, reason)


async def _call_with_retries(channel: TelegramChannel, method: TelegramMethod[bool]) -> None:
    for attempt in range(1, MENU_ATTEMPTS + 1):
        try:
            await channel.call(method)
            return
        except TransientError as exc:
            wait = exc.retry_after if exc.retry_after is not None else 0.5 * 2**attempt
            if attempt == MENU_ATTEMPTS or wait > MENU_MAX_WAIT_SECONDS:
                raise
            await asyncio.sleep(wait)


def _bot(settings: Settings) -> Bot:
    if settings.telegram_bot_token is None:
        raise WebhookError("TELEGRAM_BOT_TOKEN is not set")
    return make_bot(
        settings.telegram_bot_token.get_secret_value(),
        settings.telegram_api_base_url,
        request_timeout=settings.telegram_request_timeout_seconds,
    )


async def _call(bot: Bot, method: Any, settings: Settings) -> Any:
    try:
        return await bot(method)
    except Exception as exc:
        error: ChannelError = translate_error(exc)
        where = settings.telegram_api_base_url
        raise WebhookError(f"{method.__api_method__} at {where}: {error.message}") from None


async def set_webhook(settings: Settings, *, drop_pending: bool = False) -> list[str]:
    """Point Telegram at our webhook with the secret, and publish the command menus."""
    if settings.telegram_bot_token is None:  # the first thing to set, so named first
        raise WebhookError("TELEGRAM_BOT_TOKEN is not set")
    url = webhook_url(settings)
    if not url.startswith("https://"):
        raise WebhookError(f"TELEGRAM_WEBHOOK_URL must be an https:// URL (got {url!r})")
    secret = settings.telegram_webhook_secret
    if secret is None or not _SECRET.match(secret.get_secret_value()):
        raise WebhookError(
            "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
        )
    bot = _bot(settings)
    lines = []
    try:
        await _call(
            bot,
            SetWebhook(
                url=url,
                secret_token=secret.get_secret_value(),
                allowed_updates=allowed_updates(settings),
                drop_pending_updates=drop_pending,
            ),
            settings,
        )
        lines.append(f"webhook set: {url} ({', '.join(allowed_updates(settings))})")
        for language_code, locale in MENU_LANGUAGES:
            commands = menu(locale)
            await _call(
                bot, SetMyCommands(commands=commands, language_code=language_code), settings
            )
            lines.append(f"commands published for {language_code or 'default'}: {len(commands)}")
    finally:
        await bot.session.close()
    return lines


async def webhook_info(settings: Settings) -> dict[str, Any]:
    bot = _bot(settings)
    try:
        info = await _call(bot, GetWebhookInfo(), settings)
    finally:
        await bot.session.close()
    data: dict[str, Any] = info.model_dump(mode="json", exclude_none=True)
    return data


async def delete_webhook(settings: Settings, *, drop_pending: bool = False) -> str:
    bot = _bot(settings)
    try:
        await _call(bot, DeleteWebhook(drop_pending_updates=drop_pending), settings)
    finally:
        await bot.session.close()
    return "webhook removed" + (" and pending updates dropped" if drop_pending else "")


def command(settings: Settings, args: argparse.Namespace) -> int:
    """`telegram-webhook set|info|delete`."""
    try:
        if args.action == "set":
            for line in run(set_webhook(settings, drop_pending=args.drop_pending)):
                print(line)
        elif args.action == "info":
            print(json.dumps(run(webhook_info(settings)), indent=2))
        else:
            print(run(delete_webhook(settings, drop_pending=args.drop_pending)))
    except WebhookError as exc:
        raise CommandError(f"telegram-webhook {args.action}: {exc}") from None
    return 0
