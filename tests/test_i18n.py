"""Translations: complete fil and ms catalogues, placeholders kept, the .pot in sync with code."""

from __future__ import annotations

import ast
import re
import string
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.frontend import CommandLineInterface, parse_mapping_cfg
from babel.messages.pofile import read_po

from gomflow_messaging import demo as demo_data
from gomflow_messaging.i18n import LOCALES, example_mobile, gettext, ngettext
from gomflow_messaging.phones import normalize_phone
from gomflow_messaging.settings import Settings
from gomflow_messaging.workflows.events import RenderContext, render
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
    """The English texts; a plural entry by its singular (its msgid)."""
    return {_forms(message.id)[0] for message in catalog if message.id}


def _placeholders(text: str) -> set[str]:
    return {name for _literal, name, _spec, _conv in string.Formatter().parse(text) if name}


def _forms(value: Any) -> list[str]:
    """A msgid or msgstr as a list: one item, or one per plural form."""
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _untranslated(message: Any) -> bool:
    return not all(_forms(message.string))


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
    untranslated = sorted(str(m.id) for m in catalog if m.id and _untranslated(m))
    fuzzy = sorted(str(m.id) for m in catalog if m.id and m.fuzzy)
    assert not untranslated, f"{locale}: no translation for {untranslated}. {RUN_MAKE}"
    # Fuzzy entries are guesses from `pybabel update`; at run time they count as untranslated.
    assert not fuzzy, f"{locale}: fuzzy (unchecked) translations for {fuzzy}; review them."


@pytest.mark.parametrize("locale", TRANSLATED)
def test_translations_keep_the_placeholders(locale: str) -> None:
    wrong = {}
    for m in _po(locale):
        if not m.id:
            continue
        # Each form keeps the placeholders of the singular or of the plural English text.
        allowed = [_placeholders(text) for text in _forms(m.id)]
        for form in _forms(m.string):
            if _placeholders(form) not in allowed:
                wrong[str(m.id)] = ([sorted(a) for a in allowed], sorted(_placeholders(form)))
    assert not wrong, f"{locale}: placeholders differ (msgid, msgstr): {wrong}"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_plurals_have_every_form_of_the_language(locale: str) -> None:
    catalog = _po(locale)
    expected = {"fil": (2, "(n != 1)"), "ms": (1, "0")}[locale]
    assert (catalog.num_plurals, catalog.plural_expr) == expected
    plurals = [m for m in catalog if m.id and isinstance(m.id, (list, tuple))]
    assert plurals, "no plural entries: counts are written with ngettext"
    wrong = {str(m.id[0]): len(_forms(m.string)) for m in plurals}
    assert all(n == catalog.num_plurals for n in wrong.values()), wrong


@pytest.mark.parametrize("locale", TRANSLATED)
def test_catalogues_compile_with_checks(locale: str, tmp_path: Path) -> None:
    """What `make lint` runs: `pybabel compile` checks formats and plural forms.

    A source text like "{percent}% full" is flagged python-format ("% f"), and then no
    translation of it compiles; so is every msgstr whose placeholders differ.
    """
    errors = [
        (str(message.id), [str(e) for e in problems]) for message, problems in _po(locale).check()
    ]
    assert not errors, f"{locale}: the catalogue does not compile: {errors}"
    po = LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po"
    out = tmp_path / f"{locale}.mo"
    status = CommandLineInterface().run(
        ["pybabel", "-q", "compile", "-l", locale, "-i", str(po), "-o", str(out)]
    )
    assert status == 0 and out.stat().st_size > 0


def test_no_source_text_reads_as_a_percent_format() -> None:
    flagged = sorted(str(m.id) for m in _read(POT) if m.id and "python-format" in m.flags)
    assert not flagged, f"reword so no tool reads them as % formats: {flagged}"


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
    assert gettext("ms", "Open orders") == "GO dibuka"
    assert gettext("fil", "Open orders") == "Mga open na GO"
    assert gettext("ms", "Price: {price}", price="RM85.00") == "Harga: RM85.00"
    assert gettext("en", "Open orders") == "Open orders"
    assert gettext("ms", "Done! I will write to you in English.").endswith("Bahasa Melayu.")
    assert gettext("fil", "Done! I will write to you in English.").endswith("Filipino.")


DEMO_PHP_ORDER = "00000000-0000-4000-8000-00000000a001"
REMINDED = (
    "Reminder sent to {n} buyer who has not paid yet.",
    "Reminders sent to {n} buyers who have not paid yet.",
)


def test_plurals_say_1_buyer_and_2_buyers() -> None:
    assert ngettext("en", *REMINDED, 1, n=1) == "Reminder sent to 1 buyer who has not paid yet."
    assert ngettext("en", *REMINDED, 2, n=2) == "Reminders sent to 2 buyers who have not paid yet."
    assert ngettext("en", *REMINDED, 0, n=0).startswith("Reminders sent to 0 buyers ")
    assert ngettext("fil", *REMINDED, 1, n=1) == (
        "Na-send ang reminder sa 1 buyer na hindi pa nagbabayad."
    )
    assert ngettext("fil", *REMINDED, 2, n=2) == (
        "Na-send ang reminder sa 2 buyers na hindi pa nagbabayad."
    )
    # Malay has one form: the noun does not change with the count.
    for n in (1, 2, 21):
        assert ngettext("ms", *REMINDED, n, n=n) == (
            f"Reminder dihantar kepada {n} pembeli yang belum bayar."
        )
    # Not in the catalogues: English, by the English rule.
    assert ngettext("ms", "{n} cat", "{n} cats", 1, n=1) == "1 cat"
    assert ngettext("fil", "{n} cat", "{n} cats", 3, n=3) == "3 cats"


def test_alerts_use_the_plural_of_their_count() -> None:
    deadline = {"order_title": "BTS Album", "deadline": "2026-12-01T10:00:00+00:00"}
    counts = {"paid": 3, "pending": 2}

    def text(event: str, locale: str, **data: Any) -> str:
        context = RenderContext(locale=locale, timezone="Asia/Manila")
        # The last line: the first is the title.
        return str(render(event, {**deadline, **counts, **data}, context)["text"]).split("\n")[-1]

    assert text("deadline_alert", "en", hours=1).startswith("BTS Album closes in under 1 hour (")
    assert text("deadline_alert", "en", hours="6").startswith("BTS Album closes in under 6 hours (")
    assert text("deadline_alert", "ms", hours=2).startswith(
        "BTS Album akan tutup dalam masa kurang 2 jam"
    )
    assert text("submissions_digest", "en", count=1, orders="BTS Album").startswith(
        "1 new submission in"
    )
    assert text("submissions_digest", "fil", count=4, orders="BTS Album").startswith(
        "4 bagong orders"
    )
    with pytest.raises(Exception, match="whole number"):
        text("deadline_alert", "en", hours="soon")


def test_times_are_on_the_person_clock_never_utc() -> None:
    template = [str(m.id) for m in _read(POT) if m.id]
    assert not [t for t in template if "UTC" in t]
    assert not [t for t in template if re.search(r"\b([01]\d|2[0-3]):[0-5]\d\b", t)]
    now = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)
    sent = render("test", {}, RenderContext(locale="ms", timezone="Asia/Kuala_Lumpur", now=now))
    assert sent["text"].endswith("Dihantar 30 Nov 2026, 5:30 petang waktu Malaysia.")
    sent = render("test", {}, RenderContext(locale="en", timezone="Asia/Manila", now=now))
    assert sent["text"].endswith("Sent 30 Nov 2026, 5:30 PM PH time.")


def test_example_numbers_come_from_the_person_country() -> None:
    seeded = {b["phone"] for b in demo_data.BUYERS}
    cases = {
        ("ms", "Asia/Manila"): "+60",
        ("en", "Asia/Kuala_Lumpur"): "+60",
        ("fil", "Asia/Kuala_Lumpur"): "+63",
        ("en", "Asia/Manila"): "+63",
    }
    for (locale, zone), prefix in cases.items():
        number = normalize_phone(example_mobile(locale, zone))
        assert number.startswith(prefix), (locale, zone, number)
        assert number not in seeded
    # No text carries a number of its own: the example is filled in per person.
    template = [str(m.id) for m in _read(POT) if m.id]
    assert not [t for t in template if re.search(r"\+6[03]|\b0\d{3} \d{3}", t)]


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
        assert replies[0]["text"].startswith("GO dibuka (halaman 1 daripada ")
        cards = [r for r in replies[1:] if "BLACKPINK Lightstick v2" in r["text"]]
        assert len(cards) == 1
        assert "Harga: RM" in cards[0]["text"]
        deadline = r"Deadline: \d+ \w+ \d{4}, \d{1,2}:\d\d (pagi|tengah hari|petang|malam) waktu "
        assert re.search(deadline, cards[0]["text"])
        assert cards[0]["buttons"][0][0]["label"] == "Sertai GO ini"

        help_reply = await _say(client, address, "/help")
        assert "/orders - Lihat GO yang dibuka" in help_reply[0]["text"]
        labels = [b["label"] for row in help_reply[0]["buttons"] for b in row]
        assert labels == ["GO dibuka", "Order saya", "Bayar", "Tetapan"]

        await _say(client, address, "/lang fil")
        replies = await _say(client, address, "/orders")
        assert replies[0]["text"].startswith("Mga open na GO (page 1 ng ")

        # Quiet hours on the same 12-hour clock as deadlines; the phone example is Philippine.
        settings_reply = await _say(client, address, "quiet 22-8")
        assert "Quiet hours: 10:00 PM hanggang 8:00 AM" in settings_reply[0]["text"]
        await _say(client, address, f"submit {DEMO_PHP_ORDER}")
        asked = await _say(client, address, "Ana Cruz")
        assert asked[0]["text"] == "Ano ang mobile number mo? (hal. 0905 123 4567)"
        await _say(client, address, "cancel")

        await _say(client, address, "/lang ms")
        settings_reply = await _say(client, address, "/settings")
        assert "Waktu senyap: 10:00 malam hingga 8:00 pagi" in settings_reply[0]["text"]
        labels = [b["label"] for row in settings_reply[0]["buttons"] for b in row]
        assert "Senyap waktu malam" in labels
        assert "Update status order" in settings_reply[0]["text"]
        await _say(client, address, f"submit {DEMO_PHP_ORDER}")
        asked = await _say(client, address, "Ana Cruz")
        assert asked[0]["text"] == "Apa nombor telefon anda? (cth. 011-2345 6789)"
        wrong = await _say(client, address, "12345")
        assert wrong[0]["text"].endswith("Cuba tulis begini, cth. 011-2345 6789.")
