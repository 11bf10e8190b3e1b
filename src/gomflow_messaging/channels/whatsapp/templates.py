"""`whatsapp-templates`: the approved templates sent outside WhatsApp's 24-hour window.

Twilio's provider names a Content SID (``HX…``), Meta's Cloud API a template name approved in
WhatsApp Manager (``gomflow_payment_confirmed``); the mapping is the same for both.

One per event and language (`*` for any event without its own). ``variables`` maps the
template's numbered placeholders to our values: ``{text}``, or an event's fields such as
``{order_title}``, ``{reference}``, ``{amount}``, ``{deadline}`` (see README, Events).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from gomflow_messaging.channels.whatsapp.window import META_TEMPLATE_NAME, TWILIO_CONTENT_SID
from gomflow_messaging.i18n import LOCALES
from gomflow_messaging.workflows.events import EVENTS

if TYPE_CHECKING:
    from gomflow_messaging.db import Connection


class TemplateError(Exception):
    """A template definition that cannot work; the message says what to change."""


def parse_variables(pairs: list[str]) -> dict[str, str]:
    """``["1={order_title}", "2={reference}"]`` -> ``{"1": "{order_title}", ...}``."""
    variables: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isdigit() or not value:
            raise TemplateError(f"--var {pair!r}: write it as NUMBER=VALUE, e.g. 1={{reference}}")
        variables[key.strip()] = value
    return variables


def check(
    event: str,
    locale: str,
    content_sid: str,
    variables: dict[str, str],
    provider: str = "twilio",
) -> None:
    if event != "*" and event not in EVENTS:
        raise TemplateError(f"unknown event {event!r}; known: *, {', '.join(sorted(EVENTS))}")
    if locale not in LOCALES:
        raise TemplateError(f"locale must be one of {', '.join(LOCALES)}")
    if provider == "cloud":
        if not META_TEMPLATE_NAME.fullmatch(content_sid):
            raise TemplateError(
                "TEMPLATE must be the name of a template approved in Meta's WhatsApp Manager"
                " (lower-case letters, digits and _)"
            )
    elif not TWILIO_CONTENT_SID.fullmatch(content_sid):
        raise TemplateError("CONTENT_SID must be Twilio's HX followed by 32 hex digits")
    known = {"text", "event", "locale", "title"}
    if event != "*":
        known |= {f.name for f in EVENTS[event].fields}
    for key, pattern in variables.items():
        for name in re.findall(r"\{([a-z_]+)\}", pattern):
            if name not in known:
                raise TemplateError(
                    f"variable {key}: {{{name}}} is not a value of {event}; "
                    f"use one of {', '.join(sorted(known))}"
                )


async def set_template(
    conn: Connection,
    event: str,
    locale: str,
    content_sid: str,
    variables: dict[str, str],
    provider: str = "twilio",
) -> None:
    check(event, locale, content_sid, variables, provider)
    await conn.execute(
        """
        INSERT INTO whatsapp_templates (event, locale, content_sid, variables)
        VALUES ($1, $2, $3, $4::jsonb)
        ON CONFLICT (event, locale) DO UPDATE
           SET content_sid = excluded.content_sid, variables = excluded.variables,
               updated_at = now()
        """,
        event,
        locale,
        content_sid,
        variables,
    )


async def list_templates(conn: Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT event, locale, content_sid, variables FROM whatsapp_templates"
        " ORDER BY event, locale"
    )
    return [dict(r) for r in rows]


async def delete_template(conn: Connection, event: str, locale: str) -> bool:
    status = await conn.execute(
        "DELETE FROM whatsapp_templates WHERE event = $1 AND locale = $2", event, locale
    )
    return status.endswith(" 1")
