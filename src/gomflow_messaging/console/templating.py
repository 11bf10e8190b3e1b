"""One templating set-up for the console: Starlette's Jinja2 templates (autoescaped), the
viewer's language (``_``/``ngettext`` over the bot's catalogues), their clock and money, the
security headers every console answer carries, and the words for statuses and reasons."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.templating import Jinja2Templates

from gomflow_messaging.i18n import format_moment, gettext, ngettext
from gomflow_messaging.money import format_money

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

    from starlette.requests import Request
    from starlette.responses import Response

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


class Words:
    """Statuses and reasons in the viewer's language."""

    def __init__(self, locale: str) -> None:
        self.locale = locale

    def payment(self, status: str) -> str:
        names = {
            "pending": gettext(self.locale, "waiting for payment"),
            "paid": gettext(self.locale, "paid"),
            "failed": gettext(self.locale, "payment failed"),
            "expired": gettext(self.locale, "expired"),
            "cancelled": gettext(self.locale, "cancelled"),
        }
        return names.get(status, status)

    def message(self, status: str) -> str:
        names = {
            "": gettext(self.locale, "no message yet"),
            "queued": gettext(self.locale, "queued"),
            "sending": gettext(self.locale, "sending"),
            "sent": gettext(self.locale, "sent"),
            "delivered": gettext(self.locale, "delivered"),
            "read": gettext(self.locale, "read"),
            "failed": gettext(self.locale, "failed"),
            "skipped": gettext(self.locale, "skipped"),
        }
        return names.get(status, status)

    def reason(self, code: str) -> str:
        """Why a message failed or was skipped, as a GOM says it."""
        if not code:
            return ""
        outside = gettext(self.locale, "outside WhatsApp's 24 hours")
        gone = gettext(self.locale, "the chat no longer exists")
        names = {
            "blocked": gettext(self.locale, "blocked the bot"),
            "outside_window": outside,
            "template_required": outside,
            "opted_out": gettext(self.locale, "opted out"),
            "preference_off": gettext(self.locale, "turned these messages off"),
            "unreachable": gettext(self.locale, "no chat can reach them"),
            "no_address": gettext(self.locale, "no chat known"),
            "channel_disabled": gettext(self.locale, "that chat is switched off here"),
            "chat_not_found": gone,
            "not_found": gone,
            "invalid_address": gone,
            "bad_address": gone,
            "daily_cap": gettext(self.locale, "the chat's daily limit was reached"),
        }
        return names.get(code, code)


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

    def money(amount: Decimal, currency: str) -> str:
        return format_money(amount, currency)

    values: dict[str, Any] = {
        "viewer": viewer,
        "lang": locale,
        "_": partial(gettext, locale),
        "ngettext": partial(ngettext, locale),
        "when": when,
        "money": money,
        "words": Words(locale),
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    return secure(response)
