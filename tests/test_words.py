"""Words people read: button labels that fit every chat, times as people say them.

Messenger and the WhatsApp Cloud API cut a button's title at 20 characters, so every menu
the bot shows is walked here in English, Filipino and Malay, as a buyer and as a GOM.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
import uuid
from datetime import UTC, datetime, time
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
from babel.messages.pofile import read_po

from gomflow_messaging.i18n import LOCALES, MAX_LABEL, format_clock, format_moment
from gomflow_messaging.settings import Settings
from gomflow_messaging.workflows.events import EVENTS, RenderContext, render
from tests.helpers import AUTH, running_app
from tests.test_payment_proofs import PDF, send_file

ROOT = Path(__file__).resolve().parents[1]
PHP_ORDER = "00000000-0000-4000-8000-00000000a001"
GOM_ID = "00000000-0000-4000-8000-000000000001"


def _labels_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("i18n_labels", ROOT / "scripts/i18n_labels.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Person:
    """A sandbox chat user writing in one language; keeps every button label it was shown."""

    def __init__(self, client: httpx.AsyncClient, language: str, labels: dict[str, str]):
        self.client = client
        self.address = f"words-{uuid.uuid4().hex[:10]}"
        self.language = language
        self.labels = labels

    async def say(self, text: str) -> list[dict[str, Any]]:
        response = await self.client.post(
            "/api/sandbox/inbound",
            headers=AUTH,
            json={"address": self.address, "text": text, "language": self.language},
        )
        assert response.status_code == 200, response.text
        replies: list[dict[str, Any]] = response.json()["replies"]
        for reply in replies:
            buttons = [b for row in reply["buttons"] for b in row]
            buttons += [c["button"] for c in reply["cards"] if c.get("button")]
            for b in buttons:
                self.labels.setdefault(b["label"], f"{self.language}: {text!r}")
        return replies


def _actions(replies: list[dict[str, Any]], prefix: str) -> list[str]:
    found = [b["action"] for r in replies for row in r["buttons"] for b in row]
    return [a for a in found if a.startswith(prefix)]


async def _walk_buyer(buyer: Person) -> None:
    for text in ("/start", "/help", "/orders", "/orders 2", f"order {PHP_ORDER}", "/submit"):
        await buyer.say(text)
    # Joining an order: every step's buttons (cancel, skip, confirm), then what follows.
    await buyer.say(f"submit {PHP_ORDER}")
    await buyer.say("Ana Cruz")
    await buyer.say(f"0917 {secrets.randbelow(1000):03d} {secrets.randbelow(10_000):04d}")
    await buyer.say("1")
    await buyer.say("12 Katipunan Ave, Quezon City")
    await buyer.say("skip")
    await buyer.say("confirm")
    for text in ("/status", "/pay", "/settings", "notify reminders off"):
        await buyer.say(text)
    await buyer.say("notify order_updates off")  # the settings now offer both "on" again
    await send_file(buyer.client, buyer.address, PDF, name="r.pdf", mime="application/pdf")
    await buyer.say("/stop")
    await buyer.say("/settings")  # stopped: one button turns everything on
    await buyer.say("/start")


async def _walk_gom(gom: Person) -> None:
    code = (
        await gom.client.post("/api/link-tokens", headers=AUTH, json={"gom_id": GOM_ID})
    ).json()["code"]
    await gom.say(f"link {code}")  # the offer: Confirm / Cancel
    await gom.say("link confirm")
    # The chat is now the demo GOM's contact: speak this language, and leave it as it was.
    await gom.say(f"/lang {gom.language}")
    manage = await gom.say("/manage")
    for holds in _actions(manage, "holds ")[:1]:
        listing = await gom.say(holds)  # a button per unpaid reference
        for cancel in _actions(listing, "cancelhold ")[:1]:
            await gom.say(cancel)  # the confirmation's buttons; not confirmed
    for text in ("/dashboard", "/settings", "notify gom_alerts off"):
        await gom.say(text)
    await gom.say("notify summaries off")
    listing = await gom.say("/payments")
    for reject in _actions(listing, "reject ")[:1]:
        await gom.say(reject)  # the reasons to choose from
        await gom.say(f"{reject} other")
        await gom.say("cancel")
    await gom.say("/create")
    for answer in ("Words Test Photobook", "980"):
        await gom.say(answer)  # now the currency buttons
    await gom.say("cancel")
    for text in ("notify gom_alerts on", "notify summaries on", "/lang en"):
        await gom.say(text)


def _event_labels(locale: str) -> dict[str, str]:
    data = {
        "reference": "PH-AB12CD34",
        "order_title": "BTS Album",
        "amount": "1250.00",
        "currency": "PHP",
        "deadline": "2026-12-08T15:59:00+00:00",
        "expires_at": "2026-12-09T15:59:00+00:00",
        "buyer_name": "Ana",
        "quantity": 1,
        "reason": "unreadable",
        "status": "closed",
        "hours": 1,
        "paid": 1,
        "pending": 1,
        "count": 1,
        "orders": "BTS Album (1)",
        "filled": 1,
        "max_orders": 10,
        "percent": 10,
        "period": "daily",
        "new_submissions": 1,
        "payments": 1,
        "collected": "₱1,250.00",
        "text": "hi",
    }
    found = {}
    for name in EVENTS:
        body = render(name, data, RenderContext(locale=locale, timezone="Asia/Manila"))
        for row in body["buttons"]:
            for b in row:
                found[b["label"]] = f"{locale}: event {name}"
    return found


async def test_every_button_label_fits_20_characters_in_every_language(
    settings: Settings, demo: dict[str, Any]
) -> None:
    labels: dict[str, str] = {}
    async with running_app(settings, mode="web") as client:
        for locale in LOCALES:
            await _walk_buyer(Person(client, locale, labels))
            await _walk_gom(Person(client, locale, labels))
    for locale in LOCALES:
        labels.update(_event_labels(locale))
    # The walk reached the menus it means to check, in every language.
    for wanted in ("Turn off reminders", "Turn on updates", "Turn everything on", "Skip"):
        assert wanted in labels, sorted(labels)
    for wanted in ("Matikan reminder", "I-on ang summaries", "Senyap waktu malam", "Tolak"):
        assert wanted in labels, sorted(labels)
    assert "I-remind ang unpaid" in labels and "Ingatkan pembeli" in labels
    assert {"Unpaid holds", "Keep it", "Yes, cancel it", "Confirm", "Console"} <= set(labels)
    assert "Maling amount" in labels and "Amaun salah" in labels
    # /submit's chooser (the open orders, the demo's long titles among them unless other
    # tests' orders come first): its buttons were seen, and checked below like every label.
    assert any(where.endswith("'/submit'") for where in labels.values()), labels
    too_long = {text: where for text, where in labels.items() if len(text) > MAX_LABEL}
    assert not too_long, f"button labels longer than {MAX_LABEL} characters: {too_long}"


def test_i18n_check_finds_the_labels_and_none_is_too_long() -> None:
    script = _labels_script()
    ids = script.label_ids()
    assert {"Pay", "Turn off summaries", "Wrong amount", "Open the form"} <= ids
    assert "Price: {price}" not in ids  # a text, not a button
    # Chat buttons built with button(label(...)) are marked and checked too.
    assert {"Unpaid holds", "Keep it", "Yes, cancel it", "Console", "Confirm"} <= ids
    assert script.too_long() == []
    pot = (ROOT / "src/gomflow_messaging/locales/messages.pot").read_text(encoding="utf-8")
    marked = f'#. {script.NOTE}\nmsgid "Turn off summaries"'
    assert marked in pot, "run `make i18n`: label msgids carry a note for translators"


# Words each catalogue's glossary rules out, as whole words in any translation.
NOT_SAID = {
    "ms": ("pautan", "awak", "apakah", "mengapa", "tangkapan skrin", "peringatan"),
    "fil": ("pindutin", "magpadala", "ipadala", "ipapadala", "kumpirmasyon", "opsyonal"),
}


def test_catalogues_keep_their_glossary_and_say_its_words() -> None:
    for locale, words in NOT_SAID.items():
        path = ROOT / f"src/gomflow_messaging/locales/{locale}/LC_MESSAGES/messages.po"
        text = path.read_text(encoding="utf-8")
        head = text[: text.index('msgid ""')]
        assert "Glossary, one word per concept" in head and "at most 20 characters" in head
        assert "press (a button)" in head and "hold" in head, f"{locale}: glossary lost"
        with path.open("rb") as po:
            catalog = read_po(po)
        found = []
        for message in catalog:
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            for string in strings:
                lowered = f" {string.lower()} "
                for word in words:
                    if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", lowered):
                        found.append((word, str(message.id)))
        assert not found, f"{locale}: words the glossary rules out: {found}"


MOMENT = datetime(2026, 12, 8, 15, 59, tzinfo=UTC)  # 11:59 PM in Manila and Kuala Lumpur


def test_times_as_people_say_them() -> None:
    assert format_moment("en", MOMENT, "Asia/Manila") == "8 Dec 2026, 11:59 PM PH time"
    assert format_moment("fil", MOMENT, "Asia/Manila") == "8 Dis 2026, 11:59 PM oras sa PH"
    assert format_moment("ms", MOMENT, "Asia/Kuala_Lumpur") == (
        "8 Dis 2026, 11:59 malam waktu Malaysia"
    )
    assert format_moment("en", MOMENT, "Asia/Kuala_Lumpur").endswith("PM Malaysia time")
    morning = datetime(2026, 12, 8, 1, 30, tzinfo=UTC)  # 9:30 in the morning in KL
    assert format_moment("ms", morning, "Asia/Kuala_Lumpur") == (
        "8 Dis 2026, 9:30 pagi waktu Malaysia"
    )
    # Malay day periods: pagi, tengah hari, petang, malam; no PG/PTG.
    said = [format_clock("ms", time(h)) for h in (8, 13, 17, 22)]
    assert said == ["8:00 pagi", "1:00 tengah hari", "5:00 petang", "10:00 malam"]
    assert format_clock("fil", time(22)) == "10:00 PM"
    # A zone without a short name of ours gets CLDR's, never a tz database id.
    assert "Asia/" not in format_moment("ms", MOMENT, "Asia/Tokyo")


async def _contact(conn: asyncpg.Connection, channel: str, address: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT c.locale, c.timezone FROM contacts c JOIN contact_addresses a"
        " ON a.contact_id = c.id WHERE a.channel = $1 AND a.address = $2",
        channel,
        address,
    )
    assert row is not None
    return row


async def test_a_malay_speaker_gets_malaysia_time_until_choosing_another(
    settings: Settings, demo: dict[str, Any], conn: asyncpg.Connection
) -> None:
    labels: dict[str, str] = {}
    async with running_app(settings, mode="web") as client:
        malay = Person(client, "ms-MY", labels)
        shown = await malay.say("/settings")
        assert "Zon waktu: Kuala Lumpur" in shown[0]["text"]
        # The quiet-hours button's hours, said in words the button has no room for.
        assert "(Senyap waktu malam: 10:00 malam hingga 8:00 pagi)" in shown[0]["text"]
        assert (await _contact(conn, "sandbox", malay.address))["timezone"] == "Asia/Kuala_Lumpur"

        # A new English speaker starts on Manila's clock; choosing Malay brings Malaysia's,
        # as the zone was never chosen.
        other = Person(client, "en", labels)
        assert "Time zone: Manila" in (await other.say("/settings"))[0]["text"]
        await other.say("/lang ms")
        assert (await _contact(conn, "sandbox", other.address))["timezone"] == ("Asia/Kuala_Lumpur")
        # A zone the person chose stays when they change language.
        await other.say("tz manila")
        await other.say("/lang en")
        assert (await _contact(conn, "sandbox", other.address))["timezone"] == "Asia/Manila"
        assert "Time zone: Manila" in (await other.say("/settings"))[0]["text"]


def test_make_i18n_leaves_the_template_alone_when_no_text_changed(tmp_path: Path) -> None:
    """The extraction `make i18n` runs, then the script: only POT-Creation-Date would differ."""
    from babel.messages.frontend import CommandLineInterface

    pot = ROOT / "src/gomflow_messaging/locales/messages.pot"
    fresh, current = tmp_path / "messages.pot.new", tmp_path / "messages.pot"
    current.write_bytes(pot.read_bytes())
    CommandLineInterface().run(
        [
            "pybabel",
            "-q",
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "--project=gomflow-messaging",
            "--add-comments=Translators:",
            "--no-location",
            "--sort-output",
            "--header-comment=# Bot and notification texts of gomflow-messaging; English is the "
            "source.",
            "-o",
            str(fresh),
            str(ROOT / "src/gomflow_messaging"),
        ]
    )
    assert b"POT-Creation-Date" in fresh.read_bytes()
    _labels_script().mark(fresh, current)
    assert not fresh.exists()
    assert current.read_bytes() == pot.read_bytes(), "run `make i18n`"
