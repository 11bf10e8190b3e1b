"""The event catalogue: each event's required data and how it renders into a message body."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gomflow_messaging.i18n import gettext

# What every channel can carry in one message; longer text is refused up front.
MAX_TEXT_LENGTH = 4096


class MissingData(Exception):
    """An event's data lacks a field, or a field is malformed; names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class EventSpec:
    name: str
    #: Sent even to a contact who turned that kind of notification off (not after STOP).
    transactional: bool
    render: Callable[[dict[str, Any], str], dict[str, Any]]


def _custom(data: dict[str, Any], locale: str) -> dict[str, Any]:
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise MissingData("data.text", "is required: the text to send as is")
    if len(text) > MAX_TEXT_LENGTH:
        raise MissingData("data.text", f"is longer than {MAX_TEXT_LENGTH} characters")
    body: dict[str, Any] = {"text": text}
    image_url = data.get("image_url")
    if image_url is not None:
        if not isinstance(image_url, str) or not image_url.startswith("https://"):
            raise MissingData("data.image_url", "must be an https:// URL")
        body["image_url"] = image_url
    return body


def _test(data: dict[str, Any], locale: str) -> dict[str, Any]:
    at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    return {
        "text": gettext(locale, "GOMFLOW test message: this channel works. Sent {at} UTC.", at=at)
    }


EVENTS: dict[str, EventSpec] = {
    spec.name: spec
    for spec in (
        EventSpec("custom", transactional=False, render=_custom),
        EventSpec("test", transactional=True, render=_test),
    )
}

LOCALES = ("en", "fil", "ms")


def render(event: str, data: dict[str, Any], locale: str) -> dict[str, Any]:
    """The stored message body: text, buttons, image, template; plus event and locale."""
    body = EVENTS[event].render(data, locale)
    body["event"] = event
    body["locale"] = locale
    return body
