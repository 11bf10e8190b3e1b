"""The chat bot: each chat turns its input into text, `Bot` answers with Replies.

Telegram (commands, buttons), Discord (slash commands, buttons, modals) and WhatsApp
(keywords) all call `Bot.handle(sender, text)`: a command (``/orders``), a keyword
(``ORDERS``), a button's action (``submit <order id>``) or an answer in a conversation.
A button's action is itself a command line, so it fits Telegram's 64-byte callback data and
a WhatsApp user can type it. Here: parsing, the group rules, and the dispatch to the
commands of each concern (buyer, preferences, linking, gom); conversation state lives in
Redis (`conversation`), never in process memory.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from uuid import UUID

from gomflow_messaging import contacts
from gomflow_messaging.i18n import DEFAULT_TIMEZONE, LOCALES, default_timezone, normalize_locale
from gomflow_messaging.workflows import audit, linking
from gomflow_messaging.workflows.chat.buyer import BuyerCommands
from gomflow_messaging.workflows.chat.conversation import Conversation, cancel
from gomflow_messaging.workflows.chat.gom import GomCommands
from gomflow_messaging.workflows.chat.linking import LinkCommands, is_answer, pending_key
from gomflow_messaging.workflows.chat.preferences import PreferenceCommands
from gomflow_messaging.workflows.chat.text import _, gom_only, help_text, main_buttons, unknown
from gomflow_messaging.workflows.chat.types import (
    DEEP_LINK_COMMANDS,
    Context,
    Reply,
    command_menu,
    no_nul,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from redis.asyncio import Redis

    from gomflow_messaging.db import Pool
    from gomflow_messaging.workflows.chat.gom import CancelHold
    from gomflow_messaging.workflows.chat.types import (
        CommandInfo,
        GomChat,
        Handler,
        IncomingFile,
        Proofs,
        Sender,
    )

log = logging.getLogger(__name__)

_KEYWORDS = {
    "hi": "help",
    "hello": "help",
    "menu": "help",
    "help": "help",
    "orders": "orders",
    "submit": "submit",
    "status": "status",
    "pay": "pay",
    "settings": "settings",
    "stop": "stop",
    "unsubscribe": "stop",
    "start": "start",
    "cancel": "cancel",
    "link": "link",
    "manage": "manage",
    "create": "create",
    "lang": "lang",
    "order": "order",
    "close": "close",
    "notify": "notify",
    "quiet": "quiet",
    "tz": "tz",
    "payments": "payments",
    "proof": "proof",
    "approve": "approve",
    "reject": "reject",
    "holds": "holds",
    "cancelhold": "cancelhold",
    "console": "console",
}
#: Button actions are lowercase command lines, e.g. "submit <uuid>" or "orders 2".
_ACTIONS = frozenset(
    {
        "orders",
        "submit",
        "order",
        "status",
        "pay",
        "lang",
        "notify",
        "close",
        "settings",
        "manage",
        "dashboard",
        "remind",
        "quiet",
        "tz",
        "proof",
        "payments",
        "approve",
        "reject",
        "holds",
        "cancelhold",
        "link",
        "console",
    }
)


class Bot:
    """The chat bots' brain; one instance per process, stateless between messages.

    Built with its collaborators: ``proofs`` (receipts and their review),
    ``on_submission`` (after a submission is created: GOM alert, confirmations),
    ``remind_now`` (remind an order's unpaid buyers now; returns how many) and
    ``on_gom_chat`` (a chat became a GOM's, or stopped being served as one, so its menu
    can follow), ``cancel_hold`` (a GOM lets an unpaid hold go: workflows.holds),
    ``default_max_per_buyer`` (DEFAULT_MAX_PER_BUYER) and ``console_link`` (a one-time
    sign-in link to the web console for a GOM's profile).
    """

    def __init__(
        self,
        pool: Pool,
        redis: Redis,
        *,
        proofs: Proofs,
        on_submission: Callable[[UUID], Awaitable[None]],
        remind_now: Callable[[UUID], Awaitable[int]],
        on_gom_chat: GomChat,
        cancel_hold: CancelHold,
        default_max_per_buyer: int,
        console_link: Callable[[UUID], Awaitable[str]] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.clock = clock or (lambda: datetime.now(UTC))
        self.proofs = proofs
        gom_chat = _never_raises(on_gom_chat)
        self.buyer = BuyerCommands(pool, self.clock, on_submission, default_max_per_buyer)
        self.preferences = PreferenceCommands(pool, self.clock, gom_chat)
        self.linking = LinkCommands(pool, redis, self.clock, gom_chat)
        self.gom = GomCommands(
            pool,
            redis,
            self.clock,
            proofs,
            remind_now,
            cancel_hold,
            default_max_per_buyer,
            console_link,
        )
        self._commands: dict[str, Handler] = {
            "start": self._start,
            "help": self._help,
            "cancel": self._cancel,
            "proof": proofs.choose,
            **self.buyer.commands(),
            **self.preferences.commands(),
            **self.linking.commands(),
            **self.gom.commands(),
        }

    # -- entry points --------------------------------------------------------------------

    async def handle(self, sender: Sender, text: str) -> list[Reply]:
        """Answer one message, button press or keyword from a chat.

        In a group only our commands are answered (anything else is people talking, or
        meant for another bot), and every answer but the public ones (help, open orders)
        is marked private: the chat adapter sends it to the person, never to the group.
        """
        ctx = await self._context(sender)
        text = no_nul(text).strip()
        await audit.from_chat(self.pool, ctx, "message", text[:200])
        name, args = _parse_command(text)
        if sender.in_group:
            if name is None:
                return []
            if name not in self._commands:
                return _private([unknown(ctx)])
            public = _public_in_group(name, args)
            if ctx.state is not None and not public and name not in ("cancel", "help"):
                await ctx.conversation.clear(ctx)
            replies = await self._commands[name](ctx, args)
            return replies if public else _private(replies)
        if name is None and ctx.state is None:
            word, _sep, rest = text.partition(" ")
            if word.lower() in _KEYWORDS:
                name, args = _KEYWORDS[word.lower()], rest.strip()
            elif linking.looks_like_code(text):
                name, args = "link", text  # a link code sent alone
        elif name is None and sender.keywords and text.lower() == "cancel":
            # A keyword chat's Cancel button reads "reply CANCEL": mid-flow too, not a name.
            name = "cancel"
        if name is not None:
            if name not in self._commands:
                return [unknown(ctx)]
            if ctx.state is not None and name not in ("cancel", "help"):
                await ctx.conversation.clear(ctx)  # a new command ends the conversation
            return await self._commands[name](ctx, args)
        if ctx.state is not None:
            return await self._step(ctx, text)
        return [unknown(ctx)]

    async def flow_waiting(self, sender: Sender) -> bool:
        """Whether a step-by-step flow waits for this person's answer.

        A chat that lets people answer a list with its number asks first: while a flow
        waits, "2" is the answer to its question (a quantity), never a choice.
        """
        return await Conversation(self.redis, sender).load() is not None

    def understands(self, text: str) -> bool:
        """Whether ``text`` is one of our commands (a group's ``/cmd`` may be another bot's)."""
        name, _args = _parse_command(no_nul(text).strip())
        return name in self._commands

    async def file(self, sender: Sender, file: IncomingFile, text: str = "") -> list[Reply]:
        """A file arrived (a receipt, most likely); ``text`` is its caption, if any."""
        ctx = await self._context(sender)
        await audit.from_chat(self.pool, ctx, "file", f"{file.mime_type} {file.size} bytes")
        return _private(await self.proofs.receive(ctx, file, text))

    async def submit_form(
        self, sender: Sender, form_id: str, values: dict[str, str]
    ) -> list[Reply]:
        """A form (Discord modal) came back filled in."""
        form_id = no_nul(form_id)
        values = {no_nul(k): no_nul(v) for k, v in values.items()}
        ctx = await self._context(sender)
        await audit.from_chat(self.pool, ctx, "form", form_id)
        kind, _sep, ref = form_id.partition(":")
        if kind == "submit":
            return _private(await self.buyer.submit_form(ctx, ref, values))
        if kind == "create":
            return _private(await self.gom.create_form(ctx, values))
        return [Reply(_(ctx, "That form has expired; please start again."), private=True)]

    async def order_cards(self, sender: Sender, query: str = "", limit: int = 20) -> list[Reply]:
        """Open orders matching ``query`` as cards with a join button, changing nothing.

        For search surfaces (Telegram inline mode): the person may never have written to
        the bot, and a search must not end a conversation they have going elsewhere.
        """
        known = await contacts.chat_address(self.pool, sender.channel, sender.address)
        locale = known["locale"] if known else normalize_locale(sender.language)
        ctx = Context(
            sender=sender,
            contact_id=UUID(int=0),
            locale=locale if locale in LOCALES else "en",
            timezone=(known["timezone"] if known else None) or default_timezone(locale),
            gom_id=None,
            opted_out=False,
            conversation=Conversation(self.redis, sender),
        )
        return await self.buyer.order_cards(ctx, query, limit)

    def menu(self, locale: str, *, gom: bool = False) -> list[CommandInfo]:
        """The command list in a language (Telegram's setMyCommands, Discord's sync)."""
        return command_menu(locale, gom=gom)

    async def order_choices(self, typed: str, limit: int = 25) -> list[tuple[str, str]]:
        """Open orders whose title or code holds what is being typed: (shown, value) pairs.

        For suggestions while typing (Discord autocomplete): reads only, records nothing.
        """
        return await self.buyer.order_choices(typed, limit)

    async def reference_choices(
        self, sender: Sender, typed: str, *, unpaid_only: bool = False, limit: int = 25
    ) -> list[tuple[str, str]]:
        """The sender's OWN payment references holding what is being typed, never others'."""
        return await self.buyer.reference_choices(
            sender, typed, unpaid_only=unpaid_only, limit=limit
        )

    # -- context, commands of the bot itself, conversations ------------------------------

    async def _context(self, sender: Sender) -> Context:
        row = await contacts.for_chat(
            self.pool, sender.channel, sender.address, sender.name, sender.language, self.clock()
        )
        conversation = Conversation(self.redis, sender)
        return Context(
            sender=sender,
            contact_id=row["id"],
            locale=row["locale"] if row["locale"] in LOCALES else "en",
            timezone=row["timezone"] or DEFAULT_TIMEZONE,
            gom_id=row["profile_id"] if row["kind"] == "gom" else None,
            opted_out=row["opted_out_at"] is not None,
            conversation=conversation,
            state=await conversation.load(),
        )

    async def _start(self, ctx: Context, args: str) -> list[Reply]:
        payload = args.split()[0] if args else ""
        if payload in DEEP_LINK_COMMANDS:
            # A deep link from a group ("answered in private: open a chat with me").
            return await self._commands[payload](ctx, "")
        replies = []
        welcome_back = await self.preferences.welcome_back(ctx)
        if welcome_back is not None:
            replies.append(welcome_back)
        if payload:
            # A deep link's code (t.me/<bot>?start=CODE, m.me/<page>?ref=CODE): shown first,
            # linked only when this person confirms.
            return [*replies, await self.linking.offer(ctx, payload)]
        # Translators: {name} is empty or the buyer's name after a space: "Hi Ana!".
        greeting = _(
            ctx,
            "Hi{name}! I am the GOMFLOW assistant. Browse group orders, join "
            "one, pay and follow your orders right here.",
            name=f" {ctx.sender.name}" if ctx.sender.name else "",
        )
        replies.append(Reply(greeting, buttons=main_buttons(ctx)))
        return replies

    async def _cancel(self, ctx: Context, args: str) -> list[Reply]:
        """``/cancel``: the flow the person is in, and a link code waiting for their Confirm."""
        if ctx.state is None and await self.redis.exists(
            pending_key(ctx.sender.channel, ctx.sender.address)
        ):
            return [await self.linking.cancel(ctx)]
        return await cancel(ctx, args)

    async def _help(self, ctx: Context, args: str) -> list[Reply]:
        return [Reply(help_text(ctx), buttons=main_buttons(ctx))]

    async def _step(self, ctx: Context, text: str) -> list[Reply]:
        """An answer in a conversation: to the flow it belongs to."""
        state = ctx.state or {}
        if state.get("flow") == "create":
            return await self.gom.create_step(ctx, text)
        if state.get("flow") == "reject_reason":
            await ctx.conversation.clear(ctx)
            if ctx.gom_id is None:
                return [gom_only(ctx)]
            return await self.proofs.reject(ctx, f"{state.get('proof_id', '')} {text}")
        return await self.buyer.step(ctx, text)


def _never_raises(hook: GomChat) -> GomChat:
    async def call(sender: Sender, gom: bool) -> None:
        try:
            await hook(sender, gom)
        except Exception:  # the link (or STOP) stands even when the chat's menu cannot follow
            log.exception("GOM chat menu change failed for %s", sender.channel)

    return call


def _public_in_group(name: str, args: str) -> bool:
    """What a group may see: help and the open orders, nobody's own data."""
    return name in ("help", "orders", "order") or (name == "start" and not args)


def _private(replies: list[Reply]) -> list[Reply]:
    return [r if r.private else replace(r, private=True) for r in replies]


def link_code_attempt(text: str) -> bool:
    """Whether a message tries a link code (``/start CODE``, ``/link CODE``, ``LINK CODE``,
    the code alone); pressing Confirm or Cancel tries none.

    Chats count these apart, per person, under a tighter limit than other messages.
    """
    text = no_nul(text).strip()
    name, args = _parse_command(text)
    if name is None:
        word, _sep, rest = text.partition(" ")
        name, args = _KEYWORDS.get(word.lower()), rest.strip()
        if name is None and linking.looks_like_code(text):
            return True
    return name in ("start", "link") and bool(args) and not is_answer(args)


def _parse_command(text: str) -> tuple[str | None, str]:
    """``/status@gomflow_bot PH-1`` -> ("status", "PH-1"); a button action works the same."""
    match = re.match(r"^/([A-Za-z_]+)(?:@\w+)?\s*(.*)$", text, re.DOTALL)
    if match:
        return match.group(1).lower(), match.group(2).strip()
    word, _sep, rest = text.partition(" ")
    if word in _ACTIONS and word == word.lower() and (rest or word == text):
        return word, rest.strip()
    return None, ""
