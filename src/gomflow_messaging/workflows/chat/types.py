"""What chats and the chat bot exchange: who wrote, files, forms, replies, the command list.

Channel adapters build a `Sender` (and an `IncomingFile`) and render `Reply`s; nothing here
touches a database, so a chat (or the CLI registering commands) can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from gomflow_messaging.channels.base import Button
from gomflow_messaging.i18n import gettext

if TYPE_CHECKING:
    from gomflow_messaging.workflows.chat.conversation import Conversation

#: Commands a deep link may carry (``/start status``): a group sends people to their own
#: chat with the bot this way. Never ``start`` or ``link``: their argument is a link code.
DEEP_LINK_COMMANDS = frozenset(
    {"status", "pay", "settings", "submit", "manage", "dashboard", "payments", "create", "console"}
)
MAX_CALLBACK_BYTES = 64


@dataclass(frozen=True)
class Sender:
    """Who wrote (the person) and from where (the chat).

    ``address`` is the PERSON on this channel: the key of their contact, GOM rights, link
    codes and conversation state, and where their private answers go (a Telegram user id,
    which is also their private chat's id; a Discord user id; a WhatsApp number). ``chat``
    is the group it came from (a Telegram group, a Discord server channel), "" for the
    person's own chat. Every member of a group writes from the same chat, so nothing about
    who may do what is ever taken from ``chat``.
    """

    channel: str
    address: str
    name: str = ""
    #: The platform's language hint (Telegram's language_code, Discord's locale).
    language: str = ""
    #: The chat can show a form with all fields at once (Discord modals).
    supports_forms: bool = False
    #: The chat says this user holds the configured GOM role (Discord guilds).
    gom_role: bool = False
    #: The group the message came from; "" when it came from the person's own chat.
    chat: str = ""
    #: The chat shows several order cards in one message (Discord embeds), so a list
    #: comes as one Reply with ``cards`` and a longer page.
    supports_cards: bool = False
    #: People type keywords here, not slash commands (WhatsApp): ``ORDERS``, not ``/orders``.
    keywords: bool = False

    def __post_init__(self) -> None:
        # Postgres stores no NUL character; a chat may still carry one.
        for name in ("address", "name", "language", "chat"):
            value = getattr(self, name)
            if "\x00" in value:
                object.__setattr__(self, name, no_nul(value))

    @property
    def in_group(self) -> bool:
        return bool(self.chat)


def no_nul(text: str) -> str:
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
class Card:
    """One order as a chat with rich cards shows it (a Discord embed): fields, not lines."""

    title: str
    #: (label, value) pairs, translated.
    fields: tuple[tuple[str, str], ...]
    #: The card's own action (join this order), shown with it.
    button: Button | None = None


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    image_url: str = ""
    form: Form | None = None
    #: Only the sender should see it (Discord ephemeral); other chats are private anyway.
    private: bool = False
    #: Cards shown in the same message, for chats with ``Sender.supports_cards``.
    cards: tuple[Card, ...] = ()


@dataclass(frozen=True)
class CommandInfo:
    name: str
    description: str
    gom_only: bool = False
    #: Takes one free-text argument (Discord renders it as an option).
    argument: str = ""
    #: Takes a file too (Discord renders an attachment option; other chats just send one).
    attachment: str = ""
    #: What to type as the argument (shown while typing it on Discord; 1-100 characters).
    argument_help: str = ""
    attachment_help: str = ""
    #: The argument is offered as choices while it is typed (Discord autocomplete).
    suggest: bool = False


# Descriptions are English source text; `Bot.menu` translates them. ``gettext("en", ...)``
# is that source text too, marked so that `make i18n` extracts the options' help.
COMMANDS: tuple[CommandInfo, ...] = (
    CommandInfo("start", "Welcome and main menu"),
    CommandInfo("help", "What I can do"),
    CommandInfo("orders", "Browse open group orders"),
    CommandInfo(
        "submit",
        "Join a group order",
        argument="order",
        argument_help=gettext("en", "The order to join: type part of its title or code"),
        suggest=True,
    ),
    CommandInfo(
        "status",
        "Your orders and payment status",
        argument="reference",
        argument_help=gettext("en", "One of your payment references, e.g. PH-AB12CD34 (optional)"),
        suggest=True,
    ),
    CommandInfo(
        "pay",
        "How to pay, and sending your receipt",
        argument="reference",
        attachment="receipt",
        argument_help=gettext("en", "The payment reference you are paying for (optional)"),
        attachment_help=gettext("en", "A screenshot or PDF of your payment"),
        suggest=True,
    ),
    CommandInfo("settings", "Language and notifications"),
    CommandInfo(
        "link",
        "Link this chat with a code from GOMFLOW",
        argument="code",
        argument_help=gettext("en", "The link code from your GOMFLOW page, e.g. AB12CD34EF"),
    ),
    CommandInfo("stop", "Stop reminders and updates"),
    CommandInfo("cancel", "Cancel what we are doing"),
    CommandInfo("manage", "Your orders: counts, close an order", gom_only=True),
    CommandInfo("dashboard", "Your orders at a glance: payments, reminders, proofs", gom_only=True),
    CommandInfo("create", "Open a new group order", gom_only=True),
    CommandInfo("payments", "Payment proofs waiting for your review", gom_only=True),
    CommandInfo("console", "A sign-in link to your web console", gom_only=True),
)


def command_menu(locale: str, *, gom: bool = False) -> list[CommandInfo]:
    """`Bot.menu` without a Bot: for the CLI, which registers commands without a database."""

    def tr(text: str) -> str:
        return gettext(locale, text) if text else ""

    return [
        replace(
            c,
            description=tr(c.description),
            argument_help=tr(c.argument_help),
            attachment_help=tr(c.attachment_help),
        )
        for c in COMMANDS
        if gom or not c.gom_only
    ]


@dataclass
class Context:
    """One message being answered: who, their contact, language and rights, their state."""

    sender: Sender
    contact_id: UUID
    locale: str
    timezone: str
    gom_id: UUID | None
    opted_out: bool
    #: This person's conversation in this chat (a flow such as joining an order), in Redis.
    conversation: Conversation
    state: dict[str, Any] | None = None
    values: dict[str, Any] = field(default_factory=dict)


def button(label: str, action: str) -> Button:
    if len(action.encode()) > MAX_CALLBACK_BYTES:
        raise ValueError(f"button action longer than {MAX_CALLBACK_BYTES} bytes: {action!r}")
    return Button(label=label, action=action)


Handler = Callable[[Context, str], Awaitable[list[Reply]]]


class Proofs(Protocol):
    """What the bot needs of payment proofs (workflows/proofs): each answers with Replies."""

    async def receive(self, ctx: Context, file: IncomingFile, caption: str) -> list[Reply]: ...

    async def choose(self, ctx: Context, args: str) -> list[Reply]: ...

    async def review_list(self, ctx: Context, args: str = "") -> list[Reply]: ...

    async def approve(self, ctx: Context, args: str) -> list[Reply]: ...

    async def reject(self, ctx: Context, args: str) -> list[Reply]: ...


#: A chat became a GOM's (True: linked) or stopped being served as one (False: STOP), so
#: its chat can show or hide the GOM commands. Never raises.
GomChat = Callable[[Sender, bool], Awaitable[None]]
