"""A bot reply on WhatsApp: its buttons as numbered choices, answered with a digit.

WhatsApp free text has no buttons. Under the text, each button with an action becomes a
numbered line ("1. Pay (PAY)") and a link button a line with its URL, then "Reply with a
number."; the person answers with the number, or types the keyword. The actions of the last
numbered list shown to a person live in Redis (`Choices`: shared by replicas, under the
deployment's prefix, forgotten with the conversation), so that their next "2" presses the
second button. While a step-by-step flow waits for an answer, "2" is that answer (a quantity):
then the buttons are the words to reply ("Confirm: reply CONFIRM") and nothing is numbered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gomflow_messaging.channels.base import choices_key
from gomflow_messaging.i18n import gettext

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gomflow_messaging.channels.base import Button

#: As long as a conversation lasts (CONVERSATION_TTL): an older list is no longer in view.
CHOICES_TTL = 3600
#: A choice shows what to type too when that is this short ("PAY", "STATUS PH-AB12CD34"); an
#: order's id ("SUBMIT 3f2a...") helps nobody, and the number is enough.
MAX_SHOWN_COMMAND = 24

_COMMAND = re.compile(r"^/?([A-Za-z_]+)(.*)$", re.DOTALL)


def typed_command(action: str) -> str:
    """A button's action as a person types it: ``submit x`` -> ``SUBMIT x``."""
    action = action.strip()
    match = _COMMAND.match(action)
    return match.group(1).upper() + match.group(2) if match else action.upper()


def button_line(button: Button, locale: str) -> str:
    """A button as a line a buyer can act on: a link, or the words to reply."""
    if button.url:
        return f"{button.label}: {button.url}"
    command = typed_command(button.action)
    return gettext(locale, "{label}: reply {command}", label=button.label, command=command)


def choice_line(number: int, button: Button) -> str:
    """``1. Pay (PAY)``: the number to answer with, and the keyword when it helps."""
    command = typed_command(button.action)
    if len(command) <= MAX_SHOWN_COMMAND:
        return f"{number}. {button.label} ({command})"
    return f"{number}. {button.label}"


@dataclass(frozen=True)
class Rendered:
    text: str
    #: The actions of its numbered choices, choice ``first`` first.
    actions: tuple[str, ...] = ()


def render(
    text: str,
    buttons: tuple[tuple[Button, ...], ...],
    locale: str,
    *,
    numbered: bool = False,
    first: int = 1,
) -> Rendered:
    """The text with its buttons under it: choices numbered from ``first``, or reply lines."""
    flat = [b for row in buttons for b in row]
    if not flat:
        return Rendered(text)
    lines: list[str] = []
    actions: list[str] = []
    for b in flat:
        if numbered and not b.url:
            actions.append(b.action)
            lines.append(choice_line(first + len(actions) - 1, b))
        else:
            lines.append(button_line(b, locale))
    if actions:
        lines.append(gettext(locale, "Reply with a number."))
    return Rendered((text + "\n\n" if text else "") + "\n".join(lines), tuple(actions))


class Choices:
    """The actions of the last numbered list shown to each person, in Redis."""

    def __init__(self, redis: Redis, queue_name: str) -> None:
        self._redis = redis
        self._queue_name = queue_name

    async def remember(self, address: str, actions: tuple[str, ...]) -> None:
        """The list just shown replaces the last; an answer without one forgets it."""
        key = choices_key(self._queue_name, "whatsapp", address)
        if actions:
            await self._redis.set(key, json.dumps(actions), ex=CHOICES_TTL)
        else:
            await self._redis.delete(key)

    async def action(self, address: str, number: int) -> str | None:
        """The action of choice ``number`` (1 is the first), or None: no list, out of range."""
        raw = await self._redis.get(choices_key(self._queue_name, "whatsapp", address))
        if not raw:
            return None
        actions = json.loads(raw)
        if not isinstance(actions, list) or not 1 <= number <= len(actions):
            return None
        return str(actions[number - 1])
