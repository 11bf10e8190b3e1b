"""Translations: gettext catalogues (locales/<lang>/LC_MESSAGES/messages.po) read with Babel.

English is the source text. A missing or empty translation falls back to English, never to
a key. Translators edit the .po files; `make i18n` re-extracts new strings into them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

LOCALES = ("en", "fil", "ms")
DEFAULT_LOCALE = "en"
LANGUAGE_NAMES = {"en": "English", "fil": "Filipino", "ms": "Bahasa Melayu"}
_DIR = Path(__file__).parent / "locales"


@functools.cache
def _catalog(locale: str) -> dict[str, str]:
    path = _DIR / locale / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    return {
        str(message.id): str(message.string)
        for message in catalog
        if message.id and isinstance(message.string, str) and message.string and not message.fuzzy
    }


def normalize_locale(value: str | None) -> str:
    """Map a platform's language hint (``en-US``, ``tl``, ``ms-MY``) to one of ours."""
    if not value:
        return DEFAULT_LOCALE
    base = value.replace("_", "-").split("-")[0].lower()
    base = {"tl": "fil", "fil": "fil", "ms": "ms", "id": "ms"}.get(base, base)
    return base if base in LOCALES else DEFAULT_LOCALE


def gettext(locale: str, message: str, **values: Any) -> str:
    """The translation of ``message`` (English) with ``{placeholders}`` filled in."""
    text = _catalog(locale).get(message, message) if locale != DEFAULT_LOCALE else message
    return text.format(**values) if values else text
