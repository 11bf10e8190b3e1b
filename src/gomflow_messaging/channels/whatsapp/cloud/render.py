"""A bot reply as WhatsApp Cloud API messages: real buttons or a list, within Meta's limits.

Up to 3 buttons with an action become reply buttons (titles <= 20 characters, unique, ids
<= 256 bytes); 4 to 10 become a list (row titles <= 24, ids <= 200, the button that opens it
<= 20); what does not fit (links, an eleventh choice, an action too long for an id) becomes
a line saying what to reply, as on Twilio. A tap sends the button's id back: its action.
Text goes in parts of 4,096 characters; an interactive body holds 1,024, so longer text goes
first as text and the buttons ride on its last part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gomflow_messaging.channels.base import split_text
from gomflow_messaging.channels.whatsapp.render import button_line
from gomflow_messaging.i18n import gettext

if TYPE_CHECKING:
    from gomflow_messaging.channels.base import Button

MAX_TEXT = 4096
MAX_BODY = 1024
MAX_CAPTION = 1024
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_ROWS = 10
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72
MAX_ROW_ID = 200


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unique(titles: list[str], limit: int) -> list[str]:
    """Titles cut to ``limit``, made unique (Meta refuses two equal titles) by a number."""
    seen: set[str] = set()
    unique = []
    for index, title in enumerate(titles, 1):
        cut = _cut(title, limit)
        if cut in seen:
            suffix = f" {index}"
            cut = _cut(title, limit - len(suffix)) + suffix
        seen.add(cut)
        unique.append(cut)
    return unique


def render(
    text: str, buttons: tuple[tuple[Button, ...], ...], locale: str, image_url: str = ""
) -> list[dict[str, Any]]:
    """The message objects (``type`` and its field) that carry this reply, in order."""
    flat = [b for row in buttons for b in row]
    choices = [b for b in flat if b.action and not b.url and len(b.action.encode()) <= MAX_ROW_ID][
        :MAX_ROWS
    ]
    lines = [button_line(b, locale) for b in flat if b not in choices]
    if lines:
        text = (text + "\n\n" if text else "") + "\n".join(lines)
    messages: list[dict[str, Any]] = []
    if image_url:
        image: dict[str, Any] = {"link": image_url}
        if text and len(text) <= MAX_CAPTION and not choices:
            image["caption"], text = text, ""
        messages.append({"type": "image", "image": image})
    if not choices:
        messages += [
            {"type": "text", "text": {"body": part, "preview_url": False}}
            for part in split_text(text, MAX_TEXT)
        ]
        return messages
    parts = split_text(text, MAX_BODY) or [gettext(locale, "Choose one:")]
    *before, body = parts
    messages += [{"type": "text", "text": {"body": part, "preview_url": False}} for part in before]
    messages.append({"type": "interactive", "interactive": _interactive(body, choices, locale)})
    return messages


def _interactive(body: str, choices: list[Button], locale: str) -> dict[str, Any]:
    if len(choices) <= MAX_BUTTONS:
        titles = _unique([b.label for b in choices], MAX_BUTTON_TITLE)
        return {
            "type": "button",
            "body": {"text": body},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": b.action, "title": title}}
                    for b, title in zip(choices, titles, strict=True)
                ]
            },
        }
    titles = _unique([b.label for b in choices], MAX_ROW_TITLE)
    rows = []
    for b, title in zip(choices, titles, strict=True):
        row = {"id": b.action, "title": title}
        if len(b.label) > MAX_ROW_TITLE:
            row["description"] = _cut(b.label, MAX_ROW_DESCRIPTION)
        rows.append(row)
    return {
        "type": "list",
        "body": {"text": body},
        "action": {
            # Translators: the button that opens a WhatsApp list of choices; <= 20 characters.
            "button": _cut(gettext(locale, "Choose"), MAX_BUTTON_TITLE),
            "sections": [{"title": _cut(gettext(locale, "Choices"), MAX_ROW_TITLE), "rows": rows}],
        },
    }
