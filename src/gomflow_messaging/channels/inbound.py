"""One inbound pipeline for every chat: dedupe the update, limit the person, run the bot.

Each chat's webhook verifies and parses its platform's request, builds a `Sender`, hands
the person's text, file or form here, and renders the replies in its own idiom. The steps
are public so that a chat whose updates need more than one bot call (Telegram's router,
Discord's 2-second deadline) composes them itself: `once` around the update, `admit` for
the person, `run` for the bot; `handle` is the three in a row.

The failure policy, the same for every chat:

- A dependency away (Redis or Postgres unreachable) is not the update's fault: its dedupe
  row is removed and `Unavailable` (503) goes up, so a platform that retries (Telegram,
  Meta; Twilio calls its fallback URL) has the update handled in full once the dependency
  is back. The outage is logged once, then once a minute while it lasts: never a traceback
  per request.
- Any other exception from the bot is a bug: its traceback is logged, the update stays
  recorded (a retry would fail the same way, and Telegram holds a chat's later updates
  behind one that keeps failing), and the person is told something went wrong, in their
  language, so they can try again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
from redis.exceptions import RedisError

from gomflow_messaging import contacts, ratelimit
from gomflow_messaging.api.common import first_time
from gomflow_messaging.doctor import where
from gomflow_messaging.errors import ApiError
from gomflow_messaging.i18n import gettext, normalize_locale
from gomflow_messaging.logs import Outage
from gomflow_messaging.workflows.chat.router import link_code_attempt
from gomflow_messaging.workflows.chat.types import IncomingFile, Reply, Sender

if TYPE_CHECKING:
    from gomflow_messaging.bootstrap import Services

log = logging.getLogger(__name__)

#: Redis refusing or gone (redis-py wraps its socket errors in its ConnectionError).
REDIS_AWAY: tuple[type[BaseException], ...] = (RedisError,)
#: Postgres refusing, restarting or gone, or the pool unable to lend a connection in time.
POSTGRES_AWAY: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
)
AWAY: tuple[type[BaseException], ...] = (*REDIS_AWAY, *POSTGRES_AWAY)
#: While a dependency is away, one line when it goes, then one a minute, then its return.
OUTAGE_LOG_SECONDS = 60.0
_OUTAGES = "inbound.outages"


class Unavailable(ApiError):
    """503: a dependency of the chat bot is away; the platform should try again later."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "unavailable",
            "The service cannot take chat messages right now; please try again shortly.",
            headers={"Retry-After": "30"},
        )


#: What `once` forgets an update for: a dependency away, as itself or as our 503.
UNAVAILABLE: tuple[type[BaseException], ...] = (Unavailable, *AWAY)


@dataclass(frozen=True)
class Inbound:
    """One thing a person did in a chat, as the pipeline takes it."""

    sender: Sender
    #: The platform's id for this update (``update_id``, ``MessageSid``, ``mid``, ``wamid``);
    #: "" when an outer `once` deduped it already or the chat has no such id (the sandbox).
    key: str = ""
    text: str = ""
    file: IncomingFile | None = None
    #: A filled-in form: its id and values (Discord modals, the sandbox).
    form: tuple[str, dict[str, str]] | None = None


@dataclass(frozen=True)
class Handled:
    """What the pipeline made of an update: the replies, and the language they are in."""

    replies: list[Reply]
    locale: str = "en"
    #: False for a repeat, or for a person past a limit: the bot did not run.
    ran: bool = True


class _Outages:
    """The two dependencies' outage logs, one per process (kept with its services)."""

    def __init__(self, svc: Services) -> None:
        effect = "chat webhooks answer 503 (platforms retry) until it is back"
        settings = svc.settings
        self.redis = Outage("Redis", where(settings.redis_url), OUTAGE_LOG_SECONDS, effect=effect)
        self.postgres = Outage(
            "Postgres", where(settings.database_url), OUTAGE_LOG_SECONDS, effect=effect
        )

    def failed(self, exc: BaseException) -> None:
        (self.redis if isinstance(exc, REDIS_AWAY) else self.postgres).failed(exc)

    def ok(self) -> None:
        self.redis.ok()
        self.postgres.ok()


def _outages(svc: Services) -> _Outages:
    found = svc.extras.get(_OUTAGES)
    if not isinstance(found, _Outages):
        found = svc.extras[_OUTAGES] = _Outages(svc)
    return found


def _away(svc: Services, exc: BaseException) -> Unavailable:
    _outages(svc).failed(exc)
    return Unavailable()


@contextlib.asynccontextmanager
async def once(svc: Services, platform: str, key: str) -> AsyncIterator[bool]:
    """Record the update's id; yields False for a repeat (a retry or a replay).

    A dependency away inside the block forgets the id again (see the module's policy).
    """
    key = key[:200]
    try:
        fresh = await first_time(svc.pool, platform, key)
    except AWAY as exc:
        raise _away(svc, exc) from None
    try:
        yield fresh
    except UNAVAILABLE as exc:
        if fresh:
            with contextlib.suppress(Exception):
                await svc.pool.execute(
                    "DELETE FROM inbound_updates WHERE platform = $1 AND update_id = $2",
                    platform,
                    key,
                )
        if isinstance(exc, Unavailable):
            raise
        raise _away(svc, exc) from None


@contextlib.asynccontextmanager
async def guarded(svc: Services) -> AsyncIterator[None]:
    """A chat's own reads and writes outside the bot (delivery receipts): a dependency away
    is `Unavailable`, logged as the outage, as in the rest of the pipeline."""
    try:
        yield
    except AWAY as exc:
        raise _away(svc, exc) from None


async def locale(svc: Services, sender: Sender) -> str:
    """The person's language: their contact's, else what their chat says."""
    row = await contacts.chat_address(svc.pool, sender.channel, sender.address)
    if row is not None and row["locale"]:
        return str(row["locale"])
    return normalize_locale(sender.language)


async def admit(
    svc: Services, sender: Sender, text: str = "", *, answer_silent: bool = False
) -> Handled | None:
    """The person's budgets; None to go on, else what to answer instead of running the bot.

    Past the one polite answer the rest of the window gets nothing, unless ``answer_silent``
    (a chat that shows an unanswered tap as failed, and where an answer costs nothing).
    """
    try:
        verdict, kind = await ratelimit.inbound(
            svc.queue.redis,
            svc.settings,
            sender.channel,
            sender.address,
            link_attempt=link_code_attempt(text),
        )
        if verdict == "ok":
            return None
        if verdict == "silent" and not answer_silent:
            return Handled([], ran=False)
        language = await locale(svc, sender)
    except AWAY as exc:
        raise _away(svc, exc) from None
    return Handled([Reply(ratelimit.refusal(svc.settings, kind, language))], language, ran=False)


async def run(
    svc: Services,
    inbound: Inbound,
    act: Callable[[], Awaitable[list[Reply]]] | None = None,
) -> Handled:
    """The bot's answer (``act``, or the call the update's content asks for)."""
    sender = inbound.sender
    bot = svc.bot
    if act is None:
        if inbound.form is not None:
            form_id, values = inbound.form
            act = lambda: bot.submit_form(sender, form_id, values)  # noqa: E731
        elif inbound.file is not None:
            upload = inbound.file
            act = lambda: bot.file(sender, upload, inbound.text)  # noqa: E731
        else:
            act = lambda: bot.handle(sender, inbound.text)  # noqa: E731
    try:
        replies = await act()
        language = await locale(svc, sender)
    except AWAY as exc:
        raise _away(svc, exc) from None
    except Exception:
        log.exception("the chat bot failed on a %s update", sender.channel)
        language = normalize_locale(sender.language)
        with contextlib.suppress(Exception):
            language = await locale(svc, sender)
        return Handled([apology(language)], language)
    _outages(svc).ok()
    return Handled(replies, language)


def apology(language: str) -> Reply:
    return Reply(
        gettext(language, "Something went wrong on our side. Please try again in a moment."),
        private=True,
    )


async def handle(
    svc: Services,
    inbound: Inbound,
    act: Callable[[], Awaitable[list[Reply]]] | None = None,
) -> Handled:
    """The whole pipeline for one update: once, admit, run."""
    if not inbound.key:
        return await _admit_and_run(svc, inbound, act)
    async with once(svc, inbound.sender.channel, inbound.key) as fresh:
        handled = await _admit_and_run(svc, inbound, act) if fresh else Handled([], ran=False)
    return handled


async def _admit_and_run(
    svc: Services, inbound: Inbound, act: Callable[[], Awaitable[list[Reply]]] | None
) -> Handled:
    refused = await admit(svc, inbound.sender, inbound.text)
    return refused if refused is not None else await run(svc, inbound, act)
