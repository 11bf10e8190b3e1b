"""WhatsApp's 24-hour window and its templates, the same whichever provider sends.

WhatsApp lets a business send free text only within 24 hours of the person's last message
(`contact_addresses.last_inbound_at`); after that only an approved template may go out.
The ``whatsapp_templates`` mapping (``whatsapp-templates set``) serves both providers: its
``content_sid`` is Twilio's ``HX…`` Content SID or the name of a template approved in Meta's
WhatsApp Manager, and ``variables`` maps the numbered placeholders to our values. Without
a template the message is skipped (``template_required``), never sent to fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gomflow_messaging.errors import PermanentError, SkipMessage

if TYPE_CHECKING:
    from gomflow_messaging.channels.base import OutboundMessage
    from gomflow_messaging.db import Pool

PLATFORM = "whatsapp"
#: The customer-service window, less a margin: a message queued at the very edge would
#: otherwise fail later (Twilio's 63016, Meta's 131047).
WINDOW_SECONDS = 24 * 3600 - 300
#: WhatsApp refuses template variables with newlines or longer than this.
MAX_VARIABLE_LENGTH = 1000
TWILIO_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
#: Meta's template names: lower-case letters, digits and underscores.
META_TEMPLATE_NAME = re.compile(r"[a-z0-9_]{1,512}")


@dataclass(frozen=True)
class Template:
    """The approved template for one message: its name (or Content SID) and values."""

    name: str
    #: The language it was approved in (the buyer's, else English).
    locale: str
    #: Placeholder number -> its value, in the placeholders' order.
    variables: dict[str, str]


async def in_window(pool: Pool, address: str) -> bool:
    inside: bool | None = await pool.fetchval(
        """
        SELECT last_inbound_at > now() - make_interval(secs => $2)
          FROM contact_addresses WHERE channel = 'whatsapp' AND address = $1
        """,
        address,
        WINDOW_SECONDS,
    )
    return bool(inside)


async def template_for(pool: Pool, message: OutboundMessage, pattern: re.Pattern[str]) -> Template:
    """The approved template for this event and language, or skip: WhatsApp needs one.

    An event's own template comes before the catch-all ``*``; the buyer's language before
    English (an English template carrying text in the buyer's language beats silence).
    ``pattern`` is what the provider can send (a Twilio SID, a Meta name): a row of the
    other kind is no template for it.
    """
    event = message.template.name if message.template else message.event
    row = await pool.fetchrow(
        """
        SELECT content_sid, locale, variables FROM whatsapp_templates
         WHERE event IN ($1, '*') AND locale IN ($2, 'en')
         ORDER BY event = '*', locale <> $2
         LIMIT 1
        """,
        event,
        message.locale,
    )
    if row is None or not pattern.fullmatch(row["content_sid"]):
        raise SkipMessage(
            f"outside the 24-hour window and no approved template for {event}/{message.locale}",
            code="template_required",
            platform=PLATFORM,
        )
    values: dict[str, Any] = {
        "text": message.text,
        "event": message.event,
        "locale": message.locale,
        **{k: v for k, v in message.extra.items() if isinstance(v, str | int | float)},
        **(message.template.variables if message.template else {}),
    }
    variables: dict[str, str] = {}
    for key, pattern_text in sorted(row["variables"].items(), key=lambda kv: _number(kv[0])):
        try:
            value = str(pattern_text).format_map(values)
        except (KeyError, IndexError, ValueError) as exc:
            raise PermanentError(
                f"template {row['content_sid']} variable {key}: {pattern_text!r} needs {exc}",
                code="template_misconfigured",
                platform=PLATFORM,
            ) from None
        value = " ".join(value.split())
        if len(value) > MAX_VARIABLE_LENGTH:
            value = value[: MAX_VARIABLE_LENGTH - 1] + "…"
        variables[str(key)] = value
    return Template(row["content_sid"], row["locale"], variables)


def _number(key: str) -> int:
    return int(key) if key.isdigit() else 0
