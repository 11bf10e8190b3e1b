"""Payment proofs: from each chat's real webhook to the (fake) Smart Agent or the GOM and back.

Each test makes its own GOM, order and buyers (fresh ids), so nothing depends on the demo
data or on another test. Files are checked by what they are, not what they claim to be.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from gomflow_messaging.channels.discord.commands import command_builders
from gomflow_messaging.settings import Settings
from gomflow_messaging.smart_agent import judge
from gomflow_messaging.workflows.chat.types import command_menu
from gomflow_messaging.workflows.proofs.intake import sniff
from gomflow_messaging.workflows.proofs.urls import image_url
from tests.fakes.discord import FakeDiscord, Signer, new_user_id, press, slash, slash_with_file
from tests.fakes.smart_agent import OTHER_BUYER, OTHER_REFERENCE, FakeSmartAgent
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SENDER, FakeTwilio
from tests.helpers import AUTH, SECRET, eventually, running_app
from tests.test_telegram_webhook import WEBHOOK_SECRET, new_chat
from tests.test_whatsapp import PUBLIC, Chat, new_phone

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32 + b"receipt pixels"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32 + b"receipt pixels"
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
_ids = itertools.count(secrets.randbelow(10**6) * 1000)


def png(n: int) -> bytes:
    """Another receipt: a PNG whose bytes (and so its sha256) differ by ``n``."""
    return PNG + f" #{n}".encode()


# -- a world of our own ----------------------------------------------------------------------


async def new_gom(conn: asyncpg.Connection, *addresses: tuple[str, str]) -> uuid.UUID:
    gom_id = uuid.uuid4()
    await conn.execute("INSERT INTO profiles (id, name) VALUES ($1, 'Proof GOM')", gom_id)
    contact = await conn.fetchval(
        "INSERT INTO contacts (kind, display_name, profile_id) VALUES ('gom', 'Proof GOM', $1)"
        " RETURNING id",
        gom_id,
    )
    for channel, address in addresses:
        await conn.execute(
            "INSERT INTO contact_addresses (contact_id, channel, address, last_inbound_at)"
            " VALUES ($1, $2, $3, now())",
            contact,
            channel,
            address,
        )
    return gom_id


async def new_order(conn: asyncpg.Connection, gom_id: uuid.UUID, title: str = "") -> uuid.UUID:
    """Closed to new buyers (buyers still pay), so other tests' order listings stay as they were."""
    order_id: uuid.UUID = await conn.fetchval(
        """
        INSERT INTO orders (user_id, title, price, currency, deadline, max_orders, is_active)
        VALUES ($1, $2, 1250.00, 'PHP', now() + interval '3 days', 100, false) RETURNING id
        """,
        gom_id,
        title or f"TWICE 'With YOU-th' {secrets.token_hex(2)}",
    )
    return order_id


async def new_buyer(
    conn: asyncpg.Connection,
    order_id: uuid.UUID,
    *addresses: tuple[str, str],
    name: str = "Ana Cruz",
    platform: str = "web",
    platform_id: str | None = None,
    contact_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """A submission (2 items, ₱2,500.00) linked to a contact with these addresses, in order."""
    if contact_id is None:
        contact_id = await conn.fetchval(
            "INSERT INTO contacts (display_name) VALUES ($1) RETURNING id", name
        )
        for priority, (channel, address) in enumerate(addresses, start=1):
            await conn.execute(
                "INSERT INTO contact_addresses (contact_id, channel, address, priority,"
                " last_inbound_at) VALUES ($1, $2, $3, $4, now() - interval '1 hour')",
                contact_id,
                channel,
                address,
                priority * 10,
            )
    reference = f"PH-{secrets.token_hex(4).upper()}"
    submission_id = await conn.fetchval(
        """
        INSERT INTO submissions (order_id, buyer_name, buyer_platform, buyer_platform_id,
                                 quantity, total_amount, currency, payment_reference)
        VALUES ($1, $2, $3, $4, 2, 2500.00, 'PHP', $5) RETURNING id
        """,
        order_id,
        name,
        platform,
        platform_id,
        reference,
    )
    await conn.execute(
        "INSERT INTO submission_contacts (submission_id, contact_id) VALUES ($1, $2)",
        submission_id,
        contact_id,
    )
    return {"contact_id": contact_id, "submission_id": submission_id, "reference": reference}


async def send_file(
    client: httpx.AsyncClient,
    address: str,
    content: bytes,
    *,
    text: str = "",
    name: str = "receipt.png",
    mime: str = "image/png",
) -> list[dict[str, Any]]:
    """A sandbox chat user sends a file through POST /api/sandbox/inbound."""
    response = await client.post(
        "/api/sandbox/inbound",
        headers=AUTH,
        json={
            "address": address,
            "text": text,
            "file": {
                "name": name,
                "mime_type": mime,
                "content_base64": base64.b64encode(content).decode(),
            },
        },
    )
    assert response.status_code == 200, response.text
    replies: list[dict[str, Any]] = response.json()["replies"]
    return replies


async def say(client: httpx.AsyncClient, address: str, text: str) -> list[dict[str, Any]]:
    response = await client.post(
        "/api/sandbox/inbound", headers=AUTH, json={"address": address, "text": text}
    )
    assert response.status_code == 200, response.text
    replies: list[dict[str, Any]] = response.json()["replies"]
    return replies


def texts(replies: list[dict[str, Any]]) -> str:
    return "\n".join(r["text"] for r in replies)


def actions(replies: list[dict[str, Any]]) -> list[str]:
    return [b["action"] for r in replies for row in r["buttons"] for b in row if b["action"]]


async def sandbox_events(conn: asyncpg.Connection, address: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT payload FROM sandbox_messages WHERE address = $1 ORDER BY id", address
    )
    return [(r["payload"]["event"], r["payload"]["text"]) for r in rows]


async def proofs_of(conn: asyncpg.Connection, submission_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM payment_proofs WHERE submission_id = $1 ORDER BY created_at",
            submission_id,
        )
    )


def sandbox_address(kind: str) -> str:
    return f"pp-{kind}-{uuid.uuid4().hex[:10]}"


AGENT_KEY = "agent-key-" + "k" * 32


@pytest.fixture
async def agent() -> AsyncIterator[FakeSmartAgent]:
    fake = await FakeSmartAgent(secret=AGENT_KEY).start()
    yield fake
    await fake.close()


# -- pieces --------------------------------------------------------------------------------


def test_files_are_recognised_by_their_first_bytes() -> None:
    assert sniff(PNG) == "image/png"
    assert sniff(JPEG) == "image/jpeg"
    assert sniff(PDF) == "application/pdf"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"\x00\x00\x00\x18ftypheic\x00\x00") == "image/heic"
    assert sniff(b"I paid, trust me") is None  # a text file named receipt.jpg
    assert sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>") is None
    assert sniff(b"") is None


def test_the_agent_is_trusted_only_for_a_confident_match_of_this_submission() -> None:
    """Scores as the real agent sends them: match_score 0-100, confidences 0-1."""
    ours, other = uuid.uuid4(), uuid.uuid4()

    def answer(**change: Any) -> dict[str, Any]:
        match = {
            "submission_id": str(ours),
            "buyer_name": OTHER_BUYER,
            "payment_reference": OTHER_REFERENCE,
            "match_score": 95,
            "confidence": 0.855,
            "auto_approve": True,
            "reasons": ["amount matches"],
        }
        match.update(change.pop("match", {}))
        extraction = {"confidence": 0.9, "payments_found": 1, "requires_review": False}
        extraction.update(change.pop("extraction", {}))
        matches = [match, *change.pop("others", [])]
        return {"success": True, "data": {"extraction": extraction, "matches": matches, **change}}

    assert judge(answer(), ours, 0.85).auto_approve
    assert judge(answer(match={"match_score": 85}), ours, 0.85).auto_approve
    assert not judge(answer(match={"match_score": 84.9}), ours, 0.85).auto_approve
    assert not judge(answer(match={"submission_id": str(other)}), ours, 0.85).auto_approve
    assert not judge(answer(extraction={"confidence": 0.84}), ours, 0.85).auto_approve
    assert not judge(answer(extraction={"requires_review": True}), ours, 0.85).auto_approve
    assert not judge(answer(review_required=True), ours, 0.85).auto_approve
    assert not judge(answer(match={"auto_approve": "true"}), ours, 0.85).auto_approve
    assert not judge(answer(match={"auto_approve": False}), ours, 0.85).auto_approve
    assert not judge(answer(match={"match_score": 0.95}), ours, 0.85).auto_approve  # 0-100
    assert not judge(answer(match={"match_score": "95"}), ours, 0.85).auto_approve
    assert not judge(answer(match={"match_score": 950}), ours, 0.85).auto_approve
    assert not judge({"success": True, "data": {"matches": "x"}}, ours, 0.85).auto_approve
    assert judge(answer(match={"match_score": 90}), ours, 0.9).auto_approve
    # Another submission the agent would approve too: whose payment is it? The GOM decides.
    rival = {"submission_id": str(other), "match_score": 96, "auto_approve": True}
    assert not judge(answer(others=[rival]), ours, 0.85).auto_approve
    # Other buyers' names and references are never kept.
    kept = judge(answer(match={"submission_id": str(other)}), ours, 0.85).summary
    assert kept["match"] is None and kept["other_matches"] == 1
    assert OTHER_BUYER not in json.dumps(kept) and OTHER_REFERENCE not in json.dumps(kept)
    kept = judge(answer(others=[{**rival, "buyer_name": "Bea"}]), ours, 0.85).summary
    assert kept["match"]["match_score"] == 95 and kept["other_matches"] == 1
    assert OTHER_BUYER not in json.dumps(kept) and "Bea" not in json.dumps(kept)


def test_pay_takes_a_receipt_attachment_and_payments_is_a_gom_command() -> None:
    menu = {c.name: c for c in command_menu("en", gom=True)}
    assert menu["payments"].gom_only
    assert "payments" not in {c.name for c in command_menu("en")}
    builders = {b.name: b for b in command_builders(list(menu.values()))}
    options = {o.name: int(o.type) for o in builders["pay"].options}
    assert options == {"reference": 3, "receipt": 11}  # STRING, ATTACHMENT


def test_production_talks_to_the_agent_over_https_with_its_own_key_only(
    database_url: str,
) -> None:
    """Finding 7: the agent used to be sent SERVICE_SECRET when it had no key of its own."""
    from gomflow_messaging.settings import ConfigError, load_settings

    base = {
        "environment": "production",
        "database_url": database_url,
        "service_secret": SECRET,
        "_env_file": None,
    }
    with pytest.raises(ConfigError, match="SMART_AGENT_SERVICE_URL must be https"):
        load_settings(
            **base, smart_agent_service_url="http://agent.internal", smart_agent_api_key=AGENT_KEY
        )
    assert load_settings(
        **base, smart_agent_service_url="https://agent.example.com", smart_agent_api_key=AGENT_KEY
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(**base, smart_agent_service_url="https://agent.example.com")
    line = str(refused.value)
    assert "SMART_AGENT_API_KEY" in line and "\n" not in line and SECRET not in line
    # Not used, nothing to refuse.
    assert load_settings(**base, smart_agent_service_url="", smart_agent_api_key="")


async def test_without_a_key_the_agent_is_sent_no_credential_never_the_service_secret(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    """In development an agent may run without a key: requests then carry no Authorization
    header at all. SERVICE_SECRET opens notify, export and erase: it never leaves."""
    open_agent = await FakeSmartAgent(secret="").start()
    try:
        buyer_chat = sandbox_address("buyer")
        buyer = await new_buyer(
            conn, await new_order(conn, await new_gom(conn)), ("sandbox", buyer_chat)
        )
        settings = make_settings(smart_agent_service_url=open_agent.url)
        async with running_app(settings, mode="serve") as client:
            await send_file(client, buyer_chat, PNG)

            async def paid() -> bool:
                status = await conn.fetchval(
                    "SELECT status FROM submissions WHERE id = $1", buyer["submission_id"]
                )
                return bool(status == "paid")

            await eventually(paid)
    finally:
        await open_agent.close()
    [sent] = open_agent.requests
    assert sent.authorization == ""
    assert SECRET not in json.dumps(sent.fields)


# -- the Smart Agent -------------------------------------------------------------------------


async def test_agent_approves_the_right_submission_and_everyone_hears(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection, agent: FakeSmartAgent
) -> None:
    gom_chat, buyer_chat = sandbox_address("gom"), sandbox_address("buyer")
    gom_id = await new_gom(conn, ("sandbox", gom_chat))
    order_id = await new_order(conn, gom_id)
    buyer = await new_buyer(conn, order_id, ("sandbox", buyer_chat))
    settings = make_settings(smart_agent_service_url=agent.url, smart_agent_api_key=AGENT_KEY)
    async with running_app(settings, mode="serve") as client:
        replies = await send_file(client, buyer_chat, PNG)
        assert "We are checking it now" in texts(replies)
        assert buyer["reference"] in texts(replies) and "₱2,500.00" in texts(replies)

        async def paid() -> bool:
            status = await conn.fetchval(
                "SELECT status FROM submissions WHERE id = $1", buyer["submission_id"]
            )
            return bool(status == "paid")

        await eventually(paid)
        buyer_heard = await eventually(lambda: sandbox_events(conn, buyer_chat))
        gom_heard = await eventually(lambda: sandbox_events(conn, gom_chat))
    assert [event for event, _text in buyer_heard] == ["payment_confirmed"]
    assert "We received your payment of ₱2,500.00" in buyer_heard[0][1]
    assert [event for event, _text in gom_heard] == ["payment_received"]
    # One request: never the expected_amount that the agent, as written, refuses in any
    # multipart form (z.number() does not coerce strings); it looks the amount up itself.
    [sent] = agent.requests
    assert sent.status == 200
    assert sent.fields == {
        "platform": "web",  # a sandbox chat: the agent knows no "sandbox"
        "submission_id": str(buyer["submission_id"]),
        "order_id": str(order_id),
        "currency": "PHP",
    }
    # Its own credential, never the service's master secret.
    assert sent.authorization == f"Bearer {AGENT_KEY}"
    assert sent.image == PNG and sent.content_type == "image/png"
    [proof] = await proofs_of(conn, buyer["submission_id"])
    assert (proof["status"], proof["decided_by"]) == ("approved", "smart_agent")
    assert proof["content"] is None  # AUTO_DELETE_PROCESSED_IMAGES
    assert proof["sha256"] == hashlib.sha256(PNG).hexdigest()
    kept = proof["agent_result"]
    assert kept["match"]["auto_approve"] is True and kept["match"]["match_score"] == 95
    assert "refused_first" not in kept
    # The agent named another buyer too (62 points): a count is all we keep of them.
    assert kept["other_matches"] == 1
    assert OTHER_BUYER not in json.dumps(kept) and OTHER_REFERENCE not in json.dumps(kept)
    audit = await conn.fetchrow(
        "SELECT actor, result, detail FROM audit_log WHERE subject = $1", str(proof["id"])
    )
    assert (audit["actor"], audit["result"]) == ("smart_agent", "approved")
    assert audit["detail"]["before"] == {"proof": "pending_review", "submission": "pending"}
    assert audit["detail"]["after"] == {"proof": "approved", "submission": "paid"}


@pytest.mark.parametrize("mode", ["low_confidence", "other_submission", "refuse", "error", "hang"])
async def test_anything_but_a_confident_match_goes_to_the_gom(
    mode: str,
    make_settings: Callable[..., Settings],
    conn: asyncpg.Connection,
    agent: FakeSmartAgent,
) -> None:
    agent.mode = mode  # type: ignore[assignment]
    gom_chat, buyer_chat = sandbox_address("gom"), sandbox_address("buyer")
    gom_id = await new_gom(conn, ("sandbox", gom_chat))
    buyer = await new_buyer(conn, await new_order(conn, gom_id), ("sandbox", buyer_chat))
    settings = make_settings(
        smart_agent_service_url=agent.url,
        smart_agent_api_key=AGENT_KEY,
        smart_agent_timeout_seconds=0.4,
        smart_agent_attempts=2,
    )
    async with running_app(settings, mode="serve") as client:
        replies = await send_file(client, buyer_chat, JPEG, name="gcash.jpg", mime="image/jpeg")
        assert "We are checking it now" in texts(replies)
        gom_heard = await eventually(lambda: sandbox_events(conn, gom_chat))
        listing = await say(client, gom_chat, "/payments")
    assert [event for event, _text in gom_heard] == ["payment_needs_review"]
    assert buyer["reference"] in gom_heard[0][1]
    assert await conn.fetchval(
        "SELECT status FROM submissions WHERE id = $1", buyer["submission_id"]
    ) == ("pending")
    [proof] = await proofs_of(conn, buyer["submission_id"])
    assert proof["status"] == "pending_review" and proof["content"] == JPEG
    result = proof["agent_result"]
    assert OTHER_BUYER not in json.dumps(result) and OTHER_REFERENCE not in json.dumps(result)
    card = texts(listing)
    assert OTHER_BUYER not in card and OTHER_REFERENCE not in card
    if mode in ("error", "hang"):
        assert result == {
            "status": "unavailable",
            "error": "http_500" if mode == "error" else "timeout",
        }
        # One form, tried twice (once retried): never a refused form first.
        assert len(agent.requests) == 2
        assert all("expected_amount" not in r.fields for r in agent.requests)
        assert "Smart Agent: no answer" in card
    elif mode == "refuse":
        # A 400 is the agent refusing this request: not asked again; the GOM reviews,
        # with the agent's reason recorded.
        [refused] = agent.requests
        assert refused.status == 400 and "expected_amount" not in refused.fields
        assert result == {"status": "refused", "reasons": ["Invalid request data: Required"]}
        assert "Smart Agent: no answer" in card
    elif mode == "other_submission":
        assert result["match"] is None and result["other_matches"] == 1
        assert "no match with this order" in card
    else:
        assert result["match"]["match_score"] == 55
        assert "certainty: 41%" in card and "matches this order at 55%" in card
    assert await sandbox_events(conn, buyer_chat) == []  # nothing confirmed, nothing rejected


async def insert_waiting_proof(
    conn: asyncpg.Connection, buyer: dict[str, Any], age_seconds: float
) -> uuid.UUID:
    """A receipt stored for the agent whose job never reached (or left) Redis."""
    proof_id: uuid.UUID = await conn.fetchval(
        """
        INSERT INTO payment_proofs (submission_id, contact_id, channel, content, mime, size,
                                    sha256, status, created_at)
        VALUES ($1, $2, 'sandbox', $3, 'image/png', $4, $5, 'pending_review',
                now() - make_interval(secs => $6))
        RETURNING id
        """,
        buyer["submission_id"],
        buyer["contact_id"],
        PNG,
        len(PNG),
        hashlib.sha256(PNG).hexdigest(),
        age_seconds,
    )
    return proof_id


async def test_a_proof_whose_agent_job_was_lost_is_swept(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection, agent: FakeSmartAgent
) -> None:
    """As the outbox sweeper does for messages: after the grace period a proof still waiting
    for the agent is enqueued again; one that has waited an hour goes to the GOM instead."""
    gom_chat = sandbox_address("gom")
    gom_id = await new_gom(conn, ("sandbox", gom_chat))
    order_id = await new_order(conn, gom_id)
    lost = await new_buyer(conn, order_id, ("sandbox", sandbox_address("lost")))
    stale = await new_buyer(conn, order_id, ("sandbox", sandbox_address("stale")), name="Bea")
    lost_proof = await insert_waiting_proof(conn, lost, 60)
    stale_proof = await insert_waiting_proof(conn, stale, 7200)
    settings = make_settings(smart_agent_service_url=agent.url, smart_agent_api_key=AGENT_KEY)
    async with running_app(settings, mode="serve"):

        async def decided() -> bool:
            rows = await conn.fetch(
                "SELECT id, status, checked_at FROM payment_proofs WHERE id = ANY($1)",
                [lost_proof, stale_proof],
            )
            return all(r["checked_at"] is not None for r in rows)

        await eventually(decided)

        async def both_heard() -> list[tuple[str, str]] | None:
            heard = await sandbox_events(conn, gom_chat)
            return heard if len(heard) >= 2 else None

        gom_heard = await eventually(both_heard)
    [approved] = await proofs_of(conn, lost["submission_id"])
    assert (approved["status"], approved["decided_by"]) == ("approved", "smart_agent")
    [waiting] = await proofs_of(conn, stale["submission_id"])
    assert waiting["status"] == "pending_review"
    assert waiting["agent_result"] == {"status": "unavailable", "error": "no_answer"}
    # (Receipts other tests left waiting in this database are swept to this agent too.)
    asked = {r.fields["submission_id"] for r in agent.requests}
    assert str(lost["submission_id"]) in asked and str(stale["submission_id"]) not in asked
    assert sorted(event for event, _text in gom_heard) == [
        "payment_needs_review",
        "payment_received",
    ]


async def test_doctor_asks_the_agent_and_warns_when_it_has_no_key(
    make_settings: Callable[..., Settings], agent: FakeSmartAgent
) -> None:
    from gomflow_messaging import doctor

    settings = make_settings(smart_agent_service_url=agent.url, smart_agent_api_key=AGENT_KEY)
    findings = {f.name: f for f in await doctor.run(settings)}
    assert findings["smart agent"].ok and "healthy" in findings["smart agent"].detail
    assert "smart agent credential" not in findings  # it has its own key
    agent.healthy = False
    # The agent away is a warning (receipts go to the GOM meanwhile), never "all passed".
    findings_away = await doctor.run(settings)
    [found] = [f for f in findings_away if f.name == "smart agent"]
    assert found.ok and found.warning and "http_503" in found.detail
    assert "[WARN] smart agent: unreachable now" in doctor.report(findings_away)
    assert "all checks passed" not in doctor.report(findings_away)

    keyless = settings.model_copy(update={"smart_agent_api_key": None})
    warning = doctor.agent_credential(keyless)
    assert warning is not None and warning.ok and warning.warning
    assert "SMART_AGENT_API_KEY" in warning.detail and "no credential" in warning.detail
    assert "[WARN] smart agent credential" in doctor.report([warning])
    keyed = keyless.model_copy(update={"smart_agent_api_key": SecretStr(AGENT_KEY)})
    assert doctor.agent_credential(keyed) is None


# -- buyer side: whose submission, which file ----------------------------------------------


async def test_a_buyer_cannot_prove_payment_for_someone_elses_reference(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    gom_id = await new_gom(conn)
    order_id = await new_order(conn, gom_id)
    mallory_chat, victim_chat = sandbox_address("mallory"), sandbox_address("victim")
    mallory = await new_buyer(conn, order_id, ("sandbox", mallory_chat), name="Mallory")
    victim = await new_buyer(conn, order_id, ("sandbox", victim_chat), name="Victoria Santos")
    async with running_app(make_settings(), mode="web") as client:
        theirs = await send_file(client, mallory_chat, PNG, text=f"paid {victim['reference']}")
        made_up = await send_file(client, mallory_chat, PNG, text="paid PH-ZZZZZZZZ")
        chosen = await say(client, mallory_chat, f"proof {victim['submission_id']}")
        stranger = await send_file(client, sandbox_address("stranger"), PNG)
    # The same answer whether the reference is someone else's or does not exist.
    assert texts(theirs) == texts(made_up).replace("PH-ZZZZZZZZ", victim["reference"])
    assert "I found no order of yours" in texts(theirs)
    assert "Victoria" not in texts(theirs) + texts(chosen)
    assert "could not find that order among yours" in texts(chosen)
    assert "nothing waiting for payment" in texts(stranger)
    for who in (mallory, victim):
        assert await proofs_of(conn, who["submission_id"]) == []
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM payment_proofs WHERE contact_id = $1", mallory["contact_id"]
        )
        == 0
    )


async def test_several_unpaid_orders_are_chosen_with_buttons(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    gom_id = await new_gom(conn)
    chat = sandbox_address("buyer")
    first = await new_buyer(conn, await new_order(conn, gom_id, "Order One"), ("sandbox", chat))
    second = await new_buyer(
        conn,
        await new_order(conn, gom_id, "Order Two"),
        contact_id=first["contact_id"],
    )
    async with running_app(make_settings(), mode="web") as client:
        asked = await send_file(client, chat, PDF, name="bank.pdf", mime="application/pdf")
        choices = actions(asked)
        assert sorted(choices) == sorted(
            [f"proof {first['submission_id']}", f"proof {second['submission_id']}"]
        )
        assert all(len(a.encode()) <= 64 for a in choices)
        assert "Which order is this receipt for?" in texts(asked)
        done = await say(client, chat, f"proof {second['submission_id']}")
        again = await say(client, chat, f"proof {first['submission_id']}")
    assert second["reference"] in texts(done) and "Your GOM will check it" in texts(done)
    [proof] = await proofs_of(conn, second["submission_id"])
    assert (proof["status"], proof["mime"], proof["content"]) == (
        "pending_review",
        "application/pdf",
        PDF,
    )
    assert "send your receipt again" in texts(again)  # that receipt was used
    assert await proofs_of(conn, first["submission_id"]) == []


async def test_uploads_are_limited_per_sender(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    gom_id = await new_gom(conn)
    chat = sandbox_address("buyer")
    buyer = await new_buyer(conn, await new_order(conn, gom_id), ("sandbox", chat))
    settings = make_settings(rate_limit_max_uploads=2, rate_limit_window_ms=600_000)
    async with running_app(settings, mode="web") as client:
        answers = [texts(await send_file(client, chat, png(n))) for n in range(4)]
        other = texts(await send_file(client, sandbox_address("someone"), PNG))
    assert "We received your receipt" in answers[0] and "We received your receipt" in answers[1]
    assert "many files in a short time" in answers[2]
    assert answers[3] == ""  # said once; then silence until the window ends
    assert "many files" not in other  # counted per sender
    assert len(await proofs_of(conn, buyer["submission_id"])) == 2


# -- GOM side: review in chat ----------------------------------------------------------------


async def test_gom_reviews_approves_and_rejects_in_chat(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    gom_chat = sandbox_address("gom")
    gom_id = await new_gom(conn, ("sandbox", gom_chat))
    order_id = await new_order(conn, gom_id)
    ana_chat, ben_chat = sandbox_address("ana"), sandbox_address("ben")
    ana = await new_buyer(conn, order_id, ("sandbox", ana_chat), name="Ana Cruz")
    ben = await new_buyer(conn, order_id, ("sandbox", ben_chat), name="Ben Lim")
    settings = make_settings(public_base_url="https://gomflow.example.com")
    async with running_app(settings, mode="serve") as client:
        await send_file(client, ana_chat, PNG)
        await send_file(client, ben_chat, PDF, name="r.pdf", mime="application/pdf")
        listing = await say(client, gom_chat, "/payments")
        assert texts(listing[:1]) == "Payment proofs to review: 2"
        ana_card, ben_card = listing[1], listing[2]
        assert "Ana Cruz" in ana_card["text"] and ana["reference"] in ana_card["text"]
        assert "Amount due: ₱2,500.00" in ana_card["text"]
        assert "Smart Agent: not used" in ana_card["text"]
        [ana_proof] = await proofs_of(conn, ana["submission_id"])
        [ben_proof] = await proofs_of(conn, ben["submission_id"])
        assert actions([ana_card]) == [f"approve {ana_proof['id']}", f"reject {ana_proof['id']}"]
        # The image, at a signed URL the chat platform can fetch; a PDF gets a link instead.
        url = urlsplit(ana_card["image_url"])
        assert f"{url.scheme}://{url.netloc}" == "https://gomflow.example.com"
        image = await client.get(f"{url.path}?{url.query}")
        assert image.status_code == 200 and image.content == PNG
        assert image.headers["content-type"] == "image/png"
        assert ben_card["image_url"] == ""
        [link] = [b["url"] for row in ben_card["buttons"] for b in row if b["url"]]
        assert (await client.get(link.removeprefix("https://gomflow.example.com"))).content == PDF

        approved = await say(client, gom_chat, f"approve {ana_proof['id']}")
        assert "Approved" in texts(approved)
        twice = await say(client, gom_chat, f"approve {ana_proof['id']}")
        assert "already approved" in texts(twice)
        assert (await client.get(f"{url.path}?{url.query}")).status_code == 410  # deleted

        why = await say(client, gom_chat, f"reject {ben_proof['id']}")
        reasons = actions(why)
        assert f"reject {ben_proof['id']} amount" in reasons
        assert all(len(a.encode()) <= 64 for a in reasons)
        asked = await say(client, gom_chat, f"reject {ben_proof['id']} other")
        assert "Type the reason" in texts(asked)
        rejected = await say(client, gom_chat, "You sent ₱250 instead of ₱2,500")
        assert "Rejected" in texts(rejected)
        ana_heard = await eventually(lambda: sandbox_events(conn, ana_chat))
        ben_heard = await eventually(lambda: sandbox_events(conn, ben_chat))
        empty = await say(client, gom_chat, "/payments")
    assert [e for e, _t in ana_heard] == ["payment_confirmed"]
    assert [e for e, _t in ben_heard] == ["payment_rejected"]
    assert "You sent ₱250 instead of ₱2,500" in ben_heard[0][1]
    assert "send a clear screenshot of your receipt again" in ben_heard[0][1]
    assert "No payment proofs are waiting" in texts(empty)
    statuses = dict(
        await conn.fetch(
            "SELECT id, status FROM submissions WHERE id = ANY($1::uuid[])",
            [ana["submission_id"], ben["submission_id"]],
        )
    )
    assert statuses == {ana["submission_id"]: "paid", ben["submission_id"]: "pending"}
    rows = await conn.fetch(
        "SELECT status, content, sha256, size, reason, decided_by FROM payment_proofs"
        " WHERE id = ANY($1::uuid[]) ORDER BY status",
        [ana_proof["id"], ben_proof["id"]],
    )
    assert [(r["status"], r["content"], r["decided_by"]) for r in rows] == [
        ("approved", None, f"gom:{gom_id}"),
        ("rejected", None, f"gom:{gom_id}"),
    ]
    assert all(len(r["sha256"]) == 64 and r["size"] > 0 for r in rows)
    assert rows[1]["reason"] == "You sent ₱250 instead of ₱2,500"
    audits = await conn.fetch(
        "SELECT actor, action, result, detail FROM audit_log WHERE subject = ANY($1::text[])"
        " ORDER BY id",
        [str(ana_proof["id"]), str(ben_proof["id"])],
    )
    assert [(a["actor"], a["action"], a["result"]) for a in audits] == [
        (f"gom:{gom_id}", "payment_proof.approve", "approved"),
        (f"gom:{gom_id}", "payment_proof.reject", "rejected"),
    ]
    assert audits[1]["detail"]["after"] == {"proof": "rejected", "submission": "pending"}


async def test_a_common_reason_reaches_the_buyer_in_their_language(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    gom_chat, buyer_chat = sandbox_address("gom"), sandbox_address("buyer")
    gom_id = await new_gom(conn, ("sandbox", gom_chat))
    buyer = await new_buyer(conn, await new_order(conn, gom_id), ("sandbox", buyer_chat))
    await conn.execute("UPDATE contacts SET locale = 'fil' WHERE id = $1", buyer["contact_id"])
    async with running_app(make_settings(), mode="serve") as client:
        await send_file(client, buyer_chat, PNG)
        [proof] = await proofs_of(conn, buyer["submission_id"])
        await say(client, gom_chat, f"reject {proof['id']} unreadable")
        heard = await eventually(lambda: sandbox_events(conn, buyer_chat))
    from gomflow_messaging.i18n import gettext

    assert gettext("fil", "the receipt cannot be read") in heard[0][1]
    assert gettext("fil", "the receipt cannot be read") != "the receipt cannot be read"


async def test_only_the_gom_who_owns_the_order_decides(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    owner_chat, rival_chat = sandbox_address("owner"), sandbox_address("rival")
    owner = await new_gom(conn, ("sandbox", owner_chat))
    await new_gom(conn, ("sandbox", rival_chat))
    buyer_chat = sandbox_address("buyer")
    buyer = await new_buyer(conn, await new_order(conn, owner), ("sandbox", buyer_chat))
    async with running_app(make_settings(), mode="web") as client:
        await send_file(client, buyer_chat, PNG)
        [proof] = await proofs_of(conn, buyer["submission_id"])
        rival_list = await say(client, rival_chat, "/payments")
        rival = await say(client, rival_chat, f"approve {proof['id']}")
        rival_reject = await say(client, rival_chat, f"reject {proof['id']} amount")
        own_buyer = await say(client, buyer_chat, f"approve {proof['id']}")
        signed = urlsplit(image_url(make_settings(), proof["id"]))
        forged = await client.get(f"{signed.path}?exp={int(time.time()) + 60}&sig={'0' * 64}")
        expired = urlsplit(image_url(make_settings(), proof["id"], now=time.time() - 3600))
        late = await client.get(f"{expired.path}?{expired.query}")
        good = await client.get(f"{signed.path}?{signed.query}")
    assert "No payment proofs" in texts(rival_list)
    assert "could not find that payment proof" in texts(rival)
    assert "could not find that payment proof" in texts(rival_reject)
    assert "Only a GOM can do that" in texts(own_buyer)
    assert (forged.status_code, late.status_code, good.status_code) == (403, 403, 200)
    [still] = await proofs_of(conn, buyer["submission_id"])
    assert still["status"] == "pending_review" and still["content"] == PNG
    assert (
        await conn.fetchval("SELECT status FROM submissions WHERE id = $1", buyer["submission_id"])
        == "pending"
    )


# -- through each chat's webhook -------------------------------------------------------------


def _private_message(chat_id: int, **content: Any) -> dict[str, Any]:
    return {
        "update_id": next(_ids),
        "message": {
            "message_id": next(_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Ana"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Ana", "language_code": "en"},
            **content,
        },
    }


def photo_update(chat_id: int, file_id: str, size: int, caption: str = "") -> dict[str, Any]:
    sizes = [
        {"file_id": f"{file_id}-s", "file_unique_id": "s", "width": 90, "height": 160},
        {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "width": 720,
            "height": 1280,
            "file_size": size,
        },
    ]
    extra: dict[str, Any] = {"caption": caption} if caption else {}
    return _private_message(chat_id, photo=sizes, **extra)


def document_update(chat_id: int, file_id: str, size: int, name: str, mime: str) -> dict[str, Any]:
    document = {
        "file_id": file_id,
        "file_unique_id": f"u{file_id}",
        "file_name": name,
        "mime_type": mime,
        "file_size": size,
    }
    return _private_message(chat_id, document=document)


async def tg_post(client: httpx.AsyncClient, update: dict[str, Any]) -> str:
    response = await client.post(
        "/webhook/telegram",
        json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.get("method") == "sendMessage", body
    return str(body["text"])


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    fake = await FakeTelegram().start()
    yield fake
    await fake.close()


def telegram_settings(fake: FakeTelegram) -> dict[str, Any]:
    return {
        "enable_telegram": True,
        "telegram_bot_token": fake.token,
        "telegram_webhook_secret": WEBHOOK_SECRET,
        "telegram_api_base_url": fake.url,
    }


async def test_telegram_photo_document_too_large_and_wrong_type(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection, telegram: FakeTelegram
) -> None:
    gom_id = await new_gom(conn)
    chat = new_chat()
    buyer = await new_buyer(conn, await new_order(conn, gom_id), ("telegram", str(chat)))
    telegram.files["photos/ph1.jpg"] = JPEG
    telegram.files["docs/txt1.jpg"] = b"I paid already, promise"
    settings = make_settings(**telegram_settings(telegram), max_file_size=1024)
    async with running_app(settings, mode="web") as client:
        too_large = await tg_post(
            client, document_update(chat, "big1", 5000, "r.pdf", "application/pdf")
        )
        wrong = await tg_post(
            client, document_update(chat, "txt1", 23, "receipt.jpg", "image/jpeg")
        )
        accepted = await tg_post(client, photo_update(chat, "ph1", len(JPEG), buyer["reference"]))
    assert "too large" in too_large and "under 1 MB" in too_large
    assert "not a picture or a PDF" in wrong
    assert "We received your receipt for " + buyer["reference"] in accepted
    # The large one was refused from what Telegram declared: never fetched.
    assert [c.params["file_id"] for c in telegram.requests("getFile")] == ["txt1", "ph1"]
    [proof] = await proofs_of(conn, buyer["submission_id"])
    assert (proof["channel"], proof["mime"], proof["content"]) == ("telegram", "image/jpeg", JPEG)


async def test_whatsapp_media_from_twilio_becomes_a_proof(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    twilio = await FakeTwilio().start()
    try:
        _typed, phone = new_phone()
        gom_id = await new_gom(conn)
        buyer = await new_buyer(
            conn,
            await new_order(conn, gom_id),
            ("whatsapp", phone),
            platform="whatsapp",
            platform_id=phone,
        )
        path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{uuid.uuid4().hex}/Media/ME1"
        twilio.media[path] = ("image/jpeg", JPEG)
        settings = make_settings(**whatsapp_settings(twilio))
        async with running_app(settings, mode="web") as client:
            chat = Chat(client, phone)
            media = {
                "NumMedia": "1",
                "MediaContentType0": "image/jpeg",
                "MediaUrl0": "https://api.twilio.com" + path,
            }
            answer = await chat.say("", **media)
            elsewhere = await chat.say(
                "", **{**media, "MediaUrl0": "https://evil.example.com" + path}
            )
    finally:
        await twilio.close()
    assert "We received your receipt for " + buyer["reference"] in answer[0]
    assert "could not get that file" in elsewhere[0]  # our credentials go to Twilio only
    [proof] = await proofs_of(conn, buyer["submission_id"])
    assert (proof["channel"], proof["content"]) == ("whatsapp", JPEG)
    assert twilio.unauthorized == 0


def whatsapp_settings(twilio: FakeTwilio) -> dict[str, Any]:
    return {
        "enable_whatsapp": True,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_whatsapp_number": SENDER,
        "twilio_api_base_url": twilio.base_url,
        "twilio_timeout_seconds": 2,
        "public_base_url": PUBLIC,
    }


def discord_settings(fake: FakeDiscord, signer: Signer) -> dict[str, Any]:
    return {
        "enable_discord": True,
        "discord_token": fake.token,
        "discord_client_id": fake.application_id,
        "discord_public_key": signer.public_key,
        "discord_api_base_url": fake.base_url,
        "discord_request_timeout_seconds": 2,
        "discord_attachment_hosts": f"127.0.0.1:{fake.port}",
    }


async def interact(client: httpx.AsyncClient, signer: Signer, payload: dict[str, Any]) -> Any:
    body = json.dumps(payload).encode()
    response = await client.post("/webhook/discord", content=body, headers=signer.headers(body))
    assert response.status_code == 200, response.text
    return response.json()


async def test_discord_pay_with_an_attachment_becomes_a_proof(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    signer = Signer()
    fake = await FakeDiscord(public_key=signer.public_key).start()
    try:
        user = new_user_id()
        gom_id = await new_gom(conn)
        buyer = await new_buyer(
            conn,
            await new_order(conn, gom_id),
            ("discord", user),
            platform="discord",
            platform_id=user,
        )
        fake.attachments["11/22/receipt.png"] = PNG
        fake.attachments["11/23/notes.png"] = b"just text"
        settings = make_settings(**discord_settings(fake, signer))

        def attachment(path: str, size: int) -> dict[str, Any]:
            return {
                "filename": path.rsplit("/", 1)[-1],
                "size": size,
                "url": fake.attachment_url(path),
                "proxy_url": fake.attachment_url(path),
                "content_type": "image/png",
            }

        async with running_app(settings, mode="web") as client:
            answer = await interact(
                client,
                signer,
                slash_with_file(
                    "pay",
                    "receipt",
                    attachment("11/22/receipt.png", len(PNG)),
                    {"reference": buyer["reference"]},
                    user_id=user,
                ),
            )
            wrong = await interact(
                client,
                signer,
                slash_with_file("pay", "receipt", attachment("11/23/notes.png", 9), user_id=user),
            )
    finally:
        await fake.close()
    assert answer["type"] == 4 and answer["data"]["flags"] & 64  # only the buyer sees it
    assert "We received your receipt for " + buyer["reference"] in answer["data"]["content"]
    assert "not a picture or a PDF" in wrong["data"]["content"]
    assert fake.attachment_downloads == 2
    [proof] = await proofs_of(conn, buyer["submission_id"])
    assert (proof["channel"], proof["content"]) == ("discord", PNG)


# -- the "done when" -------------------------------------------------------------------


async def test_telegram_screenshot_approved_from_discord_confirmed_on_whatsapp(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection, telegram: FakeTelegram
) -> None:
    signer = Signer()
    discord = await FakeDiscord(public_key=signer.public_key).start()
    twilio = await FakeTwilio().start()
    try:
        gom_discord = new_user_id()
        gom_id = await new_gom(conn, ("discord", gom_discord))
        chat, (_typed, phone) = new_chat(), new_phone()
        # Her first route is WhatsApp (where she submitted); she also talks to us on Telegram.
        buyer = await new_buyer(
            conn,
            await new_order(conn, gom_id, "SEVENTEEN 'SPILL THE FEELS'"),
            ("whatsapp", phone),
            ("telegram", str(chat)),
            name="Maria Clara",
            platform="whatsapp",
            platform_id=phone,
        )
        telegram.files["photos/shot1.jpg"] = JPEG
        settings = make_settings(
            **telegram_settings(telegram),
            **discord_settings(discord, signer),
            **whatsapp_settings(twilio),
            enable_sandbox=False,
        )
        async with running_app(settings, mode="serve") as client:
            received = await tg_post(client, photo_update(chat, "shot1", len(JPEG)))
            assert "We received your receipt for " + buyer["reference"] in received

            # The GOM hears on Discord, opens /payments there and approves.
            alert = await eventually(lambda: _now(discord.dm_messages(gom_discord)))
            assert "Payment proof to review" in json.dumps(alert)
            listing = slash("payments", user_id=gom_discord, guild_id="")
            first = await interact(client, signer, listing)
            assert first["data"]["content"] == "Payment proofs to review: 1"
            [(_method, card)] = await eventually(lambda: _now(discord.follow_ups(listing["token"])))
            assert "Maria Clara" in card["content"] and buyer["reference"] in card["content"]
            assert "/api/proofs/" in card["embeds"][0]["image"]["url"]
            approve = next(
                b["custom_id"]
                for row in card["components"]
                for b in row["components"]
                if b["custom_id"].startswith("approve ")
            )
            done = await interact(client, signer, press(approve, user_id=gom_discord, guild_id=""))
            assert done["data"]["content"].startswith("Approved")

            # The buyer is told on WhatsApp, her first route.
            [confirmed] = await eventually(lambda: _now(twilio.to(phone)))
    finally:
        await discord.close()
        await twilio.close()
    assert "Payment confirmed" in confirmed.body and buyer["reference"] in confirmed.body
    assert "₱2,500.00" in confirmed.body
    assert telegram.sent(chat) == []  # not on Telegram as well
    assert (
        await conn.fetchval("SELECT status FROM submissions WHERE id = $1", buyer["submission_id"])
        == "paid"
    )
    [proof] = await proofs_of(conn, buyer["submission_id"])
    assert (proof["status"], proof["channel"], proof["decided_by"]) == (
        "approved",
        "telegram",
        f"gom:{gom_id}",
    )
    assert proof["content"] is None and proof["sha256"]


async def _now(value: Any) -> Any:
    return value
