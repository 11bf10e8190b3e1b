"""One templating set-up for the console: Starlette's Jinja2 templates (autoescaped), the
viewer's language (``_``/``ngettext`` over the bot's catalogues), their clock and money, the
security headers every console answer carries, and the words for statuses and reasons."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.templating import Jinja2Templates

from gomflow_messaging.i18n import format_moment, gettext, ngettext
from gomflow_messaging.money import format_money

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal
    from uuid import UUID

    from starlette.requests import Request
    from starlette.responses import Response

    from gomflow_messaging.console.queries import Buyer
    from gomflow_messaging.console.sessions import Viewer

PACKAGE = Path(__file__).parent
templates = Jinja2Templates(directory=PACKAGE / "templates")

#: No inline script or style anywhere: scripts and styles come from /console/static only.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def secure(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


@functools.lru_cache(maxsize=4096)
def _money(amount: Decimal, currency: str) -> str:
    """An order's amounts repeat (price times a few quantities): Babel formats each once."""
    return format_money(amount, currency)


class Words:
    """Statuses and reasons in the viewer's language (looked up once per page, not per row)."""

    def __init__(self, locale: str) -> None:
        def tr(text: str) -> str:
            return gettext(locale, text)

        self._payment = {
            "pending": tr("waiting for payment"),
            "paid": tr("paid"),
            "failed": tr("payment failed"),
            "expired": tr("expired"),
            "cancelled": tr("cancelled"),
        }
        self._message = {
            "": tr("no message yet"),
            "queued": tr("queued"),
            "sending": tr("sending"),
            "sent": tr("sent"),
            "delivered": tr("delivered"),
            "read": tr("read"),
            "failed": tr("failed"),
            "skipped": tr("skipped"),
        }
        outside = tr("outside WhatsApp's 24 hours")
        gone = tr("the chat no longer exists")
        self._reason = {
            "": "",
            "blocked": tr("blocked the bot"),
            "outside_window": outside,
            "template_required": outside,
            "opted_out": tr("opted out"),
            "preference_off": tr("turned these messages off"),
            "unreachable": tr("no chat can reach them"),
            "no_address": tr("no chat known"),
            "channel_disabled": tr("that chat is switched off here"),
            "chat_not_found": gone,
            "not_found": gone,
            "invalid_address": gone,
            "bad_address": gone,
            "daily_cap": tr("the chat's daily limit was reached"),
        }

    def payment(self, status: str) -> str:
        return self._payment.get(status, status)

    def message(self, status: str) -> str:
        return self._message.get(status, status)

    def reason(self, code: str) -> str:
        """Why a message failed or was skipped, as a GOM says it."""
        return self._reason.get(code, code)


@dataclass(frozen=True, slots=True)
class BuyerRow:
    """One buyer as the order page shows them, formatted once in Python: the page has a
    row per buyer (1,000 and more), and a call from a template costs several times more."""

    id: UUID
    name: str
    reference: str
    quantity: int
    amount: str
    status: str
    payment: str
    chats: str
    unreachable: bool
    message_id: UUID | None
    message_status: str
    message: str
    detail: str


def buyer_rows(buyers: list[Buyer], locale: str, timezone: str) -> list[BuyerRow]:
    words = Words(locale)
    rows = []
    for b in buyers:
        detail = f" ({b.message_channel})" if b.message_channel else ""
        if b.message_reason:
            detail += ": " + words.reason(b.message_reason)
        if b.message_waits_until is not None:
            until = format_moment(locale, b.message_waits_until, timezone)
            detail += ": " + gettext(locale, "held for quiet hours until {when}", when=until)
        rows.append(
            BuyerRow(
                id=b.submission_id,
                name=b.name,
                reference=b.reference,
                quantity=b.quantity,
                amount=_money(b.amount, b.currency),
                status=b.status,
                payment=words.payment(b.status),
                chats=", ".join(b.chats),
                unreachable=b.unreachable,
                message_id=b.message_id,
                message_status=b.message_status or "none",
                message=words.message(b.message_status),
                detail=detail,
            )
        )
    return rows


def render(
    request: Request,
    viewer: Viewer | None,
    name: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    locale: str = "en",
) -> Response:
    """The page ``name`` in the viewer's language, with the security headers."""
    locale = viewer.locale if viewer is not None else locale
    timezone = viewer.timezone if viewer is not None else "Asia/Manila"

    def when(moment: datetime | None) -> str:
        return format_moment(locale, moment, timezone) if moment is not None else ""

    values: dict[str, Any] = {
        "viewer": viewer,
        "lang": locale,
        "_": functools.partial(gettext, locale),
        "ngettext": functools.partial(ngettext, locale),
        "when": when,
        "money": _money,
        "words": Words(locale),
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    return secure(response)
