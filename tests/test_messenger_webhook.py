"""GET|POST /webhook/messenger: Meta's handshake, signed events, the bot, receipts.

The app runs as deployed with Messenger enabled (through the registry), against a fake Graph
API on loopback; every event is signed with the test app secret.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from gomflow_messaging.channels import registry
from gomflow_messaging.demo import GOM_ID, ORDER_PH_ID
from gomflow_messaging.settings import Settings
from gomflow_messaging.workflows.linking import create_link_token
from tests.fakes.messenger import (
    PAGE_ID,
    VERIFY_TOKEN,
    FakeGraph,
    Sent,
    messenger_env,
    page_event,
    sign,
)
from tests.helpers import AUTH, eventually, running_app
from tests.test_payment_proofs import new_buyer, new_gom, new_order

PATH = "/webhook/messenger"
_mids = itertools.count(1)


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = await FakeGraph().start()
    yield fake
    await fake.close()


@pytest.fixture
def fb_settings(
    make_settings: Callable[..., Settings], graph: FakeGraph
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        # Meta's CDN is played by the fake: its host:port is on the attachment list.
        env = messenger_env(graph.base_url, messenger_attachment_hosts=graph.host)
        return make_settings(**{**env, **overrides})

    return make


@pytest.fixture
async def client(
    fb_settings: Callable[..., Settings], demo: dict[str, Any]
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(fb_settings(), mode="web") as c:
        yield c


class Person:
    """Someone writing to the Page on Messenger; answers arrive at the fake Graph API."""

    def __init__(self, client: httpx.AsyncClient, graph: FakeGraph) -> None:
        self.client = client
        self.graph = graph
        self.psid = str(3_000_000_000_000_000 + secrets.randbelow(10**15))

    def event(self, **what: Any) -> dict[str, Any]:
        return {
            "sender": {"id": self.psid},
            "recipient": {"id": PAGE_ID},
            "timestamp": int(time.time() * 1000) + next(_mids),
            **what,
        }

    async def post(self, body: dict[str, Any], signature: str | None = None) -> httpx.Response:
        raw = json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature if signature is not None else sign(raw),
        }
        return await self.client.post(PATH, content=raw, headers=headers)

    async def send(self, **what: Any) -> list[Sent]:
        before = len(self.graph.to(self.psid))
        response = await self.post(page_event(self.event(**what)))
        assert response.status_code == 200, response.text
        return await eventually(lambda: _after(self.graph.to(self.psid), before))

    async def say(self, text: str, mid: str = "") -> list[Sent]:
        return await self.send(message={"mid": mid or f"m_{uuid.uuid4().hex}", "text": text})

    async def tap(self, payload: str) -> list[Sent]:
        """A quick reply under the last answer."""
        quick = {"mid": f"m_{uuid.uuid4().hex}", "text": "a", "quick_reply": {"payload": payload}}
        return await self.send(message=quick)

    async def press(self, payload: str) -> list[Sent]:
        return await self.send(
            postback={"mid": f"m_{uuid.uuid4().hex}", "title": "a button", "payload": payload}
        )


async def _after(sent: list[Sent], before: int) -> list[Sent]:
    return sent[before:]


def texts(sent: list[Sent]) -> str:
    return "\n".join(s.text for s in sent)


def payloads(sent: list[Sent]) -> list[str]:
    return [str(b.get("payload", "")) for s in sent for b in s.buttons if b.get("payload")]


# -- the handshake and the signature ---------------------------------------------------------


async def test_handshake_answers_the_challenge_only_with_our_token(
    client: httpx.AsyncClient,
) -> None:
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    ok = await client.get(PATH, params=query)
    assert ok.status_code == 200
    assert ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    wrong = await client.get(PATH, params={**query, "hub.verify_token": "guess"})
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("signature", ["", "sha256=" + "0" * 64, "sha1=abc", "wrong-secret"])
async def test_a_forged_event_is_403_and_changes_nothing(
    client: httpx.AsyncClient, graph: FakeGraph, conn: asyncpg.Connection, signature: str
) -> None:
    person = Person(client, graph)
    body = page_event(person.event(message={"mid": "m_forged", "text": "orders"}))
    if signature == "wrong-secret":
        signature = sign(json.dumps(body).encode(), "another-apps-secret")
    response = await person.post(body, signature)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    assert graph.to(person.psid) == []
    assert not await conn.fetchval(
        "SELECT 1 FROM contact_addresses WHERE channel = 'messenger' AND address = $1",
        person.psid,
    )
    assert not await conn.fetchval(
        "SELECT 1 FROM inbound_updates WHERE platform = 'messenger' AND update_id = 'm_forged'"
    )


# -- the bot ---------------------------------------------------------------------------------


async def test_get_started_welcomes_with_buttons_and_opens_the_window(
    client: httpx.AsyncClient, graph: FakeGraph, conn: asyncpg.Connection
) -> None:
    person = Person(client, graph)
    sent = await person.press("start")
    assert "I am the GOMFLOW assistant" in texts(sent)
    assert {"orders", "status", "pay", "settings"} <= set(payloads(sent))
    assert all(s.body["messaging_type"] == "RESPONSE" for s in sent)
    # No slash-command menu on Messenger: commands are named as people type them.
    shown = texts(await person.say("help"))
    assert "ORDERS" in shown and "/orders" not in shown
    opened = await conn.fetchval(
        "SELECT last_inbound_at FROM contact_addresses"
        " WHERE channel = 'messenger' AND address = $1",
        person.psid,
    )
    assert opened is not None


async def test_the_same_mid_twice_is_answered_once(
    client: httpx.AsyncClient, graph: FakeGraph
) -> None:
    person = Person(client, graph)
    await person.say("help", mid="m_twice_" + uuid.uuid4().hex)
    mid = graph.to(person.psid)
    before = len(mid)
    again = page_event(person.event(message={"mid": "m_again", "text": "help"}))
    assert (await person.post(again)).status_code == 200
    assert (await person.post(again)).status_code == 200  # Meta's retry
    assert len(graph.to(person.psid)) == before * 2


async def test_orders_come_as_a_carousel_and_a_buyer_submits_and_pays(
    client: httpx.AsyncClient, graph: FakeGraph, conn: asyncpg.Connection
) -> None:
    person = Person(client, graph)
    shown = await person.say("orders")
    carousel = [s for s in shown if s.template == "generic"]
    assert carousel, texts(shown)
    join = f"submit {ORDER_PH_ID}"
    assert join in payloads(carousel)
    assert "What name" in texts(await person.press(join))
    assert "mobile number" in texts(await person.say("Maria Clara"))
    assert "How many" in texts(await person.say("0917 555 7734"))
    assert "delivered" in texts(await person.say("2"))
    notes = await person.say("Unit 5, 123 Rizal Ave, QC")
    assert "skip" in payloads(notes)
    summary = await person.send(
        message={"mid": f"m_{uuid.uuid4().hex}", "text": "Skip", "quick_reply": {"payload": "skip"}}
    )
    assert "Total: ₱2,500.00" in texts(summary)
    joined = texts(await person.press("confirm"))
    reference = re.search(r"Payment reference: (PH-\w+)", joined)
    assert reference, joined
    row = await conn.fetchrow(
        "SELECT s.quantity FROM submissions s"
        " JOIN submission_contacts sc ON sc.submission_id = s.id"
        " JOIN contact_addresses ca ON ca.contact_id = sc.contact_id"
        " WHERE ca.channel = 'messenger' AND ca.address = $1 AND s.payment_reference = $2",
        person.psid,
        reference.group(1),
    )
    assert row is not None and row["quantity"] == 2
    assert reference.group(1) in texts(await person.press("status"))

    # A screenshot of the receipt, served by "Meta's CDN" (the fake, named in the hosts).
    graph.media["/cdn/receipt.jpg"] = ("image/jpeg", b"\xff\xd8\xff\xe0 a receipt")
    image = {"type": "image", "payload": {"url": graph.origin + "/cdn/receipt.jpg"}}
    proof = await person.send(message={"mid": f"m_{uuid.uuid4().hex}", "attachments": [image]})
    assert f"We received your receipt for {reference.group(1)}" in texts(proof)


async def test_an_image_off_meta_cdn_is_never_fetched(
    client: httpx.AsyncClient, graph: FakeGraph, conn: asyncpg.Connection
) -> None:
    person = Person(client, graph)
    # A buyer with an unpaid order: an image from them is read as a receipt, so only the
    # host check stands between the URL and a fetch (another server here, watching).
    await new_buyer(conn, await new_order(conn, await new_gom(conn)), ("messenger", person.psid))
    elsewhere = await FakeGraph().start()
    try:
        elsewhere.media["/cdn/secret.jpg"] = ("image/jpeg", b"\xff\xd8 internal")
        image = {"type": "image", "payload": {"url": elsewhere.origin + "/cdn/secret.jpg"}}
        await person.send(message={"mid": f"m_{uuid.uuid4().hex}", "attachments": [image]})
    finally:
        await elsewhere.close()
    assert elsewhere.media_fetches == []
    assert not await conn.fetchval(
        "SELECT 1 FROM payment_proofs p JOIN contact_addresses ca ON ca.contact_id = p.contact_id"
        " WHERE ca.channel = 'messenger' AND ca.address = $1",
        person.psid,
    )


async def test_a_thumbs_up_sticker_is_not_a_receipt(
    client: httpx.AsyncClient, graph: FakeGraph, conn: asyncpg.Connection
) -> None:
    person = Person(client, graph)
    # A buyer with an unpaid order: an image from them is read as a receipt.
    await new_buyer(conn, await new_order(conn, await new_gom(conn)), ("messenger", person.psid))
    path = "/cdn/369239263222822.png"
    graph.media[path] = ("image/png", b"\x89PNG thumbs up")
    sticker = {"type": "image", "payload": {"url": graph.origin + path, "sticker_id": 1}}
    await person.send(message={"mid": f"m_{uuid.uuid4().hex}", "attachments": [sticker]})
    assert path not in graph.media_fetches


@pytest.mark.parametrize("how", ["referral", "get_started_with_ref", "typed"])
async def test_an_m_me_ref_link_links_the_chat_to_a_gom(
    client: httpx.AsyncClient, graph: FakeGraph, conn: asyncpg.Connection, how: str
) -> None:
    person = Person(client, graph)
    code = (await create_link_token(client.app.state.services.pool, gom_id=GOM_ID))["code"]  # type: ignore[attr-defined]
    referral = {"ref": code, "source": "SHORTLINK", "type": "OPEN_THREAD"}
    if how == "typed":
        offer = await person.say(registry.link_instructions(code)["messenger"])
    elif how == "referral":
        offer = await person.send(referral=referral)
    else:
        offer = await person.send(
            postback={"title": "Get Started", "payload": "start", "referral": referral}
        )
    # Shown first, with Confirm / Cancel; linked only when the person confirms.
    assert "GOM account of" in texts(offer)
    assert payloads(offer)[:2] == ["link confirm", "link cancel"]
    assert "Only a GOM" in texts(await person.say("manage"))
    await person.tap("link confirm")
    gom = await conn.fetchval(
        "SELECT c.profile_id FROM contacts c JOIN contact_addresses ca ON ca.contact_id = c.id"
        " WHERE ca.channel = 'messenger' AND ca.address = $1",
        person.psid,
    )
    assert gom == GOM_ID
    assert "Only a GOM" not in texts(await person.say("manage"))


async def test_a_person_over_the_limit_gets_one_answer_then_silence(
    fb_settings: Callable[..., Settings], graph: FakeGraph
) -> None:
    async with running_app(fb_settings(rate_limit_max_messages=2), mode="web") as client:
        person = Person(client, graph)
        for _ in range(2):
            await person.say("help")
        slow = await person.say("help")
        assert "very fast" in texts(slow)
        await person.post(page_event(person.event(message={"mid": "m_silent", "text": "help"})))
        assert graph.to(person.psid)[-1].message_id == slow[-1].message_id


# -- receipts ---------------------------------------------------------------------------------


async def test_delivery_and_read_receipts_move_status_forward_only(
    client: httpx.AsyncClient, graph: FakeGraph, conn: asyncpg.Connection
) -> None:
    person = Person(client, graph)
    mids = [f"m_{uuid.uuid4().hex}" for _ in range(2)]
    ids = []
    for mid in mids:
        ids.append(
            await conn.fetchval(
                "INSERT INTO messages (channel, address, event, body, status, provider_message_id,"
                " sent_at) VALUES ('messenger', $1, 'custom', '{}', 'sent', $2,"
                " now() - interval '1 minute') RETURNING id",
                person.psid,
                mid,
            )
        )

    async def statuses() -> list[str]:
        rows = await conn.fetch("SELECT id, status FROM messages WHERE id = ANY($1::uuid[])", ids)
        found = {r["id"]: r["status"] for r in rows}
        return [found[i] for i in ids]

    now = int(time.time() * 1000)
    await person.post(
        page_event(person.event(delivery={"mids": [mids[0]], "watermark": now - 120_000}))
    )
    assert await statuses() == ["delivered", "sent"]
    await person.post(page_event(person.event(read={"watermark": now})))
    assert await statuses() == ["read", "read"]
    # A late delivery report never moves a read message back.
    await person.post(page_event(person.event(delivery={"mids": mids, "watermark": now})))
    assert await statuses() == ["read", "read"]


async def test_a_referral_twice_is_handled_once_and_keeps_no_psid(
    client: httpx.AsyncClient, graph: FakeGraph, conn: asyncpg.Connection
) -> None:
    person = Person(client, graph)
    event = page_event(person.event(referral={"ref": "orders", "source": "SHORTLINK"}))
    await person.post(event)
    answered = len(graph.to(person.psid))
    assert answered
    await person.post(event)  # Meta's retry of the same event
    assert len(graph.to(person.psid)) == answered
    assert not await conn.fetchval(
        "SELECT 1 FROM inbound_updates WHERE platform = 'messenger' AND update_id LIKE $1",
        f"%{person.psid}%",
    )


# -- notifications through the outbox, and the GOM's review ----------------------------------


async def test_a_gom_reviews_a_proof_on_messenger_and_the_buyer_hears_there(
    fb_settings: Callable[..., Settings], graph: FakeGraph, conn: asyncpg.Connection
) -> None:
    async with running_app(fb_settings(), mode="serve") as client:  # with its worker
        gom, buyer = Person(client, graph), Person(client, graph)
        gom_id = await new_gom(conn, ("messenger", gom.psid))
        order_id = await new_order(conn, gom_id)
        submission = await new_buyer(conn, order_id, ("messenger", buyer.psid))
        graph.media["/cdn/proof.jpg"] = ("image/jpeg", b"\xff\xd8\xff\xe0 a receipt")
        image = {"type": "image", "payload": {"url": graph.origin + "/cdn/proof.jpg"}}
        proof = await buyer.send(message={"mid": f"m_{uuid.uuid4().hex}", "attachments": [image]})
        assert f"We received your receipt for {submission['reference']}" in texts(proof)

        # The GOM is told on Messenger (an outbox message, inside their window).
        alert = await eventually(lambda: _texts_with(graph, gom.psid, submission["reference"]))
        assert alert[0].body["messaging_type"] == "UPDATE"
        listed = await gom.press("payments")
        approve = [p for p in payloads(listed) if p.startswith("approve ")]
        assert approve, texts(listed)
        await gom.press(approve[0])
        confirmed = await eventually(
            lambda: _texts_with(graph, buyer.psid, "payment", after=len(proof))
        )
        assert submission["reference"] in texts(confirmed)
        assert (
            await conn.fetchval(
                "SELECT status FROM submissions WHERE id = $1", submission["submission_id"]
            )
            == "paid"
        )


async def test_outside_the_window_a_reminder_goes_to_the_next_route(
    fb_settings: Callable[..., Settings], graph: FakeGraph, conn: asyncpg.Connection
) -> None:
    """Messenger skips (outside_window) what Meta would refuse; the buyer's next address
    gets it. A purchase update still reaches Messenger, tagged."""
    psid = str(3_100_000_000_000_000 + secrets.randbelow(10**15))
    sandbox = f"fb-next-{uuid.uuid4().hex[:8]}"
    gom_id = await new_gom(conn)
    order_id = await new_order(conn, gom_id)
    submission = await new_buyer(conn, order_id, ("messenger", psid), ("sandbox", sandbox))
    await conn.execute(
        "UPDATE contact_addresses SET last_inbound_at = now() - interval '2 days'"
        " WHERE channel = 'messenger' AND address = $1",
        psid,
    )
    graph.outside_window.add(psid)
    async with running_app(fb_settings(), mode="serve") as client:
        for event in ("payment_reminder", "payment_confirmed"):
            response = await client.post(
                "/api/notify",
                json={
                    "event": event,
                    "recipients": [{"submission_id": str(submission["submission_id"])}],
                },
                headers=AUTH,
            )
            assert response.status_code == 202, response.text
        tagged = await eventually(lambda: _texts_with(graph, psid, submission["reference"]))
        assert [s.body.get("tag") for s in tagged] == ["POST_PURCHASE_UPDATE"]
        reminded = await eventually(
            lambda: conn.fetchval(
                "SELECT count(*) FROM sandbox_messages WHERE address = $1", sandbox
            )
        )
        assert reminded == 1
    # One message: tried on Messenger (skipped by rule), then delivered on the next route.
    attempts = await conn.fetch(
        "SELECT a.outcome, a.error_code FROM delivery_attempts a JOIN messages m"
        " ON m.id = a.message_id WHERE m.address = $1 AND m.event = 'payment_reminder'"
        " ORDER BY a.id",
        sandbox,
    )
    assert [a["error_code"] for a in attempts] == ["outside_window", None]
    assert attempts[-1]["outcome"] == "sent"


async def _texts_with(graph: FakeGraph, psid: str, words: str, after: int = 0) -> list[Sent]:
    return [s for s in graph.to(psid)[after:] if words.lower() in s.text.lower()]


async def test_messenger_everywhere_the_other_chats_are(
    fb_settings: Callable[..., Settings], graph: FakeGraph, conn: asyncpg.Connection
) -> None:
    """Health, /api/commands/status, the deployment's test message, export and erase."""
    async with running_app(fb_settings(), mode="serve") as client:
        person = Person(client, graph)
        await person.say("help")  # opens the window, creates the contact
        health = (await client.get("/api/health", headers=AUTH)).json()
        assert health["components"]["channels"]["messenger"]["ok"] is True
        commands = (await client.get("/api/commands/status", headers=AUTH)).json()
        assert commands["platforms"]["messenger"]["source"] == "messenger_profile"

        response = await client.post(
            "/api/notifications/test",
            json={"addresses": {"messenger": person.psid}, "locale": "fil"},
            headers=AUTH,
        )
        assert response.status_code == 202, response.text
        test = await eventually(lambda: _texts_with(graph, person.psid, "Test message ng GOMFLOW"))
        assert test[-1].body["messaging_type"] == "UPDATE"

        contact_id = await conn.fetchval(
            "SELECT contact_id FROM contact_addresses WHERE channel = 'messenger' AND address = $1",
            person.psid,
        )
        exported = (await client.get(f"/api/contacts/{contact_id}/export", headers=AUTH)).json()
        assert person.psid in json.dumps(exported)
        erased = await client.delete(f"/api/contacts/{contact_id}", headers=AUTH)
        assert erased.status_code == 200, erased.text
    assert not await conn.fetchval(
        "SELECT 1 FROM contact_addresses WHERE channel = 'messenger' AND address = $1",
        person.psid,
    )
    assert not await conn.fetchval(
        "SELECT 1 FROM messages WHERE channel = 'messenger' AND address = $1", person.psid
    )
