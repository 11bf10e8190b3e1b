"""A message or a bot reply as Send API ``message`` objects, within Messenger's limits.

Text goes in parts of at most 2,000 characters. Buttons: up to three under a short text
become a button template (they stay pressable and come back as postbacks); otherwise links
become button templates of three and actions become quick replies (at most 13) on the last
message, the rest in further templates. Order cards become a generic-template carousel of
at most 10 elements. Titles are cut to Meta's 20 (buttons) and 80 (cards) characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gomflow_messaging.channels.base import Button, CardLike, split_text

if TYPE_CHECKING:
    from gomflow_messaging.channels.base import OutboundMessage

MAX_TEXT = 2000
#: A button template's text.
MAX_TEMPLATE_TEXT = 640
MAX_QUICK_REPLIES = 13
MAX_TEMPLATE_BUTTONS = 3
MAX_ELEMENTS = 10
MAX_BUTTON_TITLE = 20
MAX_ELEMENT_TEXT = 80
MAX_PAYLOAD = 1000
#: The text of a template that only carries buttons left over from the message above it.
MORE = "…"


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def button_json(button: Button) -> dict[str, Any]:
    title = _cut(button.label, MAX_BUTTON_TITLE) or "·"
    if button.url:
        return {"type": "web_url", "url": button.url, "title": title}
    return {"type": "postback", "title": title, "payload": button.action[:MAX_PAYLOAD]}


def quick_reply_json(button: Button) -> dict[str, Any]:
    return {
        "content_type": "text",
        "title": _cut(button.label, MAX_BUTTON_TITLE) or "·",
        "payload": button.action[:MAX_PAYLOAD],
    }


def _template(text: str, buttons: Sequence[Button]) -> dict[str, Any]:
    return {
        "attachment": {
            "type": "template",
            "payload": {
                "template_type": "button",
                "text": text,
                "buttons": [button_json(b) for b in buttons],
            },
        }
    }


def _chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def image_json(url: str) -> dict[str, Any]:
    return {"attachment": {"type": "image", "payload": {"url": url, "is_reusable": False}}}


def carousel_json(cards: Sequence[CardLike]) -> list[dict[str, Any]]:
    """Generic templates of at most 10 elements: title, the fields as subtitle, one button."""
    messages = []
    for chunk in _chunks(cards, MAX_ELEMENTS):
        elements = []
        for card in chunk:
            element: dict[str, Any] = {
                "title": _cut(card.title, MAX_ELEMENT_TEXT) or "·",
                "subtitle": _cut(" · ".join(f"{k}: {v}" for k, v in card.fields), MAX_ELEMENT_TEXT),
            }
            if card.button is not None:
                element["buttons"] = [button_json(card.button)]
            elements.append(element)
        messages.append(
            {
                "attachment": {
                    "type": "template",
                    "payload": {"template_type": "generic", "elements": elements},
                }
            }
        )
    return messages


def render(
    text: str,
    buttons: tuple[tuple[Button, ...], ...] = (),
    image_url: str = "",
    cards: Sequence[CardLike] = (),
) -> list[dict[str, Any]]:
    """The ``message`` objects to send, in order; never empty."""
    flat = [b for row in buttons for b in row]
    messages: list[dict[str, Any]] = []
    if image_url:
        messages.append(image_json(image_url))
    if flat and len(flat) <= MAX_TEMPLATE_BUTTONS and 0 < len(text) <= MAX_TEMPLATE_TEXT:
        messages.append(_template(text, flat))
        messages += carousel_json(cards)
        return messages
    messages += [{"text": part} for part in split_text(text, MAX_TEXT)]
    messages += carousel_json(cards)
    links = [b for b in flat if b.url]
    actions = [b for b in flat if not b.url]
    quick = actions[:MAX_QUICK_REPLIES]
    rest = links + actions[MAX_QUICK_REPLIES:]
    messages += [_template(MORE, chunk) for chunk in _chunks(rest, MAX_TEMPLATE_BUTTONS)]
    if quick:
        if not messages:
            messages.append({"text": MORE})
        messages[-1]["quick_replies"] = [quick_reply_json(b) for b in quick]
    return messages or [{"text": MORE}]


def render_message(message: OutboundMessage) -> list[dict[str, Any]]:
    return render(message.text, message.buttons, message.image_url)


def visible_text(message: dict[str, Any]) -> str:
    """The words a ``message`` object shows (for logs and the fake's records)."""
    if "text" in message:
        return str(message["text"])
    payload = message.get("attachment", {}).get("payload", {})
    return str(payload.get("text", ""))
