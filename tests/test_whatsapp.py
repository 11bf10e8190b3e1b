"""WhatsApp end to end: signed Twilio webhooks, the keyword bot, the 24-hour window and
templates, status callbacks, error mapping and pacing, against a fake Twilio on loopback."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from pydantic import ValidationError
from twilio.request_validator import RequestValidator

from gomflow_messaging import db
from gomflow_messaging.channels.base import Button, OutboundMessage
from gomflow_messaging.channels.whatsapp.channel import WhatsAppChannel
from gomflow_messaging.channels.whatsapp.webhook import _twiml
from gomflow_messaging.errors import PermanentError, TransientError
from gomflow_messaging.i18n import gettext
from gomflow_messaging.settings import Settings
from gomflow_messaging.workflows.chat.types import Reply
from tests.fakes.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SENDER,
    FakeTwilio,
    parse_body,
    twilio_settings,
)
from tests.helpers import AUTH, SECRET, running_app, wait_status

PUBLIC = "https://gomflow.example.com"
INBOUND = "/webhooks/whatsapp"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = await FakeTwilio().start()
    yield fake
    await fake.close()


@pytest.fixture
def wa_settings(make_settings: Callable[..., Settings], twilio: FakeTwilio) -> Settings:
    return make_settings(
        enable_whatsapp=True,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_whatsapp_number=SENDER,
        twilio_api_base_url=twilio.base_url,
        twilio_timeout_seconds=2,
        public_base_url=PUBLIC,
    )


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    p = await db.create_pool(database_url, max_size=4)
    yield p
    await p.close()


def new_phone() -> tuple[str, str]:
    """A Philippine mobile number as a buyer types it, and its E.164 form."""
    a, b = secrets.randbelow(1000), secrets.randbelow(10_000)
    return f"0918 {a:03d} {b:04d}", f"+63918{a:03d}{b:04d}"


def sign(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, form))


class Chat:
    """A buyer on WhatsApp: each message is a signed Twilio webhook; answers come in TwiML."""

    def __init__(self, client: httpx.AsyncClient, phone: str, name: str = "Maria") -> None:
        self.client = client
        self.phone = phone
        self.name = name

    def form(self, body: str, **extra: str) -> dict[str, str]:
        return {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": ACCOUNT_SID,
            "From": f"whatsapp:{self.phone}",
            "To": f"whatsapp:{SENDER}",
            "Body": body,
            "ProfileName": self.name,
            "WaId": self.phone.lstrip("+"),
            "NumMedia": "0",
            **extra,
        }

    async def post(self, form: dict[str, str], signature: str | None = None) -> httpx.Response:
        signature = signature if signature is not None else sign(PUBLIC + INBOUND, form)
        return await self.client.post(INBOUND, data=form, headers={"X-Twilio-Signature": signature})

    async def say(self, body: str, **extra: str) -> list[str]:
        response = await self.post(self.form(body, **extra))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/xml")
        return twiml_texts(response.text)


def twiml_texts(xml: str) -> list[str]:
    root = ElementTree.fromstring(xml)
    assert root.tag == "Response"
    return [m.text if m.text is not None else m.findtext("Body", "") for m in root]


def command_in(texts: list[str], command: str) -> str:
    """The reply line a rendered button asks for, e.g. ``SUBMIT <order id>``."""
    for text in texts:
        found = re.search(rf"reply ({command}\b[^\n]*)", text)
        if found:
            return found.group(1)
    raise AssertionError(f"no button for {command} in {texts!r}")


def choice_in(texts: list[str], label: str, containing: str = "") -> str:
    """The number to answer to press the button ``label`` (in the message ``containing``)."""
    for text in texts:
        found = re.search(rf"^(\d+)\. {re.escape(label)}\b", text, re.MULTILINE)
        if found and containing in text:
            return found.group(1)
    raise AssertionError(f"no numbered choice {label!r} in {texts!r}")


async def notify(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/notify", json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result


async def add_contact(pool: Any, phone: str, inbound_hours_ago: float | None) -> uuid.UUID:
    contact_id: uuid.UUID = await pool.fetchval(
        "INSERT INTO contacts (display_name) VALUES ('test buyer') RETURNING id"
    )
    await pool.execute(
        """
        INSERT INTO contact_addresses (contact_id, channel, address, last_inbound_at)
        VALUES ($1, 'whatsapp', $2, now() - make_interval(secs => $3))
        """,
        contact_id,
        phone,
        None if inbound_hours_ago is None else inbound_hours_ago * 3600,
    )
    return contact_id


# -- the keyword bot over signed webhooks ------------------------------------------------


async def test_keywords_answer_in_twiml_and_submit_gives_a_payment_reference(
    wa_settings: Settings, twilio: FakeTwilio, demo: dict[str, Any], conn: Any
) -> None:
    _typed, phone = new_phone()
    async with running_app(wa_settings, mode="web") as client:
        chat = Chat(client, phone)
        listing = await chat.say("ORDERS")
        assert any("SEVENTEEN 'FML' Album" in text for text in listing)

        # The card's button is a numbered choice: the buyer answers with its number.
        card = await chat.say("ORDER demo-svt-fml")
        answers = await chat.say(choice_in(card, "Join this order"))
        assert "What name should the GOM put on your order?" in answers[-1]
        # WhatsApp already knows the phone number: the flow does not ask for it.
        assert "How many" in (await chat.say("Maria Clara"))[0]
        assert "delivered" in (await chat.say("2"))[0]
        notes = await chat.say("12 Katipunan Ave, Quezon City")
        assert command_in(notes, "SKIP") == "SKIP"
        summary = await chat.say("SKIP")
        assert "Total: ₱2,500.00" in summary[0]
        done = await chat.say(command_in(summary, "CONFIRM"))
        reference = re.search(r"Payment reference: (PH-\w+)", done[0])
        assert reference, done
        row = await conn.fetchrow(
            "SELECT buyer_phone, buyer_platform, buyer_platform_id, quantity FROM submissions"
            " WHERE payment_reference = $1",
            reference.group(1),
        )
        assert dict(row) == {
            "buyer_phone": phone,
            "buyer_platform": "whatsapp",
            "buyer_platform_id": phone,
            "quantity": 2,
        }

        # A receipt screenshot goes to the payment-proof flow (tests/test_payment_proofs.py).
        media = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/ME1"
        twilio.media[media] = ("image/jpeg", b"\xff\xd8\xff\xe0 a receipt")
        proof = await chat.say(
            "",
            NumMedia="1",
            MediaContentType0="image/jpeg",
            MediaUrl0="https://api.twilio.com" + media,
        )
        assert f"We received your receipt for {reference.group(1)}" in proof[0]


async def test_forged_signature_is_403_and_records_nothing(
    wa_settings: Settings, twilio: FakeTwilio, conn: Any
) -> None:
    _typed, phone = new_phone()
    async with running_app(wa_settings, mode="web") as client:
        chat = Chat(client, phone)
        form = chat.form("ORDERS")
        forged = [
            sign(PUBLIC + INBOUND, form, token="not-the-auth-token"),
            sign("http://test" + INBOUND, form),  # the URL the app sees, not the public one
            sign(PUBLIC + INBOUND, {**form, "Body": "STOP"}),  # signed for other fields
            "",
        ]
        for signature in forged:
            response = await chat.post(form, signature=signature)
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "invalid_signature"
        status = await client.post(
            "/webhook/status",
            data={"MessageSid": "SM" + "1" * 32, "MessageStatus": "read"},
            headers={"X-Twilio-Signature": "bad"},
        )
        assert status.status_code == 403
    assert not await conn.fetchval(
        "SELECT count(*) FROM inbound_updates WHERE update_id = $1", form["MessageSid"]
    )
    assert not await conn.fetchval(
        "SELECT count(*) FROM contact_addresses WHERE address = $1", phone
    )
    assert not await conn.fetchval("SELECT count(*) FROM audit_log WHERE subject = $1", phone)


async def test_help_lists_keywords_as_whatsapp_users_type_them(wa_settings: Settings) -> None:
    _typed, phone = new_phone()
    async with running_app(wa_settings, mode="web") as client:
        chat = Chat(client, phone)
        [help_text] = await chat.say("HELP")
        [unknown] = await chat.say("SUBMIT no-such-order")
        [empty] = await chat.say("STATUS")
    lines = help_text.splitlines()
    for keyword in ("ORDERS - ", "SUBMIT <code> - ", "STATUS - ", "PAY - ", "STOP - "):
        assert any(line.startswith(keyword) for line in lines), keyword
    # Nothing a WhatsApp user would have to type with a slash, anywhere in the answers.
    for text in (help_text, unknown, empty):
        assert not re.search(r"(^|\s)/[a-z]", text), text
    assert "Send ORDERS to see open ones." in unknown
    assert "Send ORDERS to browse." in empty


async def test_a_malaysian_number_is_on_malaysia_time_until_it_chooses(
    wa_settings: Settings, conn: Any
) -> None:
    phone = f"+6012{secrets.randbelow(10**7):07d}"
    async with running_app(wa_settings, mode="web") as client:
        chat = Chat(client, phone)
        [settings_text] = await chat.say("SETTINGS")
        assert "Time zone: Kuala Lumpur" in settings_text
        zone = await conn.fetchval(
            "SELECT c.timezone FROM contacts c JOIN contact_addresses a ON a.contact_id = c.id"
            " WHERE a.channel = 'whatsapp' AND a.address = $1",
            phone,
        )
        assert zone == "Asia/Kuala_Lumpur"
        # A Philippine number stays on Manila's clock.
        _typed, ph = new_phone()
        [ph_text] = await Chat(client, ph).say("SETTINGS")
        assert "Time zone: Manila" in ph_text


async def test_help_shows_numbered_choices_and_a_number_presses_one(
    wa_settings: Settings, demo: dict[str, Any]
) -> None:
    _typed, phone = new_phone()
    _other_typed, other = new_phone()
    ask = "Reply with a number."
    async with running_app(wa_settings, mode="web") as client:
        chat = Chat(client, phone)
        [help_text] = await chat.say("HELP")
        assert help_text.endswith(
            "\n\n1. Open orders (ORDERS)\n2. My orders (STATUS)\n3. Pay (PAY)\n"
            f"4. Settings (SETTINGS)\n{ask}"
        )
        # "2" is what the second button does: the same answer as typing its keyword.
        by_number = await chat.say("2")
        assert by_number == await chat.say("STATUS")
        assert "Send ORDERS to browse." in by_number[0]
        # Spaces, a dot and digits of other scripts (full-width) are the same number.
        for typed in (" 2 ", "2.", "\uff12"):
            await chat.say("HELP")
            assert await chat.say(typed) == by_number, typed
        await chat.say("HELP")
        assert "Open orders (page 1 of" in (await chat.say("1"))[0]

        # Past the list's end, or 0, goes to the bot as typed (which knows no such thing).
        for typed in ("5", "0", "12"):
            await chat.say("HELP")
            assert (await chat.say(typed))[0].startswith("Sorry, I did not understand that.")
        # A list is one person's: someone else's "2" is only text.
        assert (await Chat(client, other, "Ana").say("2"))[0].startswith(
            "Sorry, I did not understand that."
        )

        # The choices speak the buyer's language.
        await chat.say("LANG fil")
        [help_fil] = await chat.say("HELP")
        assert help_fil.endswith(gettext("fil", ask))
        assert "\n2. " + gettext("fil", "My orders") + " (STATUS)\n" in help_fil


@pytest.fixture
async def web_buyer(conn: Any, demo: dict[str, Any]) -> tuple[str, str]:
    """A buyer's WhatsApp number and the reference of their web submission made with it."""
    typed_phone, phone = new_phone()
    reference = f"PH-T{secrets.token_hex(4).upper()}"
    await conn.execute(
        """
        INSERT INTO submissions (order_id, buyer_name, buyer_phone, buyer_platform, quantity,
                                 total_amount, currency, payment_reference)
        VALUES ($1, 'Web Buyer', $2, 'web', 1, 1250, 'PHP', $3)
        """,
        uuid.UUID(demo["orders"]["PHP"]),
        typed_phone,
        reference,
    )
    return phone, reference


async def confirmation_sent(
    client: httpx.AsyncClient, conn: Any, twilio: FakeTwilio, phone: str, reference: str
) -> str:
    """Sends the order confirmation of ``reference`` through the outbox; its WhatsApp body."""
    submission_id = await conn.fetchval(
        "SELECT id FROM submissions WHERE payment_reference = $1", reference
    )
    request = {"event": "order_confirmation", "recipients": [{"submission_id": str(submission_id)}]}
    [entry] = (await notify(client, request))["messages"]
    await wait_status(client, entry["id"], "sent")
    body: str = twilio.to(phone)[-1].body
    return body


async def test_a_notification_with_buttons_then_1_presses_its_first_button(
    wa_settings: Settings, twilio: FakeTwilio, conn: Any, web_buyer: tuple[str, str]
) -> None:
    phone, reference = web_buyer
    async with running_app(wa_settings) as client:
        chat = Chat(client, phone)
        await chat.say("hi")
        body = await confirmation_sent(client, conn, twilio, phone, reference)
        assert body.endswith(f"\n\n1. Pay (PAY {reference})\nReply with a number.")
        [instructions] = await chat.say("1")
        assert "How to pay: send ₱1,250.00" in instructions and reference in instructions
        # Its list was this buyer's alone.
        [other] = await Chat(client, new_phone()[1], "Ana").say("1")
        assert reference not in other and other.startswith("Sorry, I did not understand that.")


async def test_in_the_submit_flow_a_number_is_the_quantity_not_a_choice(
    wa_settings: Settings, twilio: FakeTwilio, conn: Any, web_buyer: tuple[str, str]
) -> None:
    phone, reference = web_buyer
    async with running_app(wa_settings) as client:
        chat = Chat(client, phone)
        listing = await chat.say("ORDERS")
        join = choice_in(listing, "Join this order", containing="SEVENTEEN 'FML' Album")
        assert "What name should the GOM put on your order?" in (await chat.say(join))[-1]
        [question] = await chat.say("Maria Clara")
        # While the flow waits, its buttons are words to reply: a number is the answer.
        assert "How many" in question and "Reply with a number." not in question
        assert "Cancel: reply CANCEL" in question
        # A notification's numbered button arrives meanwhile: "1" is still the quantity.
        body = await confirmation_sent(client, conn, twilio, phone, reference)
        assert "\n1. Pay (PAY " in body
        assert "delivered" in (await chat.say("1"))[0]
        await chat.say("12 Katipunan Ave, Quezon City")
        summary = await chat.say("SKIP")
        assert "Total: ₱1,250.00" in summary[0]
        assert "How to pay" not in summary[0]
        await chat.say("CANCEL")
        # Once the flow has ended, the numbers are choices again.
        [help_text] = await chat.say("HELP")
        assert help_text.endswith("Reply with a number.")
        assert "Open orders (page 1 of" in (await chat.say("1"))[0]


async def test_cancel_typed_as_its_button_line_says_ends_the_flow(
    wa_settings: Settings, demo: dict[str, Any]
) -> None:
    _typed, phone = new_phone()
    async with running_app(wa_settings, mode="web") as client:
        chat = Chat(client, phone)
        await chat.say(f"SUBMIT {demo['orders']['PHP']}")
        [question] = await chat.say("Maria Clara")
        assert "How many" in question and command_in([question], "CANCEL") == "CANCEL"
        [cancelled] = await chat.say("CANCEL")
        assert cancelled.startswith("Cancelled.")
        # Nothing waits any more: a number is a choice of the menu shown with it.
        assert "Open orders (page 1 of" in (await chat.say("1"))[0]


async def test_duplicate_message_sid_is_handled_once(wa_settings: Settings, conn: Any) -> None:
    _typed, phone = new_phone()
    async with running_app(wa_settings, mode="web") as client:
        chat = Chat(client, phone)
        form = chat.form("HELP")
        first = await chat.post(form)
        again = await chat.post(form)
        assert first.status_code == again.status_code == 200
        assert twiml_texts(first.text) and twiml_texts(again.text) == []
    handled = await conn.fetchval(
        "SELECT count(*) FROM audit_log WHERE subject = $1 AND action = 'message'", phone
    )
    assert handled == 1


def test_twiml_escapes_splits_and_renders_buttons() -> None:
    long = "x" * 1700
    replies = [
        Reply("Tom & Jerry <Live> ₱1,250.00", buttons=((Button("Pay now", "pay"),),)),
        Reply(long),
        Reply("Poster", image_url="https://example.com/poster.jpg"),
    ]
    response, actions = _twiml(replies, "en")
    xml = bytes(response.body).decode()
    assert "&amp;" in xml and "&lt;Live&gt;" in xml
    root = ElementTree.fromstring(xml)
    texts = twiml_texts(xml)
    assert texts[0] == "Tom & Jerry <Live> ₱1,250.00\n\nPay now: reply PAY"
    assert texts[1] + texts[2] == long and len(texts[1]) == 1600
    assert root[3].findtext("Body") == "Poster"
    assert root[3].findtext("Media") == "https://example.com/poster.jpg"
    assert actions == ()


def test_twiml_numbers_choices_across_the_replies_of_one_answer() -> None:
    replies = [
        Reply(
            "Pick one", buttons=((Button("Pay", "pay"), Button("Guide", url="https://g.example")),)
        ),
        Reply(
            "Or these",
            buttons=(
                (Button("My orders", "status PH-AB12CD34"),),
                (Button("Join", f"submit {uuid.uuid4()}"), Button("Cancel", "/cancel")),
            ),
        ),
    ]
    response, actions = _twiml(replies, "fil", numbered=True)
    first, second = twiml_texts(bytes(response.body).decode())
    ask = gettext("fil", "Reply with a number.")
    assert ask != "Reply with a number."
    assert first == f"Pick one\n\n1. Pay (PAY)\nGuide: https://g.example\n{ask}"
    # Each number means one button of the answer; an order id is no help to type.
    assert (
        second
        == f"Or these\n\n2. My orders (STATUS PH-AB12CD34)\n3. Join\n4. Cancel (CANCEL)\n{ask}"
    )
    assert actions == ("pay", "status PH-AB12CD34", replies[1].buttons[1][0].action, "/cancel")


# -- notify through WhatsApp -------------------------------------------------------------


async def test_buyer_phone_reaches_the_whatsapp_contact_and_stop_is_honoured(
    wa_settings: Settings, twilio: FakeTwilio, demo: dict[str, Any], conn: Any
) -> None:
    typed, phone = new_phone()
    submission_id = await conn.fetchval(
        """
        INSERT INTO submissions (order_id, buyer_name, buyer_phone, buyer_platform, quantity,
                                 total_amount, currency, payment_reference)
        VALUES ($1, 'Web Buyer', $2, 'web', 1, 1250, 'PHP', $3) RETURNING id
        """,
        uuid.UUID(demo["orders"]["PHP"]),
        typed,
        f"PH-T{secrets.token_hex(4).upper()}",
    )
    request = {
        "event": "custom",
        "data": {"text": "Your album has arrived in Manila!"},
        "recipients": [{"submission_id": str(submission_id)}],
    }
    async with running_app(wa_settings) as client:
        chat = Chat(client, phone)
        await chat.say("hi")
        contact_id = await conn.fetchval(
            "SELECT contact_id FROM contact_addresses WHERE channel = 'whatsapp' AND address = $1",
            phone,
        )
        [entry] = (await notify(client, request))["messages"]
        assert (entry["channel"], entry["address"], entry["status"]) == (
            "whatsapp",
            phone,
            "queued",
        )
        await wait_status(client, entry["id"], "sent")
        assert (
            await conn.fetchval(
                "SELECT contact_id FROM messages WHERE id = $1", uuid.UUID(entry["id"])
            )
            == contact_id
        )
        [sent] = twilio.to(phone)
        assert sent.body == "Your album has arrived in Manila!"
        health = (await client.get("/api/health", headers=AUTH)).json()
        assert health["components"]["channels"]["whatsapp"]["ok"]
        assert sent.get("From") == f"whatsapp:{SENDER}"

        assert any("START" in text for text in await chat.say("STOP"))
        [entry] = (await notify(client, request))["messages"]
        assert (entry["status"], entry["reason"]) == ("skipped", "opted_out")
        # A direct address is normalised the same way, and STOP holds there too.
        direct = {**request, "recipients": [{"channel": "whatsapp", "address": typed}]}
        [entry] = (await notify(client, direct))["messages"]
        assert (entry["address"], entry["status"]) == (phone, "skipped")
        assert len(twilio.to(phone)) == 1

        await chat.say("START")
        [entry] = (await notify(client, request))["messages"]
        await wait_status(client, entry["id"], "sent")
        assert len(twilio.to(phone)) == 2


async def test_direct_address_that_is_not_a_phone_is_422(wa_settings: Settings) -> None:
    async with running_app(wa_settings, mode="web") as client:
        response = await client.post(
            "/api/notify",
            json={
                "event": "custom",
                "data": {"text": "hi"},
                "recipients": [{"channel": "whatsapp", "address": "not a number"}],
            },
            headers=AUTH,
        )
        assert response.status_code == 422
        assert "recipients.0.address" in response.json()["error"]["fields"]


async def test_outside_the_window_a_template_goes_out_or_the_message_is_skipped(
    wa_settings: Settings, twilio: FakeTwilio, pool: Any
) -> None:
    _t, stale = new_phone()
    _t, fresh = new_phone()
    await add_contact(pool, stale, inbound_hours_ago=48)
    await add_contact(pool, fresh, inbound_hours_ago=23)
    content_sid = "HX" + uuid.uuid4().hex
    await pool.execute(
        "INSERT INTO whatsapp_templates (event, locale, content_sid, variables)"
        " VALUES ('custom', 'en', $1, $2::jsonb)",
        content_sid,
        {"1": "{text}"},
    )
    text = "Your order shipped!\nTracking: LBC-123"
    try:
        async with running_app(wa_settings) as client:
            result = await notify(
                client,
                {
                    "event": "custom",
                    "data": {"text": text},
                    "recipients": [
                        {"channel": "whatsapp", "address": stale},
                        {"channel": "whatsapp", "address": fresh},
                    ],
                },
            )
            for entry in result["messages"]:
                await wait_status(client, entry["id"], "sent")
            [templated] = twilio.to(stale)
            assert templated.get("ContentSid") == content_sid
            # WhatsApp refuses newlines in template variables.
            assert json.loads(templated.get("ContentVariables")) == {
                "1": "Your order shipped! Tracking: LBC-123"
            }
            assert "Body" not in templated.fields
            [free] = twilio.to(fresh)
            assert free.body == text and "ContentSid" not in free.fields

            # No template for this event: skipped with the reason, nothing sent.
            [entry] = (
                await notify(
                    client,
                    {"event": "test", "recipients": [{"channel": "whatsapp", "address": stale}]},
                )
            )["messages"]
            status = await wait_status(client, entry["id"], "skipped", "failed", "sent")
            assert (status["status"], status["status_reason"]) == ("skipped", "template_required")
            assert [a["outcome"] for a in status["attempt_log"]] == ["skipped"]
            assert len(twilio.to(stale)) == 1
    finally:
        await pool.execute("DELETE FROM whatsapp_templates WHERE content_sid = $1", content_sid)


async def test_status_callbacks_move_forward_only(
    wa_settings: Settings, twilio: FakeTwilio, pool: Any
) -> None:
    _t, phone = new_phone()
    await add_contact(pool, phone, inbound_hours_ago=1)

    async def callback(url: str, sid: str, status: str, **extra: str) -> None:
        form = {
            "MessageSid": sid,
            "MessageStatus": status,
            "AccountSid": ACCOUNT_SID,
            "From": f"whatsapp:{SENDER}",
            "To": f"whatsapp:{phone}",
            **extra,
        }
        path = url.removeprefix(PUBLIC)
        response = await client.post(
            path, data=form, headers={"X-Twilio-Signature": sign(url, form)}
        )
        assert response.status_code == 204, response.text

    async with running_app(wa_settings) as client:
        result = await notify(
            client,
            {
                "event": "custom",
                "data": {"text": "Payment confirmed"},
                "recipients": [{"channel": "whatsapp", "address": phone}] * 4,
            },
        )
        ids = [m["id"] for m in result["messages"]]
        for message_id in ids:
            await wait_status(client, message_id, "sent")
        sent = {s.get("StatusCallback").rpartition("=")[2]: s for s in twilio.to(phone)}
        first, second, third, fourth = (sent[i] for i in ids)
        assert first.get("StatusCallback") == f"{PUBLIC}/webhook/status?message_id={ids[0]}"

        # Read arrives before delivered: it stays read.
        for status in ("read", "delivered", "sent", "failed"):
            await callback(first.get("StatusCallback"), first.sid, status)
        body = await wait_status(client, ids[0], "read", "delivered", "sent", "failed")
        assert body["status"] == "read"
        assert body["delivered_at"] and body["read_at"]
        assert body["provider_message_id"] == first.sid

        # Found by MessageSid alone when the callback URL carries no id.
        await callback(PUBLIC + "/webhook/status", second.sid, "delivered")
        body = (await client.get(f"/api/messages/{ids[1]}", headers=AUTH)).json()
        assert body["status"] == "delivered" and body["read_at"] is None

        await callback(third.get("StatusCallback"), third.sid, "undelivered", ErrorCode="63016")
        body = (await client.get(f"/api/messages/{ids[2]}", headers=AUTH)).json()
        assert (body["status"], body["status_reason"]) == ("failed", "template_required")
        assert "63016" in body["last_error"]
        # A late "delivered" outranks the failure report; a late "sent" does not.
        await callback(third.get("StatusCallback"), third.sid, "sent")
        body = (await client.get(f"/api/messages/{ids[2]}", headers=AUTH)).json()
        assert body["status"] == "failed"

        # The buyer unsubscribed on WhatsApp's side: the number is marked unreachable.
        await callback(fourth.get("StatusCallback"), fourth.sid, "failed", ErrorCode="21610")
        body = (await client.get(f"/api/messages/{ids[3]}", headers=AUTH)).json()
        assert (body["status"], body["status_reason"]) == ("failed", "unsubscribed")
        assert not await pool.fetchval(
            "SELECT reachable FROM contact_addresses WHERE channel = 'whatsapp' AND address = $1",
            phone,
        )


# -- the adapter against the fake Twilio -------------------------------------------------


@pytest.fixture
async def channel(twilio: FakeTwilio, pool: Any, redis: Any) -> AsyncIterator[Callable[..., Any]]:
    opened: list[WhatsAppChannel] = []

    async def make(**overrides: Any) -> WhatsAppChannel:
        adapter = WhatsAppChannel(twilio_settings(twilio.base_url, **overrides), pool, redis)
        await adapter.start()
        opened.append(adapter)
        return adapter

    yield make
    for adapter in opened:
        await adapter.close()


def outbound(address: str, text: str = "hi", **extra: Any) -> OutboundMessage:
    return OutboundMessage(message_id=uuid.uuid4(), address=address, text=text, **extra)


@pytest.mark.parametrize(
    ("status", "code", "reason", "unreachable"),
    [
        (400, 21211, "invalid_number", True),
        (400, 21614, "invalid_number", True),
        (403, 21610, "unsubscribed", True),
        (400, 63016, "template_required", False),
        (400, 21617, "twilio_21617", False),
    ],
)
async def test_twilio_codes_map_to_permanent_errors(
    channel: Any,
    twilio: FakeTwilio,
    pool: Any,
    status: int,
    code: int,
    reason: str,
    unreachable: bool,
) -> None:
    _t, phone = new_phone()
    await add_contact(pool, phone, inbound_hours_ago=1)
    twilio.errors_for[f"whatsapp:{phone}"] = (status, code)
    adapter = await channel()
    with pytest.raises(PermanentError) as info:
        await adapter.send(outbound(phone))
    assert (info.value.code, info.value.address_unreachable) == (reason, unreachable)
    assert str(code) in info.value.message


async def test_daily_cap_is_transient_with_a_long_wait(
    channel: Any, twilio: FakeTwilio, pool: Any
) -> None:
    _t, phone = new_phone()
    await add_contact(pool, phone, inbound_hours_ago=1)
    twilio.errors_for[f"whatsapp:{phone}"] = (429, 63018)
    adapter = await channel(whatsapp_daily_cap_retry_seconds=1800)
    with pytest.raises(TransientError) as info:
        await adapter.send(outbound(phone))
    assert (info.value.code, info.value.retry_after) == ("daily_cap", 1800)


async def test_bad_credentials_are_permanent_and_unhealthy(
    channel: Any, twilio: FakeTwilio, pool: Any
) -> None:
    _t, phone = new_phone()
    await add_contact(pool, phone, inbound_hours_ago=1)
    good = await channel()
    assert (await good.health()).ok
    adapter = await channel(twilio_auth_token="wrong-auth-token")
    with pytest.raises(PermanentError) as info:
        await adapter.send(outbound(phone))
    assert info.value.code == "bad_credentials" and not info.value.address_unreachable
    health = await adapter.health()
    assert not health.ok and "bad_credentials" in health.detail
    assert twilio.sent == []


async def test_image_rides_the_first_part_and_buttons_the_last(
    channel: Any, twilio: FakeTwilio, pool: Any
) -> None:
    _t, phone = new_phone()
    await add_contact(pool, phone, inbound_hours_ago=1)
    adapter = await channel()
    message = outbound(
        phone,
        "\n".join(f"line {n} of a long update" for n in range(120)),
        image_url="https://example.com/receipt.png",
        buttons=((Button("My orders", "status"), Button("Track", url="https://t.example")),),
    )
    twilio.faults.append(("hang", 0))  # the first part is not sent: the attempt times out
    with pytest.raises(TransientError):
        await adapter.send(message)
    await adapter.send(message)
    parts = twilio.to(phone)
    assert len(parts) == 2
    assert parts[0].fields["MediaUrl"] == ["https://example.com/receipt.png"]
    assert "MediaUrl" not in parts[1].fields
    _text, buttons = parse_body(parts[1].body)
    assert buttons == ["My orders", "Track"]
    assert parts[1].body.endswith(
        "1. My orders (STATUS)\nTrack: https://t.example\nReply with a number."
    )


async def test_a_failed_second_part_is_retried_alone(
    channel: Any, twilio: FakeTwilio, pool: Any
) -> None:
    _t, phone = new_phone()
    await add_contact(pool, phone, inbound_hours_ago=1)
    adapter = await channel()
    message = outbound(phone, "\n".join(f"line {n} of a long update" for n in range(120)))
    twilio.faults += [("none", 0), ("server_error", 0)]
    with pytest.raises(TransientError):
        await adapter.send(message)
    assert len(twilio.to(phone)) == 1
    result = await adapter.send(message)
    parts = twilio.to(phone)
    assert len(parts) == 2 and result.provider_message_id == parts[0].sid
    assert "".join(p.body for p in parts).replace("\n", "") == message.text.replace("\n", "")


async def test_pacing_is_per_sender_and_shared(channel: Any, twilio: FakeTwilio, pool: Any) -> None:
    _t, phone = new_phone()
    await add_contact(pool, phone, inbound_hours_ago=1)
    queue = f"gomflow-test-pace-{secrets.token_hex(4)}"
    # Two workers of one deployment (same queue, same sender) share the sender's pace.
    one = await channel(whatsapp_messages_per_second=0.001, queue_name=queue)
    other = await channel(whatsapp_messages_per_second=0.001, queue_name=queue)
    await one.send(outbound(phone))
    with pytest.raises(TransientError) as info:
        await other.send(outbound(phone))
    assert info.value.code == "paced" and (info.value.retry_after or 0) > 60
    assert len(twilio.to(phone)) == 1


async def test_media_download_needs_the_account_credentials(
    channel: Any, twilio: FakeTwilio
) -> None:
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{'a' * 32}/Media/ME{'b' * 32}"
    twilio.media[path] = ("image/jpeg", b"\xff\xd8\xff receipt")
    adapter = await channel()
    assert await adapter.download_media("https://api.twilio.com" + path) == (
        "image/jpeg",
        b"\xff\xd8\xff receipt",
    )
    small = await channel(max_file_size=4)
    with pytest.raises(PermanentError) as info:
        await small.download_media("https://api.twilio.com" + path)
    assert info.value.code == "too_large"
    wrong = await channel(twilio_auth_token="wrong-auth-token")
    with pytest.raises(PermanentError):
        await wrong.download_media("https://api.twilio.com" + path)


def test_validate_address_gives_e164() -> None:
    adapter = WhatsAppChannel.__new__(WhatsAppChannel)
    assert adapter.validate_address("0917 123 4567") == "+639171234567"
    assert adapter.validate_address("whatsapp:+60 12-345 6789") == "+60123456789"
    with pytest.raises(ValueError):
        adapter.validate_address("12345")


def test_production_needs_a_public_url_for_signatures(database_url: str) -> None:
    values: dict[str, Any] = {
        "environment": "production",
        "service_secret": SECRET,
        "database_url": database_url,
        "enable_whatsapp": True,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_whatsapp_number": SENDER,
    }
    with pytest.raises(ValidationError, match="PUBLIC_BASE_URL"):
        Settings(_env_file=None, **values)  # type: ignore[call-arg]
    Settings(_env_file=None, public_base_url=PUBLIC, **values)  # type: ignore[call-arg]


def test_twilio_is_imported_only_when_whatsapp_is_on(database_url: str) -> None:
    script = (
        "import sys\n"
        "from gomflow_messaging.app import create_app\n"
        "from gomflow_messaging.settings import Settings\n"
        "for on in (False, True):\n"
        "    s = Settings(_env_file=None, service_secret='s' * 32, enable_whatsapp=on,\n"
        f"                 twilio_account_sid='{ACCOUNT_SID}', twilio_auth_token='t',\n"
        "                 twilio_whatsapp_number='+14155238886')\n"
        "    app = create_app(s)\n"
        "    hooks = sorted(r.path for r in app.routes if 'hook' in r.path)\n"
        "    print(on, 'twilio' in sys.modules, hooks)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    ).stdout.splitlines()
    # Off, every channel's webhook paths only say it is not enabled (no SDK behind them).
    hooks = (
        "['/webhook/discord', '/webhook/messenger', '/webhook/status', '/webhook/telegram', "
        "'/webhooks/whatsapp']"
    )
    assert out == [f"False False {hooks}", f"True True {hooks}"]


def test_templates_are_managed_from_the_command_line(settings: Settings) -> None:
    import os
    import subprocess
    import sys

    from tests.helpers import SECRET

    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        SERVICE_SECRET=SECRET,
        ENVIRONMENT="test",
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gomflow_messaging", "whatsapp-templates", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    sid = "HX" + "ab12" * 8
    saved = cli(
        "set", "payment_reminder", "fil", sid, "--var", "1={order_title}", "--var", "2={reference}"
    )
    assert saved.returncode == 0, saved.stderr
    listed = cli("list")
    assert f"payment_reminder fil {sid}" in listed.stdout and "{reference}" in listed.stdout
    wrong = cli("set", "payment_reminder", "fil", sid, "--var", "1={tracking_number}")
    assert wrong.returncode == 1 and "tracking_number" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert cli("delete", "payment_reminder", "fil").stdout.strip() == "deleted"


@pytest.mark.parametrize(("code", "reason"), [(63016, "template_required"), (63018, "daily_cap")])
async def test_whatsapps_refusal_reported_later_in_a_status_callback_fails_the_message(
    wa_settings: Settings, twilio: FakeTwilio, pool: Any, code: int, reason: str
) -> None:
    """WhatsApp refuses 63016 (outside the window) and 63018 (the daily cap) after Twilio has
    accepted the send: the failure comes in the status callback, not the API answer."""
    _t, phone = new_phone()
    await add_contact(pool, phone, inbound_hours_ago=1)
    twilio.fails_later[f"whatsapp:{phone}"] = ("undelivered", code)
    async with running_app(wa_settings) as client:
        result = await notify(
            client,
            {
                "event": "custom",
                "data": {"text": "Payment confirmed"},
                "recipients": [{"channel": "whatsapp", "address": phone}],
            },
        )
        message_id = result["messages"][0]["id"]
        await wait_status(client, message_id, "sent")  # Twilio took it: "queued"
        [(url, form, signature)] = twilio.due_callbacks()
        response = await client.post(
            url.removeprefix(PUBLIC), data=form, headers={"X-Twilio-Signature": signature}
        )
        assert response.status_code == 204, response.text
        body = await wait_status(client, message_id, "failed")
    assert body["status_reason"] == reason and str(code) in body["last_error"]
