"""A person's settings from the chat: language, notification kinds, quiet hours, zone, STOP."""

from __future__ import annotations

import re
from datetime import time
from typing import TYPE_CHECKING

from gomflow_messaging import contacts
from gomflow_messaging.i18n import (
    LANGUAGE_NAMES,
    LOCALES,
    format_clock,
    normalize_locale,
    zone_place,
)
from gomflow_messaging.workflows import audit
from gomflow_messaging.workflows.chat.text import _, command, label
from gomflow_messaging.workflows.chat.types import Reply, button

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from gomflow_messaging.db import Pool
    from gomflow_messaging.workflows.chat.types import Context, GomChat, Handler

ZONES = {
    "Manila": "Asia/Manila",
    "KL": "Asia/Kuala_Lumpur",
    "Singapore": "Asia/Singapore",
    "Jakarta": "Asia/Jakarta",
    "Bangkok": "Asia/Bangkok",
}


def kinds(ctx: Context) -> tuple[str, ...]:
    """The kinds of notification this person can turn off (transactional ones they cannot)."""
    found: tuple[str, ...] = ("reminders", "order_updates")
    return (*found, "gom_alerts", "summaries") if ctx.gom_id is not None else found


def kind_name(ctx: Context, kind: str) -> str:
    names = {
        "reminders": _(ctx, "Payment reminders"),
        "order_updates": _(ctx, "Order updates"),
        "gom_alerts": _(ctx, "Alerts about my orders"),
        "summaries": _(ctx, "Daily and weekly summaries"),
    }
    return names.get(kind, kind)


def switch_label(ctx: Context, kind: str, on: bool) -> str:
    """The button that turns a kind off (when ``on``) or on again: short, as chats cut at 20."""
    labels = {
        ("reminders", True): label(ctx, "Turn off reminders"),
        ("reminders", False): label(ctx, "Turn on reminders"),
        ("order_updates", True): label(ctx, "Turn off updates"),
        ("order_updates", False): label(ctx, "Turn on updates"),
        ("gom_alerts", True): label(ctx, "Turn off GOM alerts"),
        ("gom_alerts", False): label(ctx, "Turn on GOM alerts"),
        ("summaries", True): label(ctx, "Turn off summaries"),
        ("summaries", False): label(ctx, "Turn on summaries"),
    }
    return labels[(kind, on)]


class PreferenceCommands:
    def __init__(self, pool: Pool, clock: Callable[[], datetime], gom_chat: GomChat) -> None:
        self.pool = pool
        self.clock = clock
        self.gom_chat = gom_chat

    def commands(self) -> dict[str, Handler]:
        return {
            "settings": self.settings,
            "lang": self.lang,
            "notify": self.notify,
            "quiet": self.quiet,
            "tz": self.tz,
            "stop": self.stop,
        }

    async def settings(self, ctx: Context, args: str) -> list[Reply]:
        row = await contacts.chat_settings(self.pool, ctx.contact_id)
        preferences: dict[str, bool] = dict(row["preferences"]) if row else {}
        lang_row = tuple(
            button(("✓ " if code == ctx.locale else "") + LANGUAGE_NAMES[code], f"lang {code}")
            for code in LOCALES
        )
        lines = [
            _(ctx, "Settings"),
            _(ctx, "Language: {v}", v=LANGUAGE_NAMES[ctx.locale]),
        ]
        kind_rows = []
        if ctx.opted_out:
            lines.append(_(ctx, "Reminders and updates: {v}", v=_(ctx, "off")))
            kind_rows.append((button(label(ctx, "Turn everything on"), "notify on"),))
        else:
            for kind in kinds(ctx):
                on = preferences.get(kind, True)
                name = kind_name(ctx, kind)
                state = _(ctx, "on") if on else _(ctx, "off")
                lines.append(f"{name}: {state}")
                toggle = switch_label(ctx, kind, on)
                kind_rows.append((button(toggle, f"notify {kind} {'off' if on else 'on'}"),))
            kind_rows.append((button(label(ctx, "Stop everything"), "notify off"),))
        quiet = (
            _(
                ctx,
                "{start} to {end}",
                start=format_clock(ctx.locale, row["quiet_start"]),
                end=format_clock(ctx.locale, row["quiet_end"]),
            )
            if row and row["quiet_start"] and row["quiet_end"]
            else _(ctx, "off")
        )
        lines.append(_(ctx, "Quiet hours: {v}", v=quiet))
        # A button cannot hold both times in Malay ("10 malam", "8 pagi"), so a line says
        # what its hours are.
        night = label(ctx, "Quiet at night")
        lines.append(
            _(
                ctx,
                "({button}: {start} to {end})",
                button=night,
                start=format_clock(ctx.locale, time(22)),
                end=format_clock(ctx.locale, time(8)),
            )
        )
        lines.append(_(ctx, "Time zone: {v}", v=zone_place(ctx.locale, ctx.timezone)))
        quiet_row = (
            button(night, "quiet 22-8"),
            button(label(ctx, "No quiet hours"), "quiet off"),
        )
        zone_row = tuple(
            button(("✓ " if zone == ctx.timezone else "") + name, f"tz {name.lower()}")
            for name, zone in ZONES.items()
        )
        rows = (lang_row, *kind_rows, quiet_row, zone_row)
        return [Reply("\n".join(lines), buttons=rows, private=True)]

    async def quiet(self, ctx: Context, args: str) -> list[Reply]:
        """``quiet 22-8`` (hours, local time) or ``quiet off``."""
        text = args.strip().lower()
        if text in ("off", "none", "0"):
            start = end = None
        else:
            match = re.fullmatch(r"(\d{1,2})(?::00)?\s*-\s*(\d{1,2})(?::00)?", text)
            if (
                not match
                or int(match[1]) > 23
                or int(match[2]) > 23
                or int(match[1]) == int(match[2])
            ):
                return [
                    Reply(_(ctx, "Send quiet hours like QUIET 22-8, or QUIET OFF."), private=True)
                ]
            start, end = time(int(match[1])), time(int(match[2]))
        await contacts.set_quiet_hours(self.pool, ctx.contact_id, start, end)
        return await self.settings(ctx, "")

    async def tz(self, ctx: Context, args: str) -> list[Reply]:
        wanted = args.strip().lower()
        zone = next((z for label, z in ZONES.items() if wanted in (label.lower(), z.lower())), None)
        if zone is None:
            choices = ", ".join(ZONES)
            return [Reply(_(ctx, "Choose a time zone: {choices}.", choices=choices), private=True)]
        await contacts.set_timezone(self.pool, ctx.contact_id, zone)
        ctx.timezone = zone
        return await self.settings(ctx, "")

    async def lang(self, ctx: Context, args: str) -> list[Reply]:
        code = normalize_locale(args) if args else ""
        if code not in LOCALES or not args:
            return await self.settings(ctx, "")
        await contacts.set_locale(self.pool, ctx.contact_id, code)
        # Someone who never chose a zone keeps the one of their language (Malay: Malaysia's).
        sender = ctx.sender
        was = contacts.chat_timezone(ctx.locale, sender.channel, sender.address)
        follows = contacts.chat_timezone(code, sender.channel, sender.address)
        if ctx.timezone == was != follows:
            await contacts.set_timezone(self.pool, ctx.contact_id, follows)
            ctx.timezone = follows
        ctx.locale = code
        # Translators: name the language you translate into, not English.
        return [Reply(_(ctx, "Done! I will write to you in English."), private=True)]

    async def notify(self, ctx: Context, args: str) -> list[Reply]:
        """``notify on|off`` (everything, like START/STOP) or ``notify <kind> on|off``."""
        words = args.lower().split()
        if words == ["on"]:
            return await self.resume(ctx)
        if words == ["off"]:
            return await self.stop(ctx, "")
        if len(words) == 2 and words[0] in kinds(ctx) and words[1] in ("on", "off"):
            await contacts.set_preference(self.pool, ctx.contact_id, words[0], words[1] == "on")
            await audit.from_chat(self.pool, ctx, "preference", f"{words[0]} {words[1]}")
        return await self.settings(ctx, "")

    async def stop(self, ctx: Context, args: str) -> list[Reply]:
        await contacts.opt_out(self.pool, ctx.contact_id, self.clock())
        await audit.from_chat(self.pool, ctx, "opt_out", "stop")
        if ctx.gom_id is not None:
            await self.gom_chat(ctx.sender, False)
        return [
            Reply(
                _(
                    ctx,
                    "You will not get reminders or updates any more. Send {command} to "
                    "turn them back on.",
                    command=command(ctx, "start"),
                )
            )
        ]

    async def resume(self, ctx: Context) -> list[Reply]:
        await contacts.opt_in(self.pool, ctx.contact_id)
        await audit.from_chat(self.pool, ctx, "opt_in", "start")
        if ctx.opted_out and ctx.gom_id is not None:
            await self.gom_chat(ctx.sender, True)
        return [Reply(_(ctx, "Welcome back! Reminders and updates are on again."))]

    async def welcome_back(self, ctx: Context) -> Reply | None:
        """``/start`` from someone who said STOP: everything is on again (None if it was)."""
        if not ctx.opted_out:
            return None
        await contacts.opt_in(self.pool, ctx.contact_id)
        ctx.opted_out = False
        if ctx.gom_id is not None:
            await self.gom_chat(ctx.sender, True)
        return Reply(_(ctx, "Welcome back! Reminders and updates are on again."))
