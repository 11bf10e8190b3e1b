"""Translations: gettext catalogues (locales/<lang>/LC_MESSAGES/messages.po) read with Babel.

English is the source text. A missing or empty translation falls back to English, never to
a key. Translators edit the .po files; `make i18n` re-extracts new strings into them.
Times and examples shown to a person follow their language and time zone (`format_moment`,
`format_clock`, `example_mobile`), so nobody reads UTC or another country's phone number.
A button's text is marked with `label` (not `gettext`): chats cut button titles at
`MAX_LABEL` characters, so `make i18n-check` and the tests hold every translation of one
to that length.
"""

from __future__ import annotations

import functools
import gettext as _gettext
from collections.abc import Callable
from datetime import datetime, time
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from babel.dates import format_datetime, format_time, get_timezone_location
from babel.messages.pofile import read_po

#: Our languages, named once: request models take ``Locale``, everything else ``LOCALES``.
Locale = Literal["en", "fil", "ms"]
LOCALES: tuple[Locale, ...] = get_args(Locale)
DEFAULT_LOCALE = "en"
LANGUAGE_NAMES = {"en": "English", "fil": "Filipino", "ms": "Bahasa Melayu"}
#: The Babel (CLDR) locale for dates and times: our buyers are in the Philippines and Malaysia.
BABEL_LOCALES = {"en": "en_PH", "fil": "fil_PH", "ms": "ms_MY"}
#: One 12-hour style everywhere (deadlines, quiet hours), as people say it: "5:30 PM" in
#: English and Filipino, the day period in Malay ("11:59 malam", "5:30 petang"), where
#: Malaysians write no AM/PM. A moment names its zone briefly ("30 Nov 2026, 5:30 PM PH
#: time"), so a deadline is never ambiguous.
DATE_FORMAT = "d MMM yyyy, "
CLOCK_FORMATS = {"en": "h:mm a", "fil": "h:mm a", "ms": "h:mm B"}
#: Chats cut a button's title here (Messenger, WhatsApp Cloud API buttons).
MAX_LABEL = 20
#: A new person's zone until they choose one: Malaysia's for Malay speakers and +60 numbers.
DEFAULT_TIMEZONE = "Asia/Manila"
MALAYSIA_TIMEZONE = "Asia/Kuala_Lumpur"
#: Example mobile numbers in each country's usual local writing. Not a seeded demo buyer's
#: number (a buyer who copies the example must not reach someone else's chat).
_EXAMPLE_MOBILES = {"PH": "0905 123 4567", "MY": "011-2345 6789"}
_MALAYSIAN_ZONES = {"Asia/Kuala_Lumpur", "Asia/Kuching"}
_DIR = Path(__file__).parent / "locales"

#: msgid (singular) -> (the translated forms, the catalogue's plural rule).
_Plurals = dict[str, tuple[tuple[str, ...], Callable[[int], int]]]


@functools.cache
def _read(locale: str) -> tuple[dict[str, str], _Plurals]:
    path = _DIR / locale / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return {}, {}
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    # The rule comes from the catalogue's own Plural-Forms header, as gettext reads it.
    rule = _gettext.c2py(catalog.plural_expr)
    singles: dict[str, str] = {}
    plurals: _Plurals = {}
    for message in catalog:
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, str):
            if isinstance(message.string, str) and message.string:
                singles[message.id] = message.string
        elif isinstance(message.string, (list, tuple)) and all(message.string):
            plurals[str(message.id[0])] = (tuple(str(s) for s in message.string), rule)
    return singles, plurals


def normalize_locale(value: str | None) -> str:
    """Map a platform's language hint (``en-US``, ``tl``, ``ms-MY``) to one of ours."""
    if not value:
        return DEFAULT_LOCALE
    base = value.replace("_", "-").split("-")[0].lower()
    base = {"tl": "fil", "fil": "fil", "ms": "ms", "id": "ms"}.get(base, base)
    return base if base in LOCALES else DEFAULT_LOCALE


def gettext(locale: str, message: str, **values: Any) -> str:
    """The translation of ``message`` (English) with ``{placeholders}`` filled in."""
    text = _read(locale)[0].get(message, message) if locale != DEFAULT_LOCALE else message
    return text.format(**values) if values else text


def label(locale: str, message: str, **values: Any) -> str:
    """`gettext` for a button's text: every translation fits `MAX_LABEL` characters.

    `make i18n` marks these msgids for translators and `make i18n-check` warns on one that
    is too long in any language (scripts/i18n_labels.py finds them by this name).
    """
    return gettext(locale, message, **values)


def ngettext(locale: str, singular: str, plural: str, n: int, /, **values: Any) -> str:
    """The form of ``singular``/``plural`` (English) that fits the count ``n``, filled in.

    ``n`` only chooses the form; pass the count again as a placeholder value when the text
    shows it (``ngettext(loc, "{n} buyer", "{n} buyers", n, n=n)``).
    """
    entry = _read(locale)[1].get(singular) if locale != DEFAULT_LOCALE else None
    if entry is None:
        text = singular if n == 1 else plural
    else:
        forms, rule = entry
        text = forms[min(rule(n), len(forms) - 1)]
    return text.format(**values) if values else text


def _babel(locale: str) -> str:
    return BABEL_LOCALES.get(locale, BABEL_LOCALES[DEFAULT_LOCALE])


def format_moment(locale: str, moment: datetime, timezone: str) -> str:
    """A date and time on the person's clock, with its zone: ``30 Nov 2026, 5:30 PM PH time``."""
    zone = ZoneInfo(timezone)
    pattern = DATE_FORMAT + CLOCK_FORMATS.get(locale, CLOCK_FORMATS[DEFAULT_LOCALE])
    text = format_datetime(moment, pattern, tzinfo=zone, locale=_babel(locale))
    return f"{text} {zone_name(locale, timezone)}"


def format_clock(locale: str, value: time) -> str:
    """A time of day (already local, such as quiet hours) in the same 12-hour style."""
    return format_time(
        value, CLOCK_FORMATS.get(locale, CLOCK_FORMATS[DEFAULT_LOCALE]), locale=_babel(locale)
    )


#: A zone as people name it after a time (English source, marked for `make i18n`); other
#: zones get CLDR's "<country> Time".
_ZONE_NAMES = {
    "Asia/Manila": gettext("en", "PH time"),
    "Asia/Kuala_Lumpur": gettext("en", "Malaysia time"),
    "Asia/Kuching": gettext("en", "Malaysia time"),
    "Asia/Singapore": gettext("en", "Singapore time"),
    "Asia/Jakarta": gettext("en", "Jakarta time"),
    "Asia/Bangkok": gettext("en", "Thailand time"),
}


def zone_name(locale: str, timezone: str) -> str:
    """A zone as said after a time: "PH time", "waktu Malaysia", "oras sa PH"."""
    known = _ZONE_NAMES.get(timezone)
    if known is not None:
        return gettext(locale, known)
    return str(get_timezone_location(ZoneInfo(timezone), locale=_babel(locale)))


def zone_place(locale: str, timezone: str) -> str:
    """A zone as a place, for settings: "Kuala Lumpur", not ``Asia/Kuala_Lumpur``."""
    return str(get_timezone_location(ZoneInfo(timezone), locale=_babel(locale), return_city=True))


def default_timezone(locale: str, phone: str = "") -> str:
    """The zone of someone who has not chosen one: their language's or number's country."""
    if locale == "ms" or phone.startswith("+60"):
        return MALAYSIA_TIMEZONE
    return DEFAULT_TIMEZONE


def example_mobile(locale: str, timezone: str) -> str:
    """A mobile number to show as an example, from the person's own country.

    The language says it first (Malay: Malaysia, Filipino: the Philippines); for English the
    time zone decides, since the default zone (Manila) says little about a Malay speaker.
    """
    if locale == "ms" or (locale != "fil" and timezone in _MALAYSIAN_ZONES):
        return _EXAMPLE_MOBILES["MY"]
    return _EXAMPLE_MOBILES["PH"]
