"""How a message looks on Discord: escaped text, embeds, cards and button rows."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hikari
from hikari.impl import MessageActionRowBuilder

from gomflow_messaging.channels.base import (
    Button,
    CardLike,
    OutboundMessage,
    split_text,
)

log = logging.getLogger(__name__)

MAX_CONTENT = 2000
MAX_DESCRIPTION = 4096
MAX_TITLE = 256
MAX_LABEL = 80
MAX_CUSTOM_ID = 100
MAX_ROWS = 5
MAX_PER_ROW = 5
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_OPTION_DESCRIPTION = 100
EPHEMERAL = int(hikari.MessageFlag.EPHEMERAL)

#: Colour hints a workflow may put in ``OutboundMessage.extra["colour"]`` (or "#rrggbb").
COLOURS = {
    "default": 0x5865F2,
    "info": 0x5865F2,
    "blue": 0x3498DB,
    "green": 0x2ECC71,
    "success": 0x2ECC71,
    "orange": 0xE67E22,
    "warning": 0xE67E22,
    "red": 0xE74C3C,
    "danger": 0xE74C3C,
    "grey": 0x95A5A6,
    "gray": 0x95A5A6,
}


# Our texts are plain, and names, notes, addresses and titles in them are typed by buyers
# and GOMs: everything shown on Discord is escaped, so none of it renders as markdown.
# A backslash before any ASCII punctuation shows that character as written (Discord's
# rule), so escaping more than needed costs length, never meaning.
# Parentheses need none: without "[...]" they make no masked link.
_MARKDOWN = re.compile(r"([\\*_~`|\[\]<>#])")
# Markers that count only at the start of a line: bullets, and numbers of a numbered list.
_BULLET = re.compile(r"^(\s*)([-+])(?=\s)", re.MULTILINE)
_NUMBERED = re.compile(r"^(\s*\d+)\.(?=\s)", re.MULTILINE)
# @everyone and @here: a zero-width space breaks them (allowed_mentions is empty as well).
_MASS_MENTION = re.compile(r"@(everyone|here)", re.IGNORECASE)


def escape_markdown(text: str) -> str:
    """Plain text as Discord shows it literally: no markdown, masked links, mentions or pings."""
    text = _MARKDOWN.sub(r"\\\1", text)
    text = _BULLET.sub(r"\1\\\2", text)
    text = _NUMBERED.sub(r"\1\\.", text)
    return _MASS_MENTION.sub("@\u200b\\1", text)


@dataclass(frozen=True)
class Rendered:
    """One Discord message: what create_message, a follow-up or an interaction answer sends."""

    content: str = ""
    embeds: tuple[hikari.Embed, ...] = ()
    rows: tuple[MessageActionRowBuilder, ...] = ()
    ephemeral: bool = False


def action_rows(buttons: Sequence[Sequence[Button]]) -> tuple[MessageActionRowBuilder, ...]:
    """Our button rows as Discord action rows: at most 5 rows of 5, one custom id each.

    A button's custom id is its action (a command line the bot understands), so a button
    keeps working after a restart and on any replica. An action repeated in one message
    is dropped: Discord refuses duplicate custom ids, and it would do the same thing.
    More than 5 rows (settings: languages, kinds, quiet hours, zones) are packed 5 to a
    row rather than cut, so no choice goes missing.
    """
    rows: list[list[Button]] = []
    seen: set[str] = set()
    for row in buttons:
        kept: list[Button] = []
        for item in row:
            key = item.url or item.action
            if not key or key in seen:
                continue
            if not item.url and len(item.action) > MAX_CUSTOM_ID:
                log.warning("button action too long for Discord, dropped: %r", item.action[:120])
                continue
            seen.add(key)
            kept.append(item)
        rows += [kept[i : i + MAX_PER_ROW] for i in range(0, len(kept), MAX_PER_ROW)]
    if len(rows) > MAX_ROWS:
        every = [item for row in rows for item in row]
        rows = [every[i : i + MAX_PER_ROW] for i in range(0, len(every), MAX_PER_ROW)]
    if len(rows) > MAX_ROWS:
        log.warning("%d button rows for Discord; the last %d dropped", len(rows), len(rows) - 5)
    built = []
    for row in rows[:MAX_ROWS]:
        builder = MessageActionRowBuilder()
        for item in row:
            label = item.label[:MAX_LABEL] or "…"
            if item.url:
                builder.add_link_button(item.url, label=label)
            else:
                builder.add_interactive_button(
                    hikari.ButtonStyle.SECONDARY, item.action, label=label
                )
        built.append(builder)
    return tuple(built)


def colour_of(hint: Any) -> int | None:
    """A colour hint: a name from COLOURS, "#rrggbb", or an int."""
    if isinstance(hint, bool) or hint is None:
        return None
    if isinstance(hint, int):
        return hint if 0 <= hint <= 0xFFFFFF else None
    if isinstance(hint, str):
        hint = hint.strip().lower()
        if hint in COLOURS:
            return COLOURS[hint]
        if hint.startswith("#") and len(hint) == 7:
            try:
                return int(hint[1:], 16)
            except ValueError:
                return None
    return None


def render_outbound(message: OutboundMessage) -> list[Rendered]:
    """A notification as Discord messages: embeds by default, split to Discord's limits.

    ``extra``: ``title`` (else a multi-line text's first line), ``colour``/``color`` (a
    hint, see COLOURS), ``embed`` (False: plain content, cut at 2000 characters).
    Buttons go under the last part; an image shows in the first embed.
    """
    extra = message.extra or {}
    rows = action_rows(message.buttons)
    if extra.get("embed", True) is False:
        parts = split_text(escape_markdown(message.text), MAX_CONTENT) or [""]
        rendered = [Rendered(content=part) for part in parts]
        if message.image_url:
            rendered[-1] = Rendered(
                content=rendered[-1].content,
                embeds=(hikari.Embed().set_image(message.image_url),),
            )
    else:
        title = str(extra.get("title") or "")
        text = message.text
        first, newline, rest = text.partition("\n")
        if not title and newline and rest.strip() and len(first.strip()) <= MAX_TITLE:
            title, text = first.strip(), rest
        title = escape_markdown(title)[:MAX_TITLE]
        text = escape_markdown(text)
        colour = colour_of(extra.get("colour", extra.get("color")))
        descriptions: list[str | None] = list(split_text(text, MAX_DESCRIPTION)) or [None]
        rendered = []
        for index, description in enumerate(descriptions):
            embed = hikari.Embed(
                title=title if index == 0 and title else None,
                description=description or None,
                colour=colour,
            )
            if index == 0 and message.image_url:
                embed.set_image(message.image_url)
            rendered.append(Rendered(embeds=(embed,)))
    last = rendered[-1]
    rendered[-1] = Rendered(content=last.content, embeds=last.embeds, rows=rows)
    return rendered


def render_text(
    text: str,
    buttons: Sequence[Sequence[Button]] = (),
    *,
    image_url: str = "",
    ephemeral: bool = False,
) -> list[Rendered]:
    """A chat reply as plain messages: content cut at 2000 characters, buttons on the last."""
    parts = split_text(escape_markdown(text), MAX_CONTENT) or [""]
    rendered = [Rendered(content=part, ephemeral=ephemeral) for part in parts]
    embeds = (hikari.Embed().set_image(image_url),) if image_url else ()
    rendered[-1] = Rendered(
        content=rendered[-1].content,
        embeds=embeds,
        rows=action_rows(buttons),
        ephemeral=ephemeral,
    )
    return rendered


def card_embed(card: CardLike) -> hikari.Embed:
    """A card as an embed: its title, and each (label, value) as an inline field."""
    embed = hikari.Embed(
        title=escape_markdown(card.title[:MAX_TITLE])[:MAX_TITLE] or None,
        colour=COLOURS["default"],
    )
    for name, value in card.fields[:MAX_FIELDS]:
        embed.add_field(
            escape_markdown(name)[:MAX_FIELD_NAME] or "-",
            escape_markdown(value)[:MAX_FIELD_VALUE] or "-",
            inline=True,
        )
    return embed


def embed_length(embed: hikari.Embed) -> int:
    """What Discord counts towards the 6,000 characters of a message's embeds."""
    texts = [embed.title, embed.description]
    texts += [t for f in embed.fields for t in (f.name, f.value)]
    if embed.footer is not None:
        texts.append(embed.footer.text)
    if embed.author is not None:
        texts.append(embed.author.name)
    return sum(len(t or "") for t in texts)


def render_cards(
    text: str,
    cards: Sequence[CardLike],
    buttons: Sequence[Sequence[Button]] = (),
    *,
    ephemeral: bool = False,
) -> list[Rendered]:
    """A list of cards as one message of embeds, or as few as Discord's limits allow.

    A message holds at most 10 embeds and 6,000 characters of embed text; each card's
    button goes under its own message (rows of 5), ``text`` above the first and
    ``buttons`` (paging) under the last.
    """
    groups: list[list[CardLike]] = [[]]
    used = 0
    for card in cards:
        size = embed_length(card_embed(card))
        if groups[-1] and (len(groups[-1]) == MAX_EMBEDS or used + size > MAX_EMBED_TOTAL):
            groups.append([])
            used = 0
        groups[-1].append(card)
        used += size
    content = split_text(escape_markdown(text), MAX_CONTENT) if text else []
    rendered = [Rendered(content=part, ephemeral=ephemeral) for part in content[:-1]]
    for index, group in enumerate(groups):
        own = [card.button for card in group if card.button is not None]
        rows = [own[i : i + MAX_PER_ROW] for i in range(0, len(own), MAX_PER_ROW)]
        if index == len(groups) - 1:
            rows += [list(row) for row in buttons]
        rendered.append(
            Rendered(
                content=content[-1] if index == 0 and content else "",
                embeds=tuple(card_embed(card) for card in group),
                rows=action_rows(rows),
                ephemeral=ephemeral,
            )
        )
    return rendered
