"""Translations: complete fil and ms catalogues, placeholders kept, the .pot in sync with code."""

from __future__ import annotations

import ast
import string
import uuid
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.frontend import CommandLineInterface, parse_mapping_cfg
from babel.messages.pofile import read_po

from gomflow_messaging.i18n import LOCALES, gettext
from gomflow_messaging.settings import Settings
from tests.helpers import AUTH, running_app

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gomflow_messaging"
LOCALES_DIR = PACKAGE / "locales"
POT = LOCALES_DIR / "messages.pot"
TRANSLATED = [code for code in LOCALES if code != "en"]
RUN_MAKE = (
    "Run `make i18n` (it extracts the marked strings into locales/messages.pot and merges them "
    "into the fil and ms .po files), then translate every empty or fuzzy msgstr."
)


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def _po(locale: str) -> Catalog:
    return _read(LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po", locale)


def _ids(catalog: Catalog) -> set[str]:
    return {str(message.id) for message in catalog if message.id}


def _placeholders(text: str) -> set[str]:
    return {name for _literal, name, _spec, _conv in string.Formatter().parse(text) if name}


def _extract(tmp_path: Path) -> Catalog:
    """What `make i18n` extracts now: same mapping file, same source folder."""
    out = tmp_path / "extracted.pot"
    cli = CommandLineInterface()
    cli.run(
        ["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-o", str(out), str(PACKAGE)]
    )
    return _read(out)


@pytest.mark.parametrize("locale", TRANSLATED)
def test_every_message_is_translated(locale: str) -> None:
    catalog = _po(locale)
    assert _ids(catalog), f"{locale}: empty catalogue"
    untranslated = sorted(str(m.id) for m in catalog if m.id and not m.string)
    fuzzy = sorted(str(m.id) for m in catalog if m.id and m.fuzzy)
    assert not untranslated, f"{locale}: no translation for {untranslated}. {RUN_MAKE}"
    # Fuzzy entries are guesses from `pybabel update`; at run time they count as untranslated.
    assert not fuzzy, f"{locale}: fuzzy (unchecked) translations for {fuzzy}; review them."


@pytest.mark.parametrize("locale", TRANSLATED)
def test_translations_keep_the_placeholders(locale: str) -> None:
    wrong = {
        str(m.id): (sorted(_placeholders(str(m.id))), sorted(_placeholders(str(m.string))))
        for m in _po(locale)
        if m.id and _placeholders(str(m.id)) != _placeholders(str(m.string))
    }
    assert not wrong, f"{locale}: placeholders differ (msgid, msgstr): {wrong}"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_catalogues_follow_the_template(locale: str) -> None:
    template, catalog = _ids(_read(POT)), _ids(_po(locale))
    assert catalog == template, (
        f"{locale}: missing {sorted(template - catalog)}, stale {sorted(catalog - template)}. "
        + RUN_MAKE
    )


def test_template_is_in_sync_with_the_code(tmp_path: Path) -> None:
    extracted, template = _ids(_extract(tmp_path)), _ids(_read(POT))
    new, gone = sorted(extracted - template), sorted(template - extracted)
    assert not new and not gone, (
        f"locales/messages.pot is out of date: new in the code {new}, no longer in the code "
        f"{gone}. " + RUN_MAKE
    )


def test_extraction_sees_every_marked_string(tmp_path: Path) -> None:
    """pybabel on Python 3.11 skips a `_(ctx, "...")` written inside an f-string."""
    with (ROOT / "babel.cfg").open() as cfg:
        _methods, options = parse_mapping_cfg(cfg)
    keywords: dict[str, tuple[int, ...]] = options["**.py"]["keywords"]
    marked: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            spec = keywords.get(node.func.id)
            if spec is None or len(node.args) < spec[0]:
                continue
            arg = node.args[spec[0] - 1]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                marked[arg.value] = f"{path.relative_to(ROOT)}:{node.lineno}"
    assert len(marked) > 100
    extracted = _ids(_extract(tmp_path))
    unseen = {text: where for text, where in marked.items() if text not in extracted}
    assert not unseen, (
        f"pybabel does not extract {unseen}: is the call inside an f-string? "
        "Move it out (e.g. into a variable) so translators get the string."
    )


def test_gettext_reads_the_catalogues() -> None:
    assert gettext("ms", "Open orders") == "Pesanan terbuka"
    assert gettext("fil", "Open orders") == "Mga bukas na order"
    assert gettext("ms", "Price: {price}", price="RM85.00") == "Harga: RM85.00"
    assert gettext("en", "Open orders") == "Open orders"
    assert gettext("ms", "Done! I will write to you in English.").endswith("Bahasa Melayu.")
    assert gettext("fil", "Done! I will write to you in English.").endswith("Filipino.")


def test_unknown_messages_and_locales_fall_back_to_english() -> None:
    assert gettext("ms", "Nobody translated {what}", what="this") == "Nobody translated this"
    assert gettext("xx", "Open orders") == "Open orders"


async def _say(client: Any, address: str, text: str) -> list[dict[str, Any]]:
    response = await client.post(
        "/api/sandbox/inbound", json={"address": address, "text": text}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    replies: list[dict[str, Any]] = response.json()["replies"]
    assert replies
    return replies


async def test_bot_answers_in_the_language_the_buyer_chose(
    settings: Settings, demo: dict[str, Any]
) -> None:
    address = f"i18n-{uuid.uuid4().hex[:8]}"
    async with running_app(settings) as client:
        before = await _say(client, address, "/orders")
        assert before[0]["text"].startswith("Open orders (page 1 of ")

        done = await _say(client, address, "/lang ms")
        assert done[0]["text"] == "Siap! Saya akan menulis kepada anda dalam Bahasa Melayu."

        replies = await _say(client, address, "/orders")
        assert replies[0]["text"].startswith("Pesanan terbuka (halaman 1 daripada ")
        cards = [r for r in replies[1:] if "BLACKPINK Lightstick v2" in r["text"]]
        assert len(cards) == 1
        assert "Harga: RM" in cards[0]["text"]
        assert "Tarikh akhir: " in cards[0]["text"]
        assert cards[0]["buttons"][0][0]["label"] == "Sertai pesanan ini"

        help_reply = await _say(client, address, "/help")
        assert "/orders - Lihat pesanan berkumpulan yang dibuka" in help_reply[0]["text"]
        labels = [b["label"] for row in help_reply[0]["buttons"] for b in row]
        assert labels == ["Pesanan terbuka", "Pesanan saya", "Bayar", "Tetapan"]

        await _say(client, address, "/lang fil")
        replies = await _say(client, address, "/orders")
        assert replies[0]["text"].startswith("Mga bukas na order (page 1 ng ")
