"""WhatsApp through Meta's Cloud API (WHATSAPP_PROVIDER=cloud), end to end: signed webhooks
(handshake, forged posts, every inbound type, batches, statuses), the window and templates,
Meta's error codes, pacing, against the fake Graph API in tests/fakes/whatsapp_cloud.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gomflow_messaging.channels.base import Button, OutboundMessage
from gomflow_messaging.channels.whatsapp.cloud import cli as cloud_cli
from gomflow_messaging.channels.whatsapp.cloud.channel import CloudChannel
from gomflow_messaging.channels.whatsapp.cloud.render import render
from gomflow_messaging.cli import CommandError
from gomflow_messaging.settings import ConfigError, Settings, load_settings
from tests.conftest import REDIS_URL, unique_text
from tests.contract import recent_contacts
from tests.fakes.whatsapp_cloud import (
    PHONE_NUMBER_ID,
    VERIFY_TOKEN,
    WABA_ID,
    FakeCloud,
    Sent,
    cloud_env,
    cloud_settings,
    sign,
)
from tests.helpers import AUTH, SECRET, TcpProxy, eventually, running_app, wait_status
from tests.test_whatsapp import add_contact, new_phone, notify

PATH = "/webhook/whatsapp-cloud"


@pytest.fixture
async def fake() -> AsyncIterator[FakeCloud]:
    server = await FakeCloud().start()
    yield server
    await server.close()


@pytest.fixture
def cloud(make_settings: Callable[..., Settings], fake: FakeCloud) -> Settings:
    return make_settings(**cloud_env(fake))


def envelope(*values: dict[str, Any]) -> dict[str, Any]:
    """A webhook body: one WABA entry with one ``messages`` change per value."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": WABA_ID, "changes": [{"field": "messages", "value": value} for value in values]}
        ],
    }


def metadata() -> dict[str, str]:
    return {"display_phone_number": "639170000000", "phone_number_id": PHONE_NUMBER_ID}


class CloudChat:
    """A buyer on WhatsApp: each message a signed Cloud API webhook; replies reach the fake."""

    def __init__(self, client: httpx.AsyncClient, fake: FakeCloud, phone: str) -> None:
        self.client = client
        self.fake = fake
        self.phone = phone
        self.digits = phone.lstrip("+")

    def message(self, kind: str, content: dict[str, Any]) -> dict[str, Any]:
        return {
            "from": self.digits,
            "id": "wamid.HBgM" + uuid.uuid4().hex.upper(),
            "timestamp": str(int(time.time())),
            "type": kind,
            kind: content,
        }

    def value(self, *messages: dict[str, Any]) -> dict[str, Any]:
        return {
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "contacts": [
                {"profile": {"name": "Maria"}, "wa_id": self.digits, "user_id": "PH.13491208"}
            ],
            "messages": list(messages),
        }

    async def post(self, body: dict[str, Any], signature: str | None = None) -> httpx.Response:
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        headers["X-Hub-Signature-256"] = sign(raw) if signature is None else signature
        return await self.client.post(PATH, content=raw, headers=headers)

    async def send(self, kind: str, content: dict[str, Any]) -> list[Sent]:
        """One message; the replies the person got for it."""
        before = len(self.fake.to(self.phone))
        response = await self.post(envelope(self.value(self.message(kind, content))))
        assert response.status_code == 200, response.text

        async def replied() -> list[Sent] | None:
            new = self.fake.to(self.phone)[before:]
            return new or None

        found: list[Sent] = await eventually(replied)
        return found

    async def say(self, text: str) -> list[Sent]:
        return await self.send("text", {"body": text})


# -- the handshake and forged posts --------------------------------------------------------


async def test_handshake_echoes_the_challenge_for_our_token_only(cloud: Settings) -> None:
    async with running_app(cloud, mode="web") as client:
        ok = await client.get(
            PATH,
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY_TOKEN,
                "hub.challenge": "42",
            },
        )
        assert (ok.status_code, ok.text) == (200, "42")
        for mode, token in (("subscribe", "wrong"), ("unsubscribe", VERIFY_TOKEN), ("", "")):
            refused = await client.get(
                PATH, params={"hub.mode": mode, "hub.verify_token": token, "hub.challenge": "1"}
            )
            assert refused.status_code == 403


@pytest.mark.parametrize(
    "signature", ["", "sha256=" + "0" * 64, sign(b"other body"), "sha1=abc", "forged"]
)
async def test_forged_posts_are_403_and_change_nothing(
    cloud: Settings, fake: FakeCloud, conn: Any, signature: str
) -> None:
    _typed, phone = new_phone()
    async with running_app(cloud, mode="web") as client:
        chat = CloudChat(client, fake, phone)
        message = chat.message("text", {"body": "HELP"})
        response = await chat.post(envelope(chat.value(message)), signature=signature)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "invalid_signature"
    assert not await conn.fetchval(
        "SELECT count(*) FROM inbound_updates WHERE update_id = $1", message["id"]
    )
    assert not await conn.fetchval(
        "SELECT count(*) FROM contact_addresses WHERE address = $1", phone
    )
    assert fake.to(phone) == []


async def test_a_signed_body_of_another_kind_is_400(cloud: Settings, fake: FakeCloud) -> None:
    async with running_app(cloud, mode="web") as client:
        chat = CloudChat(client, fake, new_phone()[1])
        assert (await chat.post({"object": "page", "entry": []})).status_code == 400


# -- inbound: text, taps, quick replies, receipts -------------------------------------------


async def test_text_and_taps_reach_the_bot_as_real_buttons(
    cloud: Settings, fake: FakeCloud, demo: dict[str, Any]
) -> None:
    _typed, phone = new_phone()
    async with running_app(cloud, mode="web") as client:
        chat = CloudChat(client, fake, phone)
        menu = await chat.say("HELP")
        taps = [b for sent in menu for b in sent.buttons]
        assert taps, [s.body for s in menu]
        assert all(s.kind in ("text", "interactive") for s in menu)
        # The orders button, tapped: its id is the action.
        orders = next(id_ for title, id_ in taps if id_ == "orders")
        kind = next(s.interactive["type"] for s in menu if s.buttons)
        tap_kind = "button_reply" if kind == "button" else "list_reply"
        listing = await chat.send(
            "interactive", {"type": tap_kind, tap_kind: {"id": orders, "title": "Open orders"}}
        )
        assert any("Open orders (page 1 of" in s.text for s in listing), [s.body for s in listing]
        # A template's quick reply carries its payload.
        status = await chat.send("button", {"payload": "status", "text": "My orders"})
        assert any("Send ORDERS to browse." in s.text for s in status)
        # A list row tapped (its id, the action) works the same.
        again = await chat.send(
            "interactive",
            {"type": "list_reply", "list_reply": {"id": "status", "title": "My orders"}},
        )
        assert [s.text for s in again] == [s.text for s in status]
    assert fake.unauthorized == 0


async def test_receipts_as_image_and_document_are_fetched_with_the_token(
    cloud: Settings, fake: FakeCloud, demo: dict[str, Any], conn: Any
) -> None:
    typed, phone = new_phone()
    reference = f"PH-C{secrets.token_hex(4).upper()}"
    await conn.execute(
        """
        INSERT INTO submissions (order_id, buyer_name, buyer_phone, buyer_platform, quantity,
                                 total_amount, currency, payment_reference)
        VALUES ($1, 'Cloud Buyer', $2, 'web', 1, 1250, 'PHP', $3)
        """,
        uuid.UUID(demo["orders"]["PHP"]),
        typed,
        reference,
    )
    fake.media["1111"] = ("image/jpeg", b"\xff\xd8\xff\xe0 a receipt")
    fake.media["2222"] = ("application/pdf", b"%PDF-1.4 another receipt")
    async with running_app(cloud, mode="web") as client:
        chat = CloudChat(client, fake, phone)
        await chat.say("hi")
        image = await chat.send(
            "image", {"id": "1111", "mime_type": "image/jpeg", "sha256": "x", "caption": reference}
        )
        assert any(f"We received your receipt for {reference}" in s.text for s in image)
        document = await chat.send(
            "document",
            {"id": "2222", "mime_type": "application/pdf", "filename": "gcash.pdf", "sha256": "y"},
        )
        assert document
    assert fake.media_refused == 0
    assert [p.rsplit("/", 1)[-1] for p in fake.media_fetches] == ["1111", "2222"]
    kinds = await conn.fetch(
        "SELECT mime FROM payment_proofs p JOIN submissions s ON s.id = p.submission_id"
        " WHERE s.payment_reference = $1",
        reference,
    )
    assert {r["mime"] for r in kinds} == {"image/jpeg", "application/pdf"}


async def test_a_batch_is_read_whole_and_each_wamid_once(
    cloud: Settings, fake: FakeCloud, conn: Any
) -> None:
    phones = [new_phone()[1] for _ in range(3)]
    async with running_app(cloud, mode="web") as client:
        chats = [CloudChat(client, fake, p) for p in phones]
        messages = [c.message("text", {"body": "HELP"}) for c in chats]
        body = envelope(chats[0].value(messages[0]), chats[1].value(messages[1]))
        # A second entry in the same POST (Meta batches up to 1,000 updates).
        body["entry"].append(envelope(chats[2].value(messages[2]))["entry"][0])
        assert (await chats[0].post(body)).status_code == 200
        await eventually(lambda: _all_answered(fake, phones))
        counts = [len(fake.to(p)) for p in phones]
        # Meta retries for days: the same POST again answers no one twice.
        assert (await chats[0].post(body)).status_code == 200
        assert [len(fake.to(p)) for p in phones] == counts
    handled = await conn.fetchval(
        "SELECT count(*) FROM inbound_updates WHERE platform = 'whatsapp'"
        " AND update_id = ANY($1::text[])",
        [m["id"] for m in messages],
    )
    assert handled == 3


async def test_a_person_known_only_by_a_user_id_is_answered_and_reachable(
    cloud: Settings, fake: FakeCloud, demo: dict[str, Any]
) -> None:
    """A person who took a WhatsApp username writes with no number (no ``from``, a
    ``from_user_id``; their contact has a ``user_id`` and no ``wa_id``): the bot answers them
    by that id (``"recipient"``), and a notify to the id reaches them in the window."""
    user_id = f"PH.{secrets.randbelow(10**18):018d}"
    async with running_app(cloud) as client:
        chat = CloudChat(client, fake, "+639180000000")
        message = {
            "from_user_id": user_id,
            "id": "wamid.HBgM" + uuid.uuid4().hex.upper(),
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": "HELP"},
        }
        value = {
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "contacts": [{"profile": {"name": "Rina"}, "user_id": user_id}],
            "messages": [message],
        }
        assert (await chat.post(envelope(value))).status_code == 200

        async def answered() -> list[Sent] | None:
            return fake.to(user_id) or None

        answers = await eventually(answered)
        assert all(sent.body.get("recipient") == user_id for sent in answers)
        assert all("to" not in sent.body for sent in answers)
        text = unique_text("by user id")
        result = await notify(
            client,
            {
                "event": "custom",
                "data": {"text": text},
                "recipients": [{"channel": "whatsapp", "address": user_id}],
            },
        )
        [queued] = result["messages"]
        assert queued["address"] == user_id
        await wait_status(client, queued["id"], "sent")
    assert any(text in sent.text for sent in fake.to(user_id))


async def _all_answered(fake: FakeCloud, phones: list[str]) -> bool | None:
    return all(fake.to(p) for p in phones) or None


# -- statuses --------------------------------------------------------------------------------


async def test_statuses_move_forward_only_and_failed_without_contacts_is_recorded(
    cloud: Settings, fake: FakeCloud, pool: Any
) -> None:
    _t, phone = new_phone()
    await add_contact(pool, phone, inbound_hours_ago=1)
    async with running_app(cloud) as client:
        chat = CloudChat(client, fake, phone)

        async def statuses(*items: dict[str, Any], contacts: bool = True) -> None:
            value: dict[str, Any] = {
                "messaging_product": "whatsapp",
                "metadata": metadata(),
                "statuses": list(items),
            }
            if contacts:
                value["contacts"] = [{"wa_id": chat.digits, "user_id": "PH.1349"}]
            response = await chat.post(envelope(value))
            assert response.status_code == 200

        def status(wamid: str, kind: str, **extra: Any) -> dict[str, Any]:
            return {
                "id": wamid,
                "status": kind,
                "timestamp": str(int(time.time())),
                "recipient_id": chat.digits,
                **extra,
            }

        request = {
            "event": "custom",
            "data": {"text": "Your album shipped"},
            "recipients": [{"channel": "whatsapp", "address": phone}],
        }
        [entry] = (await notify(client, request))["messages"]
        await wait_status(client, entry["id"], "sent")
        [sent] = fake.to(phone)
        assert sent.body["text"]["body"] == "Your album shipped"
        # read before delivered (order is not guaranteed), then a late delivered.
        await statuses(status(sent.wamid, "read"))
        await statuses(status(sent.wamid, "delivered"))
        got = (await client.get(f"/api/messages/{entry['id']}", headers=AUTH)).json()
        assert got["status"] == "read"

        [entry] = (await notify(client, request))["messages"]
        await wait_status(client, entry["id"], "sent")
        wamid = fake.to(phone)[-1].wamid
        failed = status(
            wamid,
            "failed",
            errors=[
                {
                    "code": 131026,
                    "title": "Message undeliverable",
                    "message": "Message undeliverable",
                    "error_data": {"details": "Message Undeliverable."},
                }
            ],
        )
        await statuses(failed, contacts=False)
        got = await wait_status(client, entry["id"], "failed")
        assert got["status_reason"] == "unreachable"
        assert "131026" in got["last_error"]
    assert not await pool.fetchval(
        "SELECT reachable FROM contact_addresses WHERE channel = 'whatsapp' AND address = $1",
        phone,
    )


# -- the window, templates, Meta's codes -----------------------------------------------------


async def test_outside_the_window_the_template_goes_and_131047_skips(
    cloud: Settings, fake: FakeCloud, pool: Any
) -> None:
    _t, stale = new_phone()
    _t, closed_at_meta = new_phone()
    await add_contact(pool, stale, inbound_hours_ago=48)
    await add_contact(pool, closed_at_meta, inbound_hours_ago=1)
    fake.outside_window.add(closed_at_meta.lstrip("+"))
    name = f"gomflow_update_{secrets.token_hex(3)}"
    await pool.execute(
        "INSERT INTO whatsapp_templates (event, locale, content_sid, variables)"
        " VALUES ('custom', 'en', $1, $2::jsonb)",
        name,
        {"1": "{text}"},
    )
    try:
        async with running_app(cloud) as client:
            result = await notify(
                client,
                {
                    "event": "custom",
                    "data": {"text": "Shipped!\nTracking: LBC-1"},
                    "recipients": [
                        {"channel": "whatsapp", "address": stale},
                        {"channel": "whatsapp", "address": closed_at_meta},
                    ],
                },
            )
            first, second = result["messages"]
            await wait_status(client, first["id"], "sent")
            [templated] = fake.to(stale)
            assert templated.body["template"] == {
                "name": name,
                "language": {"code": "en"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "text": "Shipped! Tracking: LBC-1"}],
                    }
                ],
            }
            # We counted the window open; Meta says 131047: skipped, the next route tried.
            status = await wait_status(client, second["id"], "skipped", "failed")
            assert (status["status"], status["status_reason"]) == ("skipped", "outside_window")

            # No template for this event: skipped as on Twilio, nothing sent.
            [entry] = (
                await notify(
                    client,
                    {"event": "test", "recipients": [{"channel": "whatsapp", "address": stale}]},
                )
            )["messages"]
            status = await wait_status(client, entry["id"], "skipped", "failed", "sent")
            assert (status["status"], status["status_reason"]) == ("skipped", "template_required")
            assert len(fake.to(stale)) == 1
    finally:
        await pool.execute("DELETE FROM whatsapp_templates WHERE content_sid = $1", name)


async def test_130429_is_retried_and_the_message_goes(
    cloud: Settings, fake: FakeCloud, pool: Any
) -> None:
    _t, phone = new_phone()
    await add_contact(pool, phone, inbound_hours_ago=1)
    fake.faults.append((130429, None))
    async with running_app(cloud) as client:
        request = {
            "event": "custom",
            "data": {"text": "after a rate limit"},
            "recipients": [{"channel": "whatsapp", "address": phone}],
        }
        [entry] = (await notify(client, request))["messages"]
        got = await wait_status(client, entry["id"], "sent", "failed")
        assert got["status"] == "sent"
        outcomes = [(a["outcome"], a["error_code"]) for a in got["attempt_log"]]
        assert outcomes == [("transient", "rate_limited"), ("sent", None)]
    assert len(fake.to(phone)) == 1


@pytest.mark.parametrize(
    ("code", "error", "reason"),
    [
        (131026, "PermanentError", "unreachable"),
        (190, "PermanentError", "bad_credentials"),
        (132001, "PermanentError", "template_missing"),
        (100, "PermanentError", "bad_parameter"),
        (131056, "TransientError", "pair_rate_limited"),
        (80007, "TransientError", "rate_limited"),
        (131047, "SkipMessage", "outside_window"),
    ],
)
async def test_meta_codes_map_to_our_errors(
    fake: FakeCloud, pool: Any, redis: Any, code: int, error: str, reason: str
) -> None:
    phone = new_phone()[1]
    contacts = await recent_contacts(pool, "whatsapp", [phone])
    channel = CloudChannel(cloud_settings(fake), pool, redis)
    await channel.start()
    fake.faults.append((code, None))
    try:
        with pytest.raises(Exception) as info:
            await channel.send(OutboundMessage(uuid.uuid4(), phone, "hi"))
        assert (type(info.value).__name__, getattr(info.value, "code", "")) == (error, reason)
    finally:
        await channel.close()
        await pool.execute("DELETE FROM contacts WHERE id = ANY($1::uuid[])", contacts)


async def test_pacing_holds_a_strict_cap_without_a_refusal(
    fake: FakeCloud, pool: Any, redis: Any
) -> None:
    """At WHATSAPP_CLOUD_RATE_PER_SECOND the number never passes Meta's cap (130429)."""
    fake.strict_rate = 5
    phones = [new_phone()[1] for _ in range(15)]
    contacts = await recent_contacts(pool, "whatsapp", phones)
    channel = CloudChannel(cloud_settings(fake, whatsapp_cloud_rate_per_second=5), pool, redis)
    await channel.start()
    try:
        await asyncio.gather(
            *(channel.send(OutboundMessage(uuid.uuid4(), p, "paced")) for p in phones)
        )
    finally:
        await channel.close()
        await pool.execute("DELETE FROM contacts WHERE id = ANY($1::uuid[])", contacts)
    assert fake.rejected == 0
    assert len(fake.sent) == 15


# -- rendering within Meta's limits -----------------------------------------------------------


def test_buttons_lists_and_long_text_stay_within_meta_limits() -> None:
    three = ((Button("Pay now with GCash or Maya", "pay"), Button("My orders", "status")),)
    [one] = render("Choose", three, "en")
    assert one["interactive"]["type"] == "button"
    titles = [b["reply"]["title"] for b in one["interactive"]["action"]["buttons"]]
    assert titles == ["Pay now with GCash …", "My orders"] and all(len(t) <= 20 for t in titles)

    many = tuple((Button(f"Order number {n} of SEVENTEEN", f"order {n}"),) for n in range(12))
    parts = render("x" * 5000, many, "fil")
    *texts, listing = parts
    assert [len(t["text"]["body"]) for t in texts] == [1024] * 4
    rows = listing["interactive"]["action"]["sections"][0]["rows"]
    assert len(rows) == 10 and all(len(r["title"]) <= 24 for r in rows)
    # The two that do not fit a list are lines saying what to reply.
    assert "ORDER 11" in listing["interactive"]["body"]["text"]
    assert len(listing["interactive"]["action"]["button"]) <= 20

    link = ((Button("Guide", url="https://g.example"),),)
    [text] = render("Read this", link, "ms")
    assert text["type"] == "text" and "https://g.example" in text["text"]["body"]


# -- settings and the command line ------------------------------------------------------------


def test_cloud_without_its_variables_names_every_missing_one() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            _env_file=None,
            service_secret=SECRET,
            enable_whatsapp=True,
            whatsapp_provider="cloud",
            whatsapp_cloud_phone_number_id=PHONE_NUMBER_ID,
        )
    message = str(info.value)
    assert "\n" not in message
    for name in (
        "WHATSAPP_CLOUD_ACCESS_TOKEN",
        "WHATSAPP_CLOUD_APP_SECRET",
        "WHATSAPP_CLOUD_VERIFY_TOKEN",
    ):
        assert name in message
    assert "WHATSAPP_CLOUD_PHONE_NUMBER_ID" not in message
    assert "TWILIO" not in message


async def test_whatsapp_cloud_info_shows_the_number_or_one_line_offline(
    fake: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(action="info")
    # The command runs its own event loop; the fake answers from this one.
    assert await asyncio.to_thread(cloud_cli.command, cloud_settings(fake), args) == 0
    out = capsys.readouterr().out
    assert "GOMFLOW Test" in out and "quality rating: GREEN" in out
    offline = cloud_settings(fake, whatsapp_cloud_api_base_url="http://127.0.0.1:9/v23.0")
    with pytest.raises(CommandError) as info:
        await asyncio.to_thread(cloud_cli.command, offline, args)
    assert re.fullmatch(
        r"whatsapp-cloud info: network: \w+: .*|whatsapp-cloud info: \S.*", str(info.value)
    )
    assert "\n" not in str(info.value)


# -- health, and Redis away ----------------------------------------------------------------------


async def test_a_token_meta_refuses_makes_the_channel_unhealthy(
    make_settings: Callable[..., Settings], fake: FakeCloud
) -> None:
    settings = make_settings(**cloud_env(fake, whatsapp_cloud_access_token="EAAexpired"))
    async with running_app(settings, mode="web") as client:
        health = (await client.get("/api/health", headers=AUTH)).json()
    whatsapp = health["components"]["channels"]["whatsapp"]
    assert not whatsapp["ok"] and whatsapp["detail"].startswith("bad_credentials")


async def test_redis_away_is_503_and_the_retry_is_answered(
    make_settings: Callable[..., Settings],
    fake: FakeCloud,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = urlsplit(REDIS_URL)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    try:
        redis_url = f"redis://127.0.0.1:{proxy.port}{target.path}"
        settings = make_settings(redis_url=redis_url, **cloud_env(fake))
        async with running_app(settings, mode="web") as client:
            chat = CloudChat(client, fake, new_phone()[1])
            body = envelope(chat.value(chat.message("text", {"body": "HELP"})))
            await proxy.cut()
            with caplog.at_level(logging.WARNING, logger="gomflow_messaging"):
                for _ in range(3):
                    assert (await chat.post(body)).status_code == 503
            assert not [r for r in caplog.records if r.exc_info]
            await proxy.restore()
            assert (await chat.post(body)).status_code == 200
            await eventually(lambda: _all_answered(fake, [chat.phone]))
    finally:
        await proxy.close()
