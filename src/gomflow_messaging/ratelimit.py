"""Inbound limits per person, counted in Redis so every replica sees the same count.

Three budgets, each per person as the platform names them (Telegram ``from.id``, Discord
user id, WhatsApp number, sandbox address), never per chat: messages
(RATE_LIMIT_MAX_MESSAGES per RATE_LIMIT_WINDOW_MS), uploads (RATE_LIMIT_MAX_UPLOADS per the
same window) and link-code attempts (LINK_CODE_MAX_ATTEMPTS per LINK_CODE_WINDOW_SECONDS,
tighter, so guessing a code costs more than the code space allows). Discord's autocomplete
lookups (one per keystroke, each a database search) have a budget of their own
(RATE_LIMIT_MAX_AUTOCOMPLETE per window), so typing never uses up the messages budget.

A window starts at the person's first counted action and lasts its full length, so "N per
window" means exactly N however the actions fall on the clock. The first action over the
budget gets one polite answer (``warn``); the rest of that window gets nothing
(``silent``): an answer to every extra message would be a flood of our own, and on WhatsApp
each one is billed. When Redis is down an upload is let through rather than ignored; a chat
message gets a 503 from the chat pipeline, as the bot's own state lives in Redis too.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Literal

from redis.exceptions import RedisError

from gomflow_messaging.i18n import gettext, ngettext

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

Kind = Literal["messages", "uploads", "link_codes", "autocomplete"]
Verdict = Literal["ok", "warn", "silent"]


def budget(settings: Settings, kind: Kind) -> tuple[int, int]:
    """How many actions of a kind, per how many milliseconds."""
    if kind == "messages":
        return settings.rate_limit_max_messages, settings.rate_limit_window_ms
    if kind == "uploads":
        return settings.rate_limit_max_uploads, settings.rate_limit_window_ms
    if kind == "autocomplete":
        return settings.rate_limit_max_autocomplete, settings.rate_limit_window_ms
    return settings.link_code_max_attempts, settings.link_code_window_seconds * 1000


async def hit(
    redis: Redis,
    settings: Settings,
    kind: Kind,
    channel: str,
    person: str,
    *,
    fail_open: bool = True,
) -> Verdict:
    """Count one action of ``kind`` by ``person`` on ``channel``, and say whether it may go on.

    Redis away: ``fail_open`` lets the action through; otherwise the RedisError goes up (the
    chat pipeline answers 503 then, as the bot cannot run without Redis anyway).
    """
    limit, window_ms = budget(settings, kind)
    # Under the queue's name, as the send pacing is: one deployment, one set of counts.
    key = f"gomflow:{settings.queue_name}:limit:{kind}:{channel}:{person}"
    try:
        # One transaction: the window opens with the first action and the count cannot
        # outlive it, whichever replica counts.
        async with redis.pipeline(transaction=True) as pipe:
            pipe.set(key, 0, px=window_ms, nx=True)
            pipe.incr(key)
            _opened, count = await pipe.execute()
    except (RedisError, OSError):
        if not fail_open:
            raise
        log.warning("inbound %s limit unavailable (Redis)", kind)
        return "ok"
    if int(count) <= limit:
        return "ok"
    return "warn" if int(count) == limit + 1 else "silent"


async def inbound(
    redis: Redis,
    settings: Settings,
    channel: str,
    person: str,
    *,
    link_attempt: bool = False,
) -> tuple[Verdict, Kind]:
    """One incoming message: the messages budget, then (for a link code) the link-code one.

    Redis away raises: the chat pipeline (channels/inbound.py) answers 503 then.
    """
    verdict = await hit(redis, settings, "messages", channel, person, fail_open=False)
    if verdict != "ok" or not link_attempt:
        return verdict, "messages"
    verdict = await hit(redis, settings, "link_codes", channel, person, fail_open=False)
    return verdict, "link_codes"


def refusal(settings: Settings, kind: Kind, locale: str) -> str:
    """The one polite answer for the first action over a budget, in the person's language."""
    if kind == "uploads":
        return gettext(
            locale,
            "You have sent many files in a short time. Please wait a few minutes, "
            "then send your receipt again.",
        )
    if kind == "link_codes":
        minutes = math.ceil(settings.link_code_window_seconds / 60)
        return ngettext(
            locale,
            "That is too many link codes in a short time. Please wait {minutes} minute, "
            "then try again with the code from GOMFLOW.",
            "That is too many link codes in a short time. Please wait {minutes} minutes, "
            "then try again with the code from GOMFLOW.",
            minutes,
            minutes=minutes,
        )
    return gettext(
        locale, "You are sending messages very fast. Please wait a minute, then try again."
    )
