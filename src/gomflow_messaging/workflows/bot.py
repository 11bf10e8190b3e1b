"""Bot commands, written once: each chat turns its input into text, we answer with Replies.

Telegram (commands, buttons), Discord (slash commands, buttons, modals) and WhatsApp
(keywords) all call `Bot.handle(sender, text)`: a command (``/orders``), a keyword
(``ORDERS``), a button's action (``submit <order id>``) or an answer in a conversation.
A button's action is itself a command line, so it fits Telegram's 64-byte callback data and
a WhatsApp user can type it. Conversation state lives in Redis, never in process memory.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from gomflow_messaging import orders as order_data
from gomflow_messaging.channels.base import Button
from gomflow_messaging.i18n import LANGUAGE_NAMES, LOCALES, gettext, normalize_locale
from gomflow_messaging.money import format_money
from gomflow_messaging.phones import normalize_phone

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gomflow_messaging.db import Connection, Pool
    from gomflow_messaging.workflows.payment_proofs import PaymentProofs

log = logging.getLogger(__name__)

CONVERSATION_TTL = 3600
PAGE_SIZE = 5
MAX_CALLBACK_BYTES = 64
_BABEL_LOCALE = {"en": "en_PH", "fil": "fil_PH", "ms": "ms_MY"}
_YES = {"confirm", "yes", "y", "oo", "opo", "ya", "ok"}
_NO = {"no", "n", "hindi", "tidak", "cancel"}


@dataclass(frozen=True)
class Sender:
    """Who wrote, as the chat sees them; ``address`` is where replies go."""

    channel: str
    address: str
    name: str = ""
    #: The platform's language hint (Telegram's language_code, Discord's locale).
    language: str = ""
    #: The chat can show a form with all fields at once (Discord modals).
    supports_forms: bool = False
    #: The chat says this user holds the configured GOM role (Discord guilds).
    gom_role: bool = False

    def __post_init__(self) -> None:
        # Postgres stores no NUL character; a chat may still carry one.
        for name in ("address", "name", "language"):
            value = getattr(self, name)
            if "\x00" in value:
                object.__setattr__(self, name, _no_nul(value))


def _no_nul(text: str) -> str:
    return text.replace("\x00", "")


@dataclass(frozen=True)
class IncomingFile:
    """A file someone sent in a chat (a receipt); the chat adapter knows how to fetch it.

    ``fetch`` raises only our ChannelError: PermanentError(code="too_large") past
    MAX_FILE_SIZE, TransientError when the platform cannot serve it now.
    """

    name: str
    mime_type: str
    #: As the platform declared it; 0 when it does not say (WhatsApp).
    size: int
    fetch: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class FormField:
    id: str
    label: str
    required: bool = True
    max_length: int = 200
    multiline: bool = False
    placeholder: str = ""


@dataclass(frozen=True)
class Form:
    """Ask for several fields at once; answered through `Bot.submit_form`."""

    id: str
    title: str
    fields: tuple[FormField, ...]


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    image_url: str = ""
    form: Form | None = None
    #: Only the sender should see it (Discord ephemeral); other chats are private anyway.
    private: bool = False


@dataclass(frozen=True)
class CommandInfo:
    name: str
    description: str
    gom_only: bool = False
    #: Takes one free-text argument (Discord renders it as an option).
    argument: str = ""
    #: Takes a file too (Discord renders an attachment option; other chats just send one).
    attachment: str = ""


# Descriptions are English source text; `Bot.menu` translates them.
COMMANDS: tuple[CommandInfo, ...] = (
    CommandInfo("start", "Welcome and main menu"),
    CommandInfo("help", "What I can do"),
    CommandInfo("orders", "Browse open group orders"),
    CommandInfo("submit", "Join a group order", argument="order"),
    CommandInfo("status", "Your orders and payment status", argument="reference"),
    CommandInfo(
        "pay", "How to pay, and sending your receipt", argument="reference", attachment="receipt"
    ),
    CommandInfo("settings", "Language and notifications"),
    CommandInfo("link", "Link this chat with a code from GOMFLOW", argument="code"),
    CommandInfo("stop", "Stop reminders and updates"),
    CommandInfo("cancel", "Cancel what we are doing"),
    CommandInfo("manage", "Your orders: counts, close an order", gom_only=True),
    CommandInfo("dashboard", "Your orders at a glance: payments, reminders, proofs", gom_only=True),
    CommandInfo("create", "Open a new group order", gom_only=True),
    CommandInfo("payments", "Payment proofs waiting for your review", gom_only=True),
)


def command_menu(locale: str, *, gom: bool = False) -> list[CommandInfo]:
    """`Bot.menu` without a Bot: for the CLI, which registers commands without a database."""
    return [
        CommandInfo(c.name, gettext(locale, c.description), c.gom_only, c.argument, c.attachment)
        for c in COMMANDS
        if gom or not c.gom_only
    ]


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
}


def _(ctx: Context, message: str, **values: Any) -> str:
    return gettext(ctx.locale, message, **values)


@dataclass
class Context:
    sender: Sender
    contact_id: UUID
    locale: str
    timezone: str
    gom_id: UUID | None
    opted_out: bool
    state: dict[str, Any] | None = None
    values: dict[str, Any] = field(default_factory=dict)


def button(label: str, action: str) -> Button:
    if len(action.encode()) > MAX_CALLBACK_BYTES:
        raise ValueError(f"button action longer than {MAX_CALLBACK_BYTES} bytes: {action!r}")
    return Button(label=label, action=action)


class Bot:
    """The chat bots' brain; one instance per process, stateless between messages."""

    def __init__(
        self,
        pool: Pool,
        redis: Redis,
        *,
        clock: Callable[[], datetime] | None = None,
        on_submission: Callable[[UUID], Awaitable[None]] | None = None,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.clock = clock or (lambda: datetime.now(UTC))
        #: Called after a submission is created (GOM alert, confirmation notifications).
        self.on_submission = on_submission
        #: Receipts and their review (set by the composition root, which has the services).
        self.proofs: PaymentProofs | None = None
        #: Reminds an order's unpaid buyers now; returns how many (set by the composition root).
        self.remind_now: Callable[[UUID], Awaitable[int]] | None = None
        self._commands: dict[str, Callable[[Context, str], Awaitable[list[Reply]]]] = {
            "start": self._start,
            "help": self._help,
            "orders": self._orders,
            "order": self._order,
            "submit": self._submit,
            "status": self._status,
            "pay": self._pay,
            "settings": self._settings,
            "lang": self._lang,
            "notify": self._notify,
            "quiet": self._quiet,
            "tz": self._tz,
            "stop": self._stop,
            "cancel": self._cancel,
            "link": self._link,
            "manage": self._manage,
            "dashboard": self._manage,
            "close": self._close,
            "remind": self._remind,
            "create": self._create,
            "proof": self._proof,
            "payments": self._payments,
            "approve": self._approve,
            "reject": self._reject,
        }

    # -- entry points --------------------------------------------------------------------

    async def handle(self, sender: Sender, text: str) -> list[Reply]:
        """Answer one message, button press or keyword from a chat."""
        ctx = await self._context(sender)
        text = _no_nul(text).strip()
        await self._audit(ctx, "message", text[:200])
        name, args = _parse_command(text)
        if name is None and ctx.state is None:
            word, _sep, rest = text.partition(" ")
            if word.lower() in _KEYWORDS:
                name, args = _KEYWORDS[word.lower()], rest.strip()
        if name is not None:
            if name not in self._commands:
                return [await self._unknown(ctx)]
            if ctx.state is not None and name not in ("cancel", "help"):
                await self._clear_state(ctx)  # a new command ends the conversation
            return await self._commands[name](ctx, args)
        if ctx.state is not None:
            return await self._step(ctx, text)
        return [await self._unknown(ctx)]

    async def file(self, sender: Sender, file: IncomingFile, text: str = "") -> list[Reply]:
        """A file arrived (a receipt, most likely); ``text`` is its caption, if any."""
        ctx = await self._context(sender)
        await self._audit(ctx, "file", f"{file.mime_type} {file.size} bytes")
        if self.proofs is None:
            return [Reply(_(ctx, "Sorry, I cannot take files here yet."), private=True)]
        return await self.proofs.receive(ctx, file, text)

    async def submit_form(
        self, sender: Sender, form_id: str, values: dict[str, str]
    ) -> list[Reply]:
        """A form (Discord modal) came back filled in."""
        form_id = _no_nul(form_id)
        values = {_no_nul(k): _no_nul(v) for k, v in values.items()}
        ctx = await self._context(sender)
        await self._audit(ctx, "form", form_id)
        kind, _sep, ref = form_id.partition(":")
        if kind == "submit":
            order = await order_data.find_order(self.pool, ref)
            if order is None:
                return [Reply(_(ctx, "That order no longer exists."), private=True)]
            data: dict[str, Any] = {"order_id": str(order.id)}
            for step in ("name", "phone", "quantity", "address", "notes"):
                problem = await self._accept(ctx, step, values.get(step, ""), data, order)
                if problem:
                    return [Reply(problem, private=True)]
            return await self._finish_submission(ctx, data)
        if kind == "create":
            if ctx.gom_id is None:
                return [self._gom_only(ctx)]
            return await self._create_from(ctx, values)
        return [Reply(_(ctx, "That form has expired; please start again."), private=True)]

    async def order_cards(self, sender: Sender, query: str = "", limit: int = 20) -> list[Reply]:
        """Open orders matching ``query`` as cards with a join button, changing nothing.

        For search surfaces (Telegram inline mode): the person may never have written to
        the bot, and a search must not end a conversation they have going elsewhere.
        """
        known = await self.pool.fetchrow(
            """
            SELECT c.locale, c.timezone FROM contact_addresses ca
              JOIN contacts c ON c.id = ca.contact_id
             WHERE ca.channel = $1 AND ca.address = $2
            """,
            sender.channel,
            sender.address,
        )
        locale = known["locale"] if known else normalize_locale(sender.language)
        ctx = Context(
            sender=sender,
            contact_id=UUID(int=0),
            locale=locale if locale in LOCALES else "en",
            timezone=(known["timezone"] if known else None) or "Asia/Manila",
            gom_id=None,
            opted_out=False,
        )
        found, _total = await order_data.open_orders(self.pool, self.clock(), limit=100)
        words = _no_nul(query).lower().split()
        cards = []
        for order in found:
            text = self._order_card(ctx, order)
            if all(word in text.lower() for word in words):
                join = button(_(ctx, "Join this order"), f"submit {order.id}")
                cards.append(Reply(text, buttons=((join,),)))
        return cards[:limit]

    def menu(self, locale: str, *, gom: bool = False) -> list[CommandInfo]:
        """The command list in a language (Telegram's setMyCommands, Discord's sync)."""
        return command_menu(locale, gom=gom)

    # -- context and state ---------------------------------------------------------------

    async def _context(self, sender: Sender) -> Context:
        now = self.clock()
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """
                UPDATE contact_addresses ca
                   SET last_inbound_at = $3, reachable = true, unreachable_reason = NULL
                  FROM contacts c
                 WHERE ca.channel = $1 AND ca.address = $2 AND c.id = ca.contact_id
                RETURNING c.id, c.locale, c.timezone, c.kind, c.profile_id, c.opted_out_at
                """,
                sender.channel,
                sender.address,
                now,
            )
            if row is None:
                async with conn.transaction():
                    contact_id = await conn.fetchval(
                        "INSERT INTO contacts (display_name, locale) VALUES ($1, $2) RETURNING id",
                        sender.name[:100] or None,
                        normalize_locale(sender.language),
                    )
                    linked = await conn.fetchval(
                        """
                        INSERT INTO contact_addresses (contact_id, channel, address, priority,
                                                       last_inbound_at)
                        VALUES ($1, $2, $3, 10, $4)
                        ON CONFLICT (channel, address) DO NOTHING RETURNING id
                        """,
                        contact_id,
                        sender.channel,
                        sender.address,
                        now,
                    )
                    if linked is None:  # another replica created it a moment ago
                        await conn.execute("DELETE FROM contacts WHERE id = $1", contact_id)
                    elif sender.channel == "whatsapp":
                        await _link_by_phone(conn, contact_id, sender.address)
                row = await conn.fetchrow(
                    """
                    SELECT c.id, c.locale, c.timezone, c.kind, c.profile_id, c.opted_out_at
                      FROM contact_addresses ca JOIN contacts c ON c.id = ca.contact_id
                     WHERE ca.channel = $1 AND ca.address = $2
                    """,
                    sender.channel,
                    sender.address,
                )
                assert row is not None
        raw = await self.redis.get(self._state_key(sender))
        return Context(
            sender=sender,
            contact_id=row["id"],
            locale=row["locale"] if row["locale"] in LOCALES else "en",
            timezone=row["timezone"] or "Asia/Manila",
            gom_id=row["profile_id"] if row["kind"] == "gom" else None,
            opted_out=row["opted_out_at"] is not None,
            state=json.loads(raw) if raw else None,
        )

    def _state_key(self, sender: Sender) -> str:
        return f"gomflow:conversation:{sender.channel}:{sender.address}"

    async def _save_state(self, ctx: Context, state: dict[str, Any]) -> None:
        ctx.state = state
        await self.redis.set(self._state_key(ctx.sender), json.dumps(state), ex=CONVERSATION_TTL)

    async def _clear_state(self, ctx: Context) -> None:
        ctx.state = None
        await self.redis.delete(self._state_key(ctx.sender))

    async def _audit(self, ctx: Context, action: str, what: str) -> None:
        await self.pool.execute(
            """
            INSERT INTO audit_log (direction, actor, action, channel, subject, result, detail)
            VALUES ('inbound', $1, $2, $3, $4, 'received', $5::jsonb)
            """,
            str(ctx.contact_id),
            action,
            ctx.sender.channel,
            ctx.sender.address,
            {"text": what},
        )

    # -- formatting ----------------------------------------------------------------------

    def _when(self, ctx: Context, moment: datetime) -> str:
        zone = ZoneInfo(ctx.timezone)
        return format_datetime(
            moment, "d MMM yyyy, h:mm a ZZZZ", tzinfo=zone, locale=_BABEL_LOCALE[ctx.locale]
        )

    def _order_card(self, ctx: Context, order: order_data.Order) -> str:
        taken = (
            _(ctx, "{filled} of {max} taken", filled=order.filled, max=order.max_orders)
            if order.max_orders is not None
            else _(ctx, "{filled} taken", filled=order.filled)
        )
        lines = [
            order.title,
            _(ctx, "Price: {price}", price=format_money(order.price, order.currency)),
            _(ctx, "Deadline: {deadline}", deadline=self._when(ctx, order.deadline)),
            taken,
        ]
        if order.slug:
            lines.append(_(ctx, "Code: {code}", code=order.slug))
        return "\n".join(lines)

    def _status_name(self, ctx: Context, status: str) -> str:
        names = {
            "pending": _(ctx, "waiting for payment"),
            "paid": _(ctx, "paid"),
            "failed": _(ctx, "payment failed"),
            "expired": _(ctx, "expired"),
            "cancelled": _(ctx, "cancelled"),
        }
        return names.get(status, status)

    def _main_buttons(self, ctx: Context) -> tuple[tuple[Button, ...], ...]:
        return (
            (button(_(ctx, "Open orders"), "orders"), button(_(ctx, "My orders"), "status")),
            (button(_(ctx, "Pay"), "pay"), button(_(ctx, "Settings"), "settings")),
        )

    async def _unknown(self, ctx: Context) -> Reply:
        return Reply(
            _(ctx, "Sorry, I did not understand that.") + "\n\n" + self._help_text(ctx),
            buttons=self._main_buttons(ctx),
        )

    def _gom_only(self, ctx: Context) -> Reply:
        return Reply(
            _(
                ctx,
                "Only a GOM can do that. If you are one, link this chat to your GOMFLOW "
                "profile with the link code from your dashboard.",
            ),
            private=True,
        )

    def _help_text(self, ctx: Context) -> str:
        lines = [_(ctx, "Here is what I can do:")]
        for info in self.menu(ctx.locale, gom=ctx.gom_id is not None):
            lines.append(f"/{info.name} - {info.description}")
        if ctx.sender.channel == "whatsapp":
            lines.append(_(ctx, "On WhatsApp, type the word without the slash, e.g. ORDERS."))
        return "\n".join(lines)

    # -- buyer commands ------------------------------------------------------------------

    async def _start(self, ctx: Context, args: str) -> list[Reply]:
        replies = []
        if args:
            replies.append(await self._use_link_token(ctx, args.split()[0]))
        if ctx.opted_out:
            await self.pool.execute(
                "UPDATE contacts SET opted_out_at = NULL, updated_at = now() WHERE id = $1",
                ctx.contact_id,
            )
            ctx.opted_out = False
            replies.append(Reply(_(ctx, "Welcome back! Reminders and updates are on again.")))
        # Translators: {name} is empty or the buyer's name after a space: "Hi Ana!".
        greeting = _(
            ctx,
            "Hi{name}! I am the GOMFLOW assistant. Browse group orders, join "
            "one, pay and follow your orders right here.",
            name=f" {ctx.sender.name}" if ctx.sender.name else "",
        )
        replies.append(Reply(greeting, buttons=self._main_buttons(ctx)))
        return replies

    async def _help(self, ctx: Context, args: str) -> list[Reply]:
        return [Reply(self._help_text(ctx), buttons=self._main_buttons(ctx))]

    async def _orders(self, ctx: Context, args: str) -> list[Reply]:
        page = int(args) if args.isdigit() else 1
        found, total = await order_data.open_orders(
            self.pool, self.clock(), offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
        if not found:
            return [Reply(_(ctx, "There are no open orders right now. Check again soon!"))]
        pages = (total + PAGE_SIZE - 1) // PAGE_SIZE
        replies = [Reply(_(ctx, "Open orders (page {page} of {pages}):", page=page, pages=pages))]
        for order in found:
            replies.append(
                Reply(
                    self._order_card(ctx, order),
                    buttons=((button(_(ctx, "Join this order"), f"submit {order.id}"),),),
                )
            )
        nav = []
        if page > 1:
            nav.append(button(_(ctx, "Previous"), f"orders {page - 1}"))
        if page < pages:
            nav.append(button(_(ctx, "Next"), f"orders {page + 1}"))
        if nav:
            replies.append(Reply(_(ctx, "More orders:"), buttons=(tuple(nav),)))
        return replies

    async def _order(self, ctx: Context, args: str) -> list[Reply]:
        order = await order_data.find_order(self.pool, args) if args else None
        if order is None:
            return [Reply(_(ctx, "I could not find that order. Send ORDERS to see open ones."))]
        text = self._order_card(ctx, order)
        if order.description:
            text += "\n\n" + order.description
        actions = ((button(_(ctx, "Join this order"), f"submit {order.id}"),),)
        return [Reply(text, buttons=actions if order.is_open(self.clock()) else ())]

    async def _submit(self, ctx: Context, args: str) -> list[Reply]:
        if not args:
            found, _total = await order_data.open_orders(self.pool, self.clock(), limit=10)
            if not found:
                return [Reply(_(ctx, "There are no open orders right now. Check again soon!"))]
            rows = tuple((button(o.title[:40], f"submit {o.id}"),) for o in found)
            return [Reply(_(ctx, "Which order would you like to join?"), buttons=rows)]
        order = await order_data.find_order(self.pool, args.split()[0])
        if order is None:
            return [Reply(_(ctx, "I could not find that order. Send ORDERS to see open ones."))]
        refusal = self._refusal_before_start(ctx, order)
        if refusal:
            return [Reply(refusal)]
        if ctx.sender.supports_forms:
            return [
                Reply(_(ctx, "Join {title}", title=order.title), form=self._submit_form(ctx, order))
            ]
        data: dict[str, Any] = {"order_id": str(order.id)}
        if ctx.sender.channel == "whatsapp":
            data["phone"] = ctx.sender.address
        await self._save_state(ctx, {"flow": "submit", "step": "name", "data": data})
        intro = self._order_card(ctx, order)
        return [
            Reply(intro),
            Reply(
                self._prompt(ctx, "name", order), buttons=((button(_(ctx, "Cancel"), "/cancel"),),)
            ),
        ]

    def _refusal_before_start(self, ctx: Context, order: order_data.Order) -> str:
        now = self.clock()
        if not order.is_active:
            return _(ctx, "Sorry, {title} is closed.", title=order.title)
        if order.deadline <= now:
            return _(ctx, "Sorry, the deadline for {title} has passed.", title=order.title)
        if order.remaining == 0:
            return _(ctx, "Sorry, {title} is full.", title=order.title)
        return ""

    def _submit_form(self, ctx: Context, order: order_data.Order) -> Form:
        return Form(
            id=f"submit:{order.id}",
            title=_(ctx, "Join the order")[:45],
            fields=(
                FormField("name", _(ctx, "Your name"), max_length=100),
                FormField(
                    "phone", _(ctx, "Mobile number"), max_length=20, placeholder="+63 917 123 4567"
                ),
                FormField("quantity", _(ctx, "Quantity"), max_length=3, placeholder="1"),
                FormField("address", _(ctx, "Delivery address"), max_length=300, multiline=True),
                FormField(
                    "notes",
                    _(ctx, "Notes (optional)"),
                    required=False,
                    max_length=300,
                    multiline=True,
                ),
            ),
        )

    def _prompt(self, ctx: Context, step: str, order: order_data.Order | None = None) -> str:
        prompts = {
            "name": _(ctx, "What name should the GOM put on your order?"),
            "phone": _(ctx, "What is your mobile number? (e.g. 0917 123 4567 or +60 12 345 6789)"),
            "quantity": _(ctx, "How many would you like? (up to {n})", n=order.remaining)
            if order and order.remaining
            else _(ctx, "How many would you like?"),
            "address": _(ctx, "Where should it be delivered? (full address)"),
            "notes": _(ctx, "Any notes for the GOM? Send SKIP if none."),
        }
        return prompts[step]

    async def _accept(
        self,
        ctx: Context,
        step: str,
        text: str,
        data: dict[str, Any],
        order: order_data.Order,
    ) -> str:
        """Validate one answer into ``data``; returns the problem, or "" when accepted."""
        text = text.strip()
        if step == "name":
            if not 2 <= len(text) <= 100:
                return _(ctx, "Please send a name of 2 to 100 characters.")
            data["name"] = text
        elif step == "phone":
            try:
                data["phone"] = normalize_phone(text)
            except ValueError:
                return _(ctx, "That does not look like a mobile number. Try e.g. 0917 123 4567.")
        elif step == "quantity":
            if not text.isdigit() or int(text) < 1:
                return _(ctx, "Please send a whole number, like 1 or 2.")
            limit = order.remaining if order.remaining is not None else 99
            if int(text) > limit:
                return _(ctx, "Only {n} left; please send a smaller number.", n=limit)
            data["quantity"] = int(text)
        elif step == "address":
            if not 5 <= len(text) <= 300:
                return _(ctx, "Please send the full delivery address (5 to 300 characters).")
            data["address"] = text
        elif step == "notes":
            data["notes"] = (
                "" if text.lower() in ("skip", "-", "none", "wala", "tiada") else text[:300]
            )
        return ""

    async def _step(self, ctx: Context, text: str) -> list[Reply]:
        state = ctx.state or {}
        if state.get("flow") == "create":
            return await self._create_step(ctx, text)
        if state.get("flow") == "reject_reason" and self.proofs is not None:
            await self._clear_state(ctx)
            if ctx.gom_id is None:
                return [self._gom_only(ctx)]
            return await self.proofs.reject(ctx, f"{state.get('proof_id', '')} {text}")
        data = state.get("data", {})
        order = await order_data.find_order(self.pool, data.get("order_id", ""))
        if order is None:
            await self._clear_state(ctx)
            return [Reply(_(ctx, "That order no longer exists."))]
        step = state.get("step", "name")
        cancel = ((button(_(ctx, "Cancel"), "/cancel"),),)
        if step == "confirm":
            answer = text.lower()
            if answer in _YES:
                await self._clear_state(ctx)
                return await self._finish_submission(ctx, data)
            if answer in _NO:
                return await self._cancel(ctx, "")
            return [
                Reply(_(ctx, "Please press Confirm or Cancel."), buttons=self._confirm_buttons(ctx))
            ]
        problem = await self._accept(ctx, step, text, data, order)
        if problem:
            return [Reply(problem, buttons=cancel)]
        steps = ["name", "phone", "quantity", "address", "notes"]
        remaining = [s for s in steps[steps.index(step) + 1 :] if s not in data]
        if remaining:
            nxt = remaining[0]
            await self._save_state(ctx, {"flow": "submit", "step": nxt, "data": data})
            extra = ((button(_(ctx, "Skip"), "skip"),),) if nxt == "notes" else ()
            return [Reply(self._prompt(ctx, nxt, order), buttons=extra + cancel)]
        await self._save_state(ctx, {"flow": "submit", "step": "confirm", "data": data})
        total = format_money(order.price * data["quantity"], order.currency)
        summary = "\n".join(
            [
                _(ctx, "Please check your order:"),
                order.title,
                _(ctx, "Name: {v}", v=data["name"]),
                _(ctx, "Mobile: {v}", v=data["phone"]),
                _(ctx, "Quantity: {v}", v=data["quantity"]),
                _(ctx, "Address: {v}", v=data["address"]),
                _(ctx, "Notes: {v}", v=data.get("notes") or "-"),
                _(ctx, "Total: {v}", v=total),
            ]
        )
        return [Reply(summary, buttons=self._confirm_buttons(ctx))]

    def _confirm_buttons(self, ctx: Context) -> tuple[tuple[Button, ...], ...]:
        return ((button(_(ctx, "Confirm"), "confirm"), button(_(ctx, "Cancel"), "/cancel")),)

    async def _finish_submission(self, ctx: Context, data: dict[str, Any]) -> list[Reply]:
        async with self.pool.acquire() as conn:
            try:
                submission = await order_data.create_submission(
                    conn,
                    order_id=UUID(data["order_id"]),
                    contact_id=ctx.contact_id,
                    buyer_name=data["name"],
                    buyer_phone=data["phone"],
                    quantity=int(data["quantity"]),
                    platform=ctx.sender.channel,
                    platform_id=ctx.sender.address,
                    now=self.clock(),
                )
            except order_data.SubmissionRefused as refused:
                return [Reply(self._refusal_text(ctx, refused), private=True)]
            await conn.execute(
                "INSERT INTO submission_details (submission_id, address, notes)"
                " VALUES ($1, $2, $3)",
                submission["id"],
                data.get("address"),
                data.get("notes") or None,
            )
            await conn.execute(
                "UPDATE contacts SET display_name = coalesce(display_name, $2), phone = $3,"
                " updated_at = now() WHERE id = $1",
                ctx.contact_id,
                data["name"],
                data["phone"],
            )
        order = await order_data.find_order(self.pool, data["order_id"])
        assert order is not None
        if self.on_submission is not None:
            try:
                await self.on_submission(submission["id"])
            except Exception:  # the buyer's answer must not fail because an alert did
                log.exception("on_submission hook failed for %s", submission["id"])
        text = "\n".join(
            [
                _(ctx, "You joined {title}!", title=order.title),
                _(ctx, "Payment reference: {ref}", ref=submission["payment_reference"]),
                _(
                    ctx,
                    "Total: {v}",
                    v=format_money(submission["total_amount"], submission["currency"]),
                ),
                "",
                self._payment_instructions(
                    ctx, order, submission["payment_reference"], submission["total_amount"]
                ),
            ]
        )
        return [Reply(text, buttons=((button(_(ctx, "My orders"), "status"),),))]

    def _refusal_text(self, ctx: Context, refused: order_data.SubmissionRefused) -> str:
        texts = {
            "closed": _(ctx, "Sorry, this order is closed."),
            "deadline_passed": _(ctx, "Sorry, the deadline for this order has passed."),
            "quantity_too_low": _(ctx, "Please send a whole number, like 1 or 2."),
            "quantity_too_high": _(
                ctx, "Only {n} left; please send a smaller number.", n=refused.values.get("left", 0)
            ),
            "duplicate": _(
                ctx,
                "You already joined this order (reference {ref}). Send STATUS to see it.",
                ref=refused.values.get("reference", ""),
            ),
        }
        return texts.get(refused.reason, refused.reason)

    def _payment_instructions(
        self, ctx: Context, order: order_data.Order, reference: str, amount: Decimal
    ) -> str:
        methods = ", ".join(_method_name(ctx, m) for m in order.payment_methods) or _(
            ctx, "bank transfer"
        )
        return _(
            ctx,
            "How to pay: send {amount} via {methods} and write {ref} in the notes. Then send a "
            "screenshot of your receipt here.",
            amount=format_money(amount, order.currency),
            methods=methods,
            ref=reference,
        )

    async def _status(self, ctx: Context, args: str) -> list[Reply]:
        rows = await order_data.contact_submissions(
            self.pool, ctx.contact_id, ctx.sender.channel, ctx.sender.address
        )
        if args:
            wanted = args.split()[0].upper()
            rows = [r for r in rows if r["payment_reference"] == wanted]
            if not rows:
                # Never say whether someone else's reference exists.
                return [
                    Reply(
                        _(ctx, "I found no order of yours with reference {ref}.", ref=wanted),
                        private=True,
                    )
                ]
        if not rows:
            return [
                Reply(
                    _(ctx, "You have not joined any order yet. Send ORDERS to browse."),
                    buttons=((button(_(ctx, "Open orders"), "orders"),),),
                )
            ]
        lines = [_(ctx, "Your orders:")]
        for r in rows:
            lines.append(
                f"{r['payment_reference']} · {r['title']} · x{r['quantity']} · "
                f"{format_money(r['total_amount'], r['currency'])} · "
                f"{self._status_name(ctx, r['status'])}"
            )
        pending = any(r["status"] == "pending" for r in rows)
        actions = ((button(_(ctx, "Pay"), "pay"),),) if pending else ()
        return [Reply("\n".join(lines), buttons=actions, private=True)]

    async def _pay(self, ctx: Context, args: str) -> list[Reply]:
        rows = await order_data.contact_submissions(
            self.pool, ctx.contact_id, ctx.sender.channel, ctx.sender.address
        )
        pending = [r for r in rows if r["status"] == "pending"]
        if args:
            pending = [r for r in pending if r["payment_reference"] == args.split()[0].upper()]
        if not pending:
            return [Reply(_(ctx, "You have nothing waiting for payment."), private=True)]
        replies = []
        for r in pending:
            order = await order_data.find_order(self.pool, str(r["order_id"]))
            if order is None:
                continue
            replies.append(
                Reply(
                    f"{r['payment_reference']} · {r['title']}\n"
                    + self._payment_instructions(
                        ctx, order, r["payment_reference"], r["total_amount"]
                    ),
                    private=True,
                )
            )
        return replies

    async def _settings(self, ctx: Context, args: str) -> list[Reply]:
        row = await self.pool.fetchrow(
            """
            SELECT c.quiet_start, c.quiet_end,
                   coalesce((SELECT jsonb_object_agg(p.kind, p.enabled)
                               FROM contact_preferences p WHERE p.contact_id = c.id),
                            '{}'::jsonb) AS preferences
              FROM contacts c WHERE c.id = $1
            """,
            ctx.contact_id,
        )
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
            kind_rows.append((button(_(ctx, "Turn updates on"), "notify on"),))
        else:
            for kind in _kinds(ctx):
                on = preferences.get(kind, True)
                name = self._kind_name(ctx, kind)
                state = _(ctx, "on") if on else _(ctx, "off")
                lines.append(f"{name}: {state}")
                label = (
                    _(ctx, "Turn {kind} off", kind=name)
                    if on
                    else _(ctx, "Turn {kind} on", kind=name)
                )
                kind_rows.append((button(label, f"notify {kind} {'off' if on else 'on'}"),))
            kind_rows.append((button(_(ctx, "Stop everything"), "notify off"),))
        quiet = (
            f"{row['quiet_start']:%H:%M}-{row['quiet_end']:%H:%M}"
            if row and row["quiet_start"] and row["quiet_end"]
            else _(ctx, "off")
        )
        lines.append(_(ctx, "Quiet hours: {v}", v=quiet))
        lines.append(_(ctx, "Time zone: {v}", v=ctx.timezone))
        quiet_row = (
            button(_(ctx, "Quiet 22:00-08:00"), "quiet 22-8"),
            button(_(ctx, "No quiet hours"), "quiet off"),
        )
        zone_row = tuple(
            button(("✓ " if zone == ctx.timezone else "") + label, f"tz {label.lower()}")
            for label, zone in _ZONES.items()
        )
        rows = (lang_row, *kind_rows, quiet_row, zone_row)
        return [Reply("\n".join(lines), buttons=rows, private=True)]

    def _kind_name(self, ctx: Context, kind: str) -> str:
        names = {
            "reminders": _(ctx, "Payment reminders"),
            "order_updates": _(ctx, "Order updates"),
            "gom_alerts": _(ctx, "Alerts about my orders"),
            "summaries": _(ctx, "Daily and weekly summaries"),
        }
        return names.get(kind, kind)

    async def _quiet(self, ctx: Context, args: str) -> list[Reply]:
        """``quiet 22-8`` (hours, local time) or ``quiet off``."""
        text = args.strip().lower()
        if text in ("off", "none", "0"):
            start = end = None
        else:
            match = re.fullmatch(r"(\d{1,2})(?::00)?\s*-\s*(\d{1,2})(?::00)?", text)
            if not match or int(match[1]) > 23 or int(match[2]) > 23 or match[1] == match[2]:
                return [
                    Reply(_(ctx, "Send quiet hours like QUIET 22-8, or QUIET OFF."), private=True)
                ]
            start, end = time(int(match[1])), time(int(match[2]))
        await self.pool.execute(
            "UPDATE contacts SET quiet_start = $2, quiet_end = $3, updated_at = now()"
            " WHERE id = $1",
            ctx.contact_id,
            start,
            end,
        )
        return await self._settings(ctx, "")

    async def _tz(self, ctx: Context, args: str) -> list[Reply]:
        wanted = args.strip().lower()
        zone = next(
            (z for label, z in _ZONES.items() if wanted in (label.lower(), z.lower())), None
        )
        if zone is None:
            choices = ", ".join(_ZONES)
            return [Reply(_(ctx, "Choose a time zone: {choices}.", choices=choices), private=True)]
        await self.pool.execute(
            "UPDATE contacts SET timezone = $2, updated_at = now() WHERE id = $1",
            ctx.contact_id,
            zone,
        )
        ctx.timezone = zone
        return await self._settings(ctx, "")

    async def _lang(self, ctx: Context, args: str) -> list[Reply]:
        code = normalize_locale(args) if args else ""
        if code not in LOCALES or not args:
            return await self._settings(ctx, "")
        await self.pool.execute(
            "UPDATE contacts SET locale = $2, updated_at = now() WHERE id = $1",
            ctx.contact_id,
            code,
        )
        ctx.locale = code
        # Translators: name the language you translate into, not English.
        return [Reply(_(ctx, "Done! I will write to you in English."), private=True)]

    async def _notify(self, ctx: Context, args: str) -> list[Reply]:
        """``notify on|off`` (everything, like START/STOP) or ``notify <kind> on|off``."""
        words = args.lower().split()
        if words == ["on"]:
            return await self._resume(ctx)
        if words == ["off"]:
            return await self._stop(ctx, "")
        if len(words) == 2 and words[0] in _kinds(ctx) and words[1] in ("on", "off"):
            await self.pool.execute(
                """
                INSERT INTO contact_preferences (contact_id, kind, enabled) VALUES ($1, $2, $3)
                ON CONFLICT (contact_id, kind)
                DO UPDATE SET enabled = excluded.enabled, updated_at = now()
                """,
                ctx.contact_id,
                words[0],
                words[1] == "on",
            )
            await self._audit(ctx, "preference", f"{words[0]} {words[1]}")
        return await self._settings(ctx, "")

    async def _stop(self, ctx: Context, args: str) -> list[Reply]:
        await self.pool.execute(
            "UPDATE contacts SET opted_out_at = coalesce(opted_out_at, $2), updated_at = now()"
            " WHERE id = $1",
            ctx.contact_id,
            self.clock(),
        )
        await self._audit(ctx, "opt_out", "stop")
        return [
            Reply(
                _(
                    ctx,
                    "You will not get reminders or updates any more. Send START to "
                    "turn them back on.",
                )
            )
        ]

    async def _resume(self, ctx: Context) -> list[Reply]:
        await self.pool.execute(
            "UPDATE contacts SET opted_out_at = NULL, updated_at = now() WHERE id = $1",
            ctx.contact_id,
        )
        await self._audit(ctx, "opt_in", "start")
        return [Reply(_(ctx, "Welcome back! Reminders and updates are on again."))]

    async def _cancel(self, ctx: Context, args: str) -> list[Reply]:
        had = ctx.state is not None
        await self._clear_state(ctx)
        text = _(ctx, "Cancelled.") if had else _(ctx, "There is nothing to cancel.")
        return [Reply(text, buttons=self._main_buttons(ctx))]

    # -- linking -------------------------------------------------------------------------

    async def _link(self, ctx: Context, args: str) -> list[Reply]:
        if not args:
            return [
                Reply(
                    _(ctx, "Send LINK followed by the code from GOMFLOW, e.g. LINK AB12CD34."),
                    private=True,
                )
            ]
        return [await self._use_link_token(ctx, args.split()[0])]

    async def _use_link_token(self, ctx: Context, token: str) -> Reply:
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                UPDATE link_tokens SET used_at = $2, used_by = $3
                 WHERE upper(token) = upper($1) AND used_at IS NULL AND expires_at > $2
                RETURNING contact_id, profile_id
                """,
                token.strip(),
                now,
                f"{ctx.sender.channel}:{ctx.sender.address}",
            )
            if row is None:
                return Reply(
                    _(ctx, "That link code is not valid any more. Ask for a new one."), private=True
                )
            if row["profile_id"] is not None:
                gom_contact = await conn.fetchval(
                    "SELECT id FROM contacts WHERE profile_id = $1", row["profile_id"]
                )
                if gom_contact is None:
                    await conn.execute(
                        "UPDATE contacts SET kind = 'gom', profile_id = $2 WHERE id = $1",
                        ctx.contact_id,
                        row["profile_id"],
                    )
                    target = ctx.contact_id
                else:
                    target = gom_contact
                ctx.gom_id = row["profile_id"]
            else:
                target = row["contact_id"]
            if target != ctx.contact_id:
                # This chat now belongs to the linked contact; its old contact goes away.
                old = ctx.contact_id
                await conn.execute(
                    "UPDATE contact_addresses SET contact_id = $1 WHERE contact_id = $2",
                    target,
                    old,
                )
                await conn.execute(
                    "UPDATE submission_contacts SET contact_id = $1 WHERE contact_id = $2",
                    target,
                    old,
                )
                await conn.execute("DELETE FROM contacts WHERE id = $1", old)
                ctx.contact_id = target
        linked_locale = await self.pool.fetchval(
            "SELECT locale FROM contacts WHERE id = $1", ctx.contact_id
        )
        if linked_locale in LOCALES:
            ctx.locale = linked_locale  # answer in the language of the linked person
        if ctx.gom_id is not None:
            return Reply(
                _(
                    ctx,
                    "This chat is now linked to your GOM profile. Send MANAGE to see your orders.",
                )
            )
        return Reply(_(ctx, "This chat is now linked to your GOMFLOW orders."))

    # -- payment proofs (workflows/payment_proofs.py) -----------------------------------

    async def _proof(self, ctx: Context, args: str) -> list[Reply]:
        if self.proofs is None:
            return [Reply(_(ctx, "Sorry, I cannot take files here yet."), private=True)]
        return await self.proofs.choose(ctx, args)

    async def _payments(self, ctx: Context, args: str) -> list[Reply]:
        if ctx.gom_id is None or self.proofs is None:
            return [self._gom_only(ctx)]
        return await self.proofs.review_list(ctx)

    async def _approve(self, ctx: Context, args: str) -> list[Reply]:
        if ctx.gom_id is None or self.proofs is None:
            return [self._gom_only(ctx)]
        return await self.proofs.approve(ctx, args)

    async def _reject(self, ctx: Context, args: str) -> list[Reply]:
        if ctx.gom_id is None or self.proofs is None:
            return [self._gom_only(ctx)]
        return await self.proofs.reject(ctx, args)

    async def ask_reject_reason(self, ctx: Context, proof_id: str) -> None:
        """The GOM's next message is the reason a receipt is rejected."""
        await self._save_state(ctx, {"flow": "reject_reason", "proof_id": proof_id})

    # -- GOM commands --------------------------------------------------------------------

    async def _manage(self, ctx: Context, args: str) -> list[Reply]:
        if ctx.gom_id is None:
            return [self._gom_only(ctx)]
        entries = await order_data.gom_orders(self.pool, ctx.gom_id)
        if not entries:
            return [Reply(_(ctx, "You have no orders yet. Send CREATE to open one."), private=True)]
        replies = []
        for entry in entries:
            order: order_data.Order = entry["order"]
            lines = [
                order.title if order.is_active else _(ctx, "{title} (closed)", title=order.title),
                _(
                    ctx,
                    "Paid: {paid} · Waiting for payment: {pending}",
                    paid=entry["paid"],
                    pending=entry["pending"],
                ),
                _(ctx, "Collected: {v}", v=format_money(entry["collected"], order.currency)),
                _(ctx, "Deadline: {deadline}", deadline=self._when(ctx, order.deadline)),
            ]
            actions: tuple[tuple[Button, ...], ...] = ()
            if order.is_active:
                row = [button(_(ctx, "Close order"), f"close {order.id}")]
                if entry["pending"]:
                    row.insert(0, button(_(ctx, "Remind unpaid buyers"), f"remind {order.id}"))
                actions = (tuple(row),)
            replies.append(Reply("\n".join(lines), buttons=actions, private=True))
        replies.append(
            Reply(
                _(ctx, "Payment proofs waiting for your review:"),
                buttons=((button(_(ctx, "Review payments"), "payments"),),),
                private=True,
            )
        )
        return replies

    async def _remind(self, ctx: Context, args: str) -> list[Reply]:
        """The GOM's "send reminders now": every unpaid buyer of one order, once an hour."""
        if ctx.gom_id is None:
            return [self._gom_only(ctx)]
        order = await order_data.find_order(self.pool, args.split()[0]) if args else None
        if order is None or order.gom_id != ctx.gom_id:
            return [Reply(_(ctx, "I could not find that order among yours."), private=True)]
        if self.remind_now is None:
            return [Reply(_(ctx, "Reminders cannot be sent from here."), private=True)]
        fresh = await self.redis.set(f"gomflow:remind-now:{order.id}", "1", ex=3600, nx=True)
        if not fresh:
            return [
                Reply(
                    _(
                        ctx,
                        "Reminders for {title} went out less than an hour ago.",
                        title=order.title,
                    ),
                    private=True,
                )
            ]
        count = await self.remind_now(order.id)
        await self._audit(ctx, "order.remind", str(order.id))
        return [
            Reply(
                _(ctx, "Reminders sent to {n} buyers who have not paid yet.", n=count), private=True
            )
        ]

    async def _close(self, ctx: Context, args: str) -> list[Reply]:
        if ctx.gom_id is None:
            return [self._gom_only(ctx)]
        order = await order_data.find_order(self.pool, args.split()[0]) if args else None
        if order is None or order.gom_id != ctx.gom_id:
            return [Reply(_(ctx, "I could not find that order among yours."), private=True)]
        closed = await order_data.close_order(self.pool, order.id, ctx.gom_id)
        await self.pool.execute(
            """
            INSERT INTO audit_log (direction, actor, action, channel, subject, result, detail)
            VALUES ('admin', $1, 'order.close', $2, $3, $4, '{}'::jsonb)
            """,
            f"gom:{ctx.gom_id}",
            ctx.sender.channel,
            str(order.id),
            "closed" if closed else "already_closed",
        )
        return [Reply(_(ctx, "{title} is closed to new buyers.", title=order.title), private=True)]

    async def _create(self, ctx: Context, args: str) -> list[Reply]:
        if ctx.gom_id is None:
            return [self._gom_only(ctx)]
        if ctx.sender.supports_forms:
            return [Reply(_(ctx, "Open a new group order"), form=self._create_form(ctx))]
        await self._save_state(ctx, {"flow": "create", "step": "title", "data": {}})
        return [
            Reply(
                _(ctx, "What is the order's title?"),
                buttons=((button(_(ctx, "Cancel"), "/cancel"),),),
            )
        ]

    def _create_form(self, ctx: Context) -> Form:
        return Form(
            id="create:new",
            title=_(ctx, "Open a new group order")[:45],
            fields=(
                FormField("title", _(ctx, "Title"), max_length=100),
                FormField("price", _(ctx, "Price per item"), max_length=12, placeholder="1250"),
                FormField(
                    "currency", _(ctx, "Currency (PHP or MYR)"), max_length=3, placeholder="PHP"
                ),
                FormField(
                    "deadline",
                    _(ctx, "Deadline (YYYY-MM-DD HH:MM)"),
                    max_length=16,
                    placeholder="2026-12-24 18:00",
                ),
                FormField(
                    "max_orders", _(ctx, "Most items in total"), max_length=6, placeholder="50"
                ),
            ),
        )

    _CREATE_STEPS = ("title", "price", "currency", "deadline", "max_orders")

    def _create_prompt(self, ctx: Context, step: str) -> Reply:
        cancel = (button(_(ctx, "Cancel"), "/cancel"),)
        if step == "currency":
            return Reply(
                _(ctx, "Which currency?"),
                buttons=((button("PHP (₱)", "PHP"), button("MYR (RM)", "MYR")), cancel),
            )
        texts = {
            "price": _(ctx, "Price per item? (e.g. 1250 or 85.50)"),
            "deadline": _(ctx, "Deadline? Send it as YYYY-MM-DD HH:MM, your time."),
            "max_orders": _(ctx, "How many items at most in total?"),
        }
        return Reply(texts[step], buttons=(cancel,))

    def _create_accept(self, ctx: Context, step: str, text: str, data: dict[str, Any]) -> str:
        text = text.strip()
        if step == "title":
            if not 3 <= len(text) <= 100:
                return _(ctx, "Please send a title of 3 to 100 characters.")
            data["title"] = text
        elif step == "price":
            try:
                price = Decimal(text.replace(",", ""))
            except InvalidOperation:
                price = Decimal(-1)
            if not price.is_finite() or price <= 0 or price > Decimal("1000000"):
                return _(ctx, "Please send a price like 1250 or 85.50.")
            data["price"] = str(price)
        elif step == "currency":
            if text.upper() not in ("PHP", "MYR"):
                return _(ctx, "Please choose PHP or MYR.")
            data["currency"] = text.upper()
        elif step == "deadline":
            try:
                moment = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(
                    tzinfo=ZoneInfo(ctx.timezone)
                )
            except ValueError:
                return _(ctx, "Please send the deadline as YYYY-MM-DD HH:MM.")
            if moment <= self.clock() + timedelta(hours=1):
                return _(ctx, "The deadline must be at least an hour from now.")
            data["deadline"] = moment.isoformat()
        elif step == "max_orders":
            if not text.isdigit() or not 1 <= int(text) <= 100_000:
                return _(ctx, "Please send a whole number, like 1 or 2.")
            data["max_orders"] = int(text)
        return ""

    async def _create_step(self, ctx: Context, text: str) -> list[Reply]:
        state = ctx.state or {}
        data = state.get("data", {})
        step = state.get("step", "title")
        if step == "confirm":
            if text.lower() in _YES:
                await self._clear_state(ctx)
                return await self._open_order(ctx, data)
            return await self._cancel(ctx, "")
        problem = self._create_accept(ctx, step, text, data)
        if problem:
            return [Reply(problem)]
        index = self._CREATE_STEPS.index(step) + 1
        if index < len(self._CREATE_STEPS):
            nxt = self._CREATE_STEPS[index]
            await self._save_state(ctx, {"flow": "create", "step": nxt, "data": data})
            return [self._create_prompt(ctx, nxt)]
        await self._save_state(ctx, {"flow": "create", "step": "confirm", "data": data})
        summary = "\n".join(
            [
                _(ctx, "Open this order?"),
                data["title"],
                _(
                    ctx,
                    "Price: {price}",
                    price=format_money(Decimal(data["price"]), data["currency"]),
                ),
                _(
                    ctx,
                    "Deadline: {deadline}",
                    deadline=self._when(ctx, datetime.fromisoformat(data["deadline"])),
                ),
                _(ctx, "Most items in total: {n}", n=data["max_orders"]),
            ]
        )
        return [Reply(summary, buttons=self._confirm_buttons(ctx))]

    async def _create_from(self, ctx: Context, values: dict[str, str]) -> list[Reply]:
        data: dict[str, Any] = {}
        for step in self._CREATE_STEPS:
            problem = self._create_accept(ctx, step, values.get(step, ""), data)
            if problem:
                return [Reply(problem, private=True)]
        return await self._open_order(ctx, data)

    async def _open_order(self, ctx: Context, data: dict[str, Any]) -> list[Reply]:
        assert ctx.gom_id is not None
        slug = _slug(data["title"])
        order_id = await self.pool.fetchval(
            """
            INSERT INTO orders (user_id, title, price, currency, deadline, slug, max_orders,
                                payment_methods)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) RETURNING id
            """,
            ctx.gom_id,
            data["title"],
            Decimal(data["price"]),
            data["currency"],
            datetime.fromisoformat(data["deadline"]),
            slug,
            data["max_orders"],
            ["gcash", "maya", "bank_transfer"]
            if data["currency"] == "PHP"
            else ["maybank2u", "touch_n_go", "bank_transfer"],
        )
        await self.pool.execute(
            """
            INSERT INTO audit_log (direction, actor, action, channel, subject, result, detail)
            VALUES ('admin', $1, 'order.create', $2, $3, 'created', $4::jsonb)
            """,
            f"gom:{ctx.gom_id}",
            ctx.sender.channel,
            str(order_id),
            {"title": data["title"]},
        )
        return [
            Reply(
                _(
                    ctx,
                    "{title} is open! Buyers can join with the code {code}.",
                    title=data["title"],
                    code=slug,
                )
            )
        ]


async def _link_by_phone(conn: Connection, contact_id: UUID, phone: str) -> None:
    """A new WhatsApp contact owns the submissions made (on the web, say) with that number."""
    rows = await conn.fetch(
        """
        SELECT s.id, s.buyer_phone FROM submissions s
         WHERE right(regexp_replace(s.buyer_phone, '\\D', '', 'g'), 9) = right($1, 9)
           AND NOT EXISTS (SELECT 1 FROM submission_contacts sc WHERE sc.submission_id = s.id)
        """,
        phone,
    )
    mine = []
    for row in rows:
        try:
            if normalize_phone(row["buyer_phone"]) == phone:
                mine.append((row["id"], contact_id))
        except ValueError:
            continue
    if mine:
        await conn.executemany(
            "INSERT INTO submission_contacts (submission_id, contact_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING",
            mine,
        )


def _parse_command(text: str) -> tuple[str | None, str]:
    """``/status@gomflow_bot PH-1`` -> ("status", "PH-1"); a button action works the same."""
    match = re.match(r"^/([A-Za-z_]+)(?:@\w+)?\s*(.*)$", text, re.DOTALL)
    if match:
        return match.group(1).lower(), match.group(2).strip()
    word, _sep, rest = text.partition(" ")
    # Button actions are lowercase command lines, e.g. "submit <uuid>" or "orders 2".
    if (
        word
        in (
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
        )
        and word == word.lower()
        and (rest or word == text)
    ):
        return word, rest.strip()
    return None, ""


_ZONES = {
    "Manila": "Asia/Manila",
    "KL": "Asia/Kuala_Lumpur",
    "Singapore": "Asia/Singapore",
    "Jakarta": "Asia/Jakarta",
    "Bangkok": "Asia/Bangkok",
}


def _kinds(ctx: Context) -> tuple[str, ...]:
    """The kinds of notification this person can turn off (transactional ones they cannot)."""
    kinds: tuple[str, ...] = ("reminders", "order_updates")
    return (*kinds, "gom_alerts", "summaries") if ctx.gom_id is not None else kinds


_METHOD_NAMES = {
    "gcash": "GCash",
    "maya": "Maya",
    "paymaya": "Maya",
    "grabpay": "GrabPay",
    "shopeepay": "ShopeePay",
    "bpi": "BPI",
    "bdo": "BDO",
    "maybank2u": "Maybank2u",
    "cimb": "CIMB",
    "touch_n_go": "Touch 'n Go",
    "tng": "Touch 'n Go",
}


def _method_name(ctx: Context, method: str) -> str:
    if str(method).lower() == "bank_transfer":
        return _(ctx, "bank transfer")
    return _METHOD_NAMES.get(str(method).lower(), str(method))


def _slug(title: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:30] or "order"
    return f"{base}-{secrets.token_hex(2)}"
