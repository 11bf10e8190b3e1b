"""Discord interactions at /webhook/discord: signed requests, answers in the response,
follow-ups and deferred answers through the fake Discord API, commands sync and status."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from gomflow_messaging import cli
from gomflow_messaging.demo import ORDER_PH_ID
from gomflow_messaging.settings import Settings
from gomflow_messaging.workflows.chat.types import command_menu
from tests.conftest import unique_text
from tests.fakes.discord import (
    APP_ID,
    TOKEN,
    FakeDiscord,
    Signer,
    autocomplete,
    check_message,
    modal_submit,
    new_user_id,
    press,
    slash,
)
from tests.helpers import AUTH, SECRET, eventually, running_app

EPHEMERAL = 64
GUILD = "200000000000000001"


@pytest.fixture
async def fake(signer: Signer) -> AsyncIterator[FakeDiscord]:
    server = await FakeDiscord(public_key=signer.public_key).start()
    yield server
    await server.close()


@pytest.fixture
def discord_settings(
    make_settings: Callable[..., Settings], fake: FakeDiscord, signer: Signer
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "enable_discord": True,
            "discord_token": TOKEN,
            "discord_client_id": APP_ID,
            "discord_public_key": signer.public_key,
            "discord_api_base_url": fake.base_url,
            "discord_request_timeout_seconds": 2,
            # The tests that assert an immediate answer (type 4 or 9) allow the handler the
            # most Discord's 3 s rule permits, not the 2 s default: on a loaded machine a
            # slow handler would otherwise turn the answer into a deferral. The deferral
            # tests set their own short deadline.
            "discord_answer_deadline_seconds": 2.8,
        }
        return make_settings(**{**values, **overrides})

    return make


@pytest.fixture
async def open_order(
    conn: asyncpg.Connection,
) -> AsyncIterator[Callable[..., Awaitable[uuid.UUID]]]:
    """Opens orders for one test and closes them after it, so other tests' lists stay as
    they expect (the database is shared by the whole run)."""
    made: list[uuid.UUID] = []

    async def make(gom_id: uuid.UUID, title: str, days: int = 20) -> uuid.UUID:
        order_id: uuid.UUID = await conn.fetchval(
            "INSERT INTO orders (user_id, title, price, currency, deadline, slug, max_orders)"
            " VALUES ($1, $2, 99, 'PHP', now() + make_interval(days => $3), $4, 10)"
            " RETURNING id",
            gom_id,
            title,
            days,
            unique_text("order"),
        )
        made.append(order_id)
        return order_id

    yield make
    await conn.execute("UPDATE orders SET is_active = false WHERE id = ANY($1::uuid[])", made)


async def post(
    client: httpx.AsyncClient,
    signer: Signer,
    payload: dict[str, Any],
    *,
    timestamp: int | None = None,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post(
        "/webhook/discord", content=body, headers=signer.headers(body, timestamp)
    )


def inputs(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["custom_id"]: c for row in answer["data"]["components"] for c in row["components"]}


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [
        b["custom_id"]
        for row in message.get("components") or []
        for b in row["components"]
        if "custom_id" in b
    ]


# -- verification ------------------------------------------------------------------------


async def test_ping_is_answered_with_pong(
    discord_settings: Callable[..., Settings], signer: Signer
) -> None:
    async with running_app(discord_settings(), mode="web") as client:
        response = await post(client, signer, {"type": 1, "id": "1", "token": "t"})
    assert response.status_code == 200
    assert response.json() == {"type": 1}


async def test_forged_signature_is_401_and_changes_nothing(
    discord_settings: Callable[..., Settings], signer: Signer, conn: asyncpg.Connection
) -> None:
    user = new_user_id()
    body = json.dumps(slash("help", user_id=user)).encode()
    forged = Signer().headers(body)  # another key
    tampered = signer.headers(body)
    async with running_app(discord_settings(), mode="web") as client:
        first = await client.post("/webhook/discord", content=body, headers=forged)
        second = await client.post(
            "/webhook/discord", content=body.replace(b"help", b"stop"), headers=tampered
        )
        missing = await client.post(
            "/webhook/discord", content=body, headers={"Content-Type": "application/json"}
        )
    for response in (first, second, missing):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_signature"
    seen = await conn.fetchval(
        "SELECT count(*) FROM contact_addresses WHERE channel = 'discord' AND address = $1", user
    )
    assert seen == 0


async def test_stale_timestamp_is_refused(
    discord_settings: Callable[..., Settings], signer: Signer
) -> None:
    payload = slash("help", user_id=new_user_id())
    async with running_app(discord_settings(), mode="web") as client:
        stale = await post(client, signer, payload, timestamp=int(time.time()) - 301)
        fresh = await post(client, signer, payload)
    assert stale.status_code == 401
    assert "old" in stale.json()["error"]["message"]
    assert fresh.status_code == 200


# -- commands, buttons, modals -----------------------------------------------------------


async def test_status_command_answers_privately_with_the_buyers_order(
    discord_settings: Callable[..., Settings], signer: Signer, demo: dict[str, Any]
) -> None:
    buyer = "800000000000000003"  # the demo's Discord buyer, reference MY-DEMO0003
    async with running_app(discord_settings(), mode="web") as client:
        mine = await post(
            client, signer, slash("status", {"reference": "MY-DEMO0003"}, user_id=buyer)
        )
        other = await post(
            client, signer, slash("status", {"reference": "MY-DEMO0003"}, user_id=new_user_id())
        )
    answer = mine.json()
    assert answer["type"] == 4
    assert "MY-DEMO0003" in answer["data"]["content"]
    assert "BLACKPINK" in answer["data"]["content"]
    assert answer["data"]["flags"] & EPHEMERAL
    assert "BLACKPINK" not in other.json()["data"]["content"]  # never someone else's order


async def test_orders_is_one_message_of_embeds_with_join_buttons(
    discord_settings: Callable[..., Settings],
    signer: Signer,
    fake: FakeDiscord,
    demo: dict[str, Any],
) -> None:
    payload = slash("orders", user_id=new_user_id())
    async with running_app(discord_settings(), mode="web") as client:
        answer = (await post(client, signer, payload)).json()
    assert answer["type"] == 4
    data = answer["data"]
    assert data["content"].startswith("Open orders")
    assert check_message(data) == []
    assert 1 <= len(data["embeds"]) <= 10
    card = next(e for e in data["embeds"] if "SEVENTEEN" in e["title"])
    fields = {f["name"]: f["value"] for f in card["fields"]}
    assert fields["Price"] == "₱1,250.00"
    # The deadline names its zone (the buyer's; Manila unless they chose another).
    assert fields["Deadline"].endswith("PH time")
    assert re.fullmatch(r"\d+ / 50", fields["Taken"])
    assert f"submit {ORDER_PH_ID}" in custom_ids(data)
    assert fake.follow_ups(payload["token"]) == []  # one message, nothing after it


async def test_orders_page_past_ten_with_a_next_button_that_survives_a_restart(
    discord_settings: Callable[..., Settings],
    signer: Signer,
    demo: dict[str, Any],
    open_order: Callable[..., Awaitable[uuid.UUID]],
) -> None:
    for n in range(11):
        await open_order(demo["gom_id"], f"Paging test {n} " + "x" * 200)
    user = new_user_id()
    async with running_app(discord_settings(), mode="web") as client:
        first = (await post(client, signer, slash("orders", user_id=user))).json()["data"]
    assert check_message(first) == []
    assert len(first["embeds"]) == 10
    assert "orders 2" in custom_ids(first)
    async with running_app(discord_settings(), mode="web") as other:  # another process
        second = (await post(other, signer, press("orders 2", user_id=user))).json()["data"]
    assert check_message(second) == []
    assert second["content"].startswith("Open orders (page 2 of")
    assert second["embeds"]
    assert "orders 1" in custom_ids(second)
    assert not {e["title"] for e in first["embeds"]} & {e["title"] for e in second["embeds"]}


async def test_autocomplete_suggests_open_orders_and_only_the_buyers_own_references(
    discord_settings: Callable[..., Settings], signer: Signer, demo: dict[str, Any]
) -> None:
    buyer = "800000000000000003"  # the demo's Discord buyer, reference MY-DEMO0003
    stranger = new_user_id()
    async with running_app(discord_settings(), mode="web") as client:
        orders = (
            await post(client, signer, autocomplete("submit", "order", "lightst", user_id=buyer))
        ).json()
        mine = (
            await post(client, signer, autocomplete("status", "reference", "", user_id=buyer))
        ).json()
        others = (
            await post(
                client, signer, autocomplete("status", "reference", "DEMO", user_id=stranger)
            )
        ).json()
        unpaid = (
            await post(client, signer, autocomplete("pay", "reference", "my-", user_id=buyer))
        ).json()
    assert orders["type"] == 8
    assert orders["data"]["choices"] == [
        {"name": "BLACKPINK Lightstick v2 · RM 85.00", "value": "demo-bp-lightstick"}
    ]
    assert [c["value"] for c in mine["data"]["choices"]] == ["MY-DEMO0003"]
    assert "BLACKPINK" in mine["data"]["choices"][0]["name"]
    assert others == {"type": 8, "data": {"choices": []}}  # never another buyer's reference
    assert [c["value"] for c in unpaid["data"]["choices"]] == ["MY-DEMO0003"]
    for answer in (orders, mine, unpaid):
        assert len(answer["data"]["choices"]) <= 25
        assert all(1 <= len(c["name"]) <= 100 for c in answer["data"]["choices"])


async def test_submit_with_an_order_code_opens_the_form_at_once(
    discord_settings: Callable[..., Settings], signer: Signer, demo: dict[str, Any]
) -> None:
    payload = slash("submit", {"order": "demo-svt-fml"}, user_id=new_user_id())
    async with running_app(discord_settings(), mode="web") as client:
        answer = (await post(client, signer, payload)).json()
    assert answer["type"] == 9
    assert answer["data"]["custom_id"] == f"submit:{ORDER_PH_ID}"


async def test_texts_name_commands_as_discord_users_type_them(
    discord_settings: Callable[..., Settings], signer: Signer
) -> None:
    async with running_app(discord_settings(), mode="web") as client:
        answer = (await post(client, signer, slash("status", user_id=new_user_id()))).json()
    assert "Send /orders to browse." in answer["data"]["content"]  # not WhatsApp's ORDERS


async def test_a_buyer_name_with_markdown_is_inert_in_the_goms_discord_card(
    discord_settings: Callable[..., Settings],
    signer: Signer,
    fake: FakeDiscord,
    conn: asyncpg.Connection,
    demo: dict[str, Any],
    open_order: Callable[..., Awaitable[uuid.UUID]],
) -> None:
    gom_user, buyer = new_user_id(), new_user_id()
    profile = uuid.uuid4()
    await conn.execute(
        "INSERT INTO profiles (id, name, email, country, timezone)"
        " VALUES ($1, 'Escaping GOM', $2, 'PH', 'Asia/Manila')",
        profile,
        f"{profile.hex[:8]}@example.com",
    )
    order_id = await open_order(profile, "Safe _title_")
    token = f"E{gom_user[-7:]}"
    await conn.execute(
        "INSERT INTO link_tokens (token, profile_id, expires_at)"
        " VALUES ($1, $2, now() + interval '1 hour')",
        token,
        profile,
    )
    evil = "[Payment VERIFIED](https://evil.example) **@everyone** <@&123>"
    values = {
        "name": evil,
        "phone": "0917 555 0" + buyer[-3:],
        "quantity": "1",
        "address": "12 Rizal Ave, Quezon City",
        "notes": "",
    }
    async with running_app(discord_settings(), mode="serve") as client:
        await post(client, signer, slash("link", {"code": token}, user_id=gom_user))
        await post(client, signer, press("link confirm", user_id=gom_user))
        done = await post(client, signer, modal_submit(f"submit:{order_id}", values, user_id=buyer))
        assert done.json()["type"] == 4
        [card] = await eventually(lambda: _async(fake.dm_messages(gom_user)))
    [sent] = [
        c.body
        for c in fake.calls_to("POST", r"/channels/\d+/messages")
        if c.path == f"/channels/{fake.dm_channels[gom_user]}/messages"
    ]
    assert sent["allowed_mentions"]["parse"] == []
    texts = [card["content"]] + [
        e.get(k) or "" for e in card["embeds"] for k in ("title", "description")
    ]
    text = "\n".join(texts)
    # Markdown that Discord would render: a masked link, bold, a role mention, a ping.
    for live in (r"(?<!\\)\]\(", r"(?<!\\)\*\*", r"(?<!\\)<@", r"@everyone"):
        assert not re.search(live, text), live
    # Shown as typed: the brackets and stars escaped, @everyone broken by a zero-width space.
    assert "\\[Payment VERIFIED\\](https://evil.example) \\*\\*@\u200beveryone\\*\\*" in text


async def test_button_opens_modal_and_its_submission_creates_the_order_row(
    discord_settings: Callable[..., Settings],
    signer: Signer,
    demo: dict[str, Any],
    conn: asyncpg.Connection,
) -> None:
    user = new_user_id()
    async with running_app(discord_settings(), mode="web") as client:
        opened = (await post(client, signer, press(f"submit {ORDER_PH_ID}", user_id=user))).json()
        assert opened["type"] == 9
        form_id = opened["data"]["custom_id"]
        assert form_id == f"submit:{ORDER_PH_ID}"
        fields = inputs(opened)
        assert set(fields) == {"name", "phone", "quantity", "address", "notes"}
        assert fields["address"]["style"] == 2  # paragraph
        assert fields["notes"]["required"] is False
        assert all(len(f["label"]) <= 45 for f in fields.values())
        values = {
            "name": "Bea Cruz",
            "phone": "0917 555 1234",
            "quantity": "2",
            "address": "12 Rizal Ave, Quezon City",
            "notes": "",
        }
        done = (await post(client, signer, modal_submit(form_id, values, user_id=user))).json()
    assert done["type"] == 4
    row = await conn.fetchrow(
        "SELECT s.*, d.address FROM submissions s"
        " JOIN submission_details d ON d.submission_id = s.id"
        " WHERE s.buyer_platform = 'discord' AND s.buyer_platform_id = $1",
        user,
    )
    assert row is not None
    assert (row["order_id"], row["quantity"], row["buyer_phone"]) == (
        ORDER_PH_ID,
        2,
        "+639175551234",
    )
    assert row["address"] == "12 Rizal Ave, Quezon City"
    assert row["payment_reference"] in done["data"]["content"]


async def test_button_still_works_after_a_restart(
    discord_settings: Callable[..., Settings],
    signer: Signer,
    demo: dict[str, Any],
) -> None:
    user = new_user_id()
    async with running_app(discord_settings(), mode="web") as client:
        listed = (await post(client, signer, slash("orders", user_id=user))).json()["data"]
    action = next(cid for cid in custom_ids(listed) if cid == f"submit {ORDER_PH_ID}")
    async with running_app(discord_settings(), mode="web") as fresh:  # a new process
        answer = (await post(fresh, signer, press(action, user_id=user))).json()
    assert answer["type"] == 9
    assert answer["data"]["custom_id"] == f"submit:{ORDER_PH_ID}"


async def test_every_menu_command_gets_a_valid_answer(
    discord_settings: Callable[..., Settings],
    signer: Signer,
    fake: FakeDiscord,
    demo: dict[str, Any],
) -> None:
    async with running_app(discord_settings(), mode="web") as client:
        for info in command_menu("en", gom=True):
            payload = slash(info.name, user_id=new_user_id())
            response = await post(client, signer, payload)
            assert response.status_code == 200, info.name
            answer = response.json()
            assert answer["type"] in (4, 9), info.name
            if answer["type"] == 4:
                assert 0 < len(answer["data"]["content"]) <= 2000, info.name
                assert check_message(answer["data"]) == [], info.name
    # Anything sent after the answers (closing the app waits for it) met Discord's rules:
    # the fake refused no message, follow-up or edit (most commands send none at all).
    assert fake.refused == [], fake.refused


async def test_unknown_command_and_interaction_are_answered_at_once(
    discord_settings: Callable[..., Settings], signer: Signer
) -> None:
    async with running_app(discord_settings(), mode="web") as client:
        unknown = await post(client, signer, slash("frobnicate", user_id=new_user_id()))
        odd = await post(client, signer, {**slash("help", user_id=new_user_id()), "type": 42})
        autocomplete = await post(
            client, signer, {**slash("status", user_id=new_user_id()), "type": 4}
        )
    assert unknown.status_code == 200
    assert unknown.json()["type"] == 4
    assert "did not understand" in unknown.json()["data"]["content"]
    assert odd.json()["type"] == 4
    assert odd.json()["data"]["flags"] & EPHEMERAL
    assert autocomplete.json() == {"type": 8, "data": {"choices": []}}


async def test_buyer_is_refused_a_gom_command(
    discord_settings: Callable[..., Settings], signer: Signer, conn: asyncpg.Connection
) -> None:
    user = new_user_id()
    async with running_app(discord_settings(), mode="web") as client:
        manage = (await post(client, signer, slash("manage", user_id=user))).json()
        create = (await post(client, signer, slash("create", user_id=user))).json()
    for answer in (manage, create):
        assert answer["type"] == 4  # no modal for a buyer
        assert answer["data"]["content"].startswith("Only a GOM can do that")
        assert answer["data"]["flags"] & EPHEMERAL
    assert await conn.fetchval("SELECT count(*) FROM orders WHERE user_id::text = $1", user) == 0


async def test_linked_gom_gets_the_create_modal(
    discord_settings: Callable[..., Settings],
    signer: Signer,
    conn: asyncpg.Connection,
    demo: dict[str, Any],
) -> None:
    user = new_user_id()
    token = f"D{user[-7:]}"
    await conn.execute(
        "INSERT INTO link_tokens (token, profile_id, expires_at)"
        " VALUES ($1, $2, now() + interval '1 hour')",
        token,
        demo["gom_id"],
    )
    async with running_app(discord_settings(), mode="web") as client:
        await post(client, signer, slash("link", {"code": token}, user_id=user))
        linked = (await post(client, signer, press("link confirm", user_id=user))).json()
        create = (await post(client, signer, slash("create", user_id=user))).json()
    assert "linked to your GOM profile" in linked["data"]["content"]
    assert create["type"] == 9
    assert create["data"]["custom_id"] == "create:new"


async def test_disabled_kinds_get_a_polite_private_answer(
    discord_settings: Callable[..., Settings], signer: Signer, conn: asyncpg.Connection
) -> None:
    settings = discord_settings(
        enable_slash_commands=False,
        enable_button_interactions=False,
        enable_modal_interactions=False,
    )
    user = new_user_id()
    async with running_app(settings, mode="web") as client:
        answers = [
            (await post(client, signer, payload)).json()
            for payload in (
                slash("orders", user_id=user),
                press("orders", user_id=user),
                modal_submit(f"submit:{ORDER_PH_ID}", {"name": "x"}, user_id=user),
            )
        ]
    texts = [a["data"]["content"] for a in answers]
    assert texts == [
        "Slash commands are turned off here for now.",
        "Buttons are turned off here for now.",
        "Forms are turned off here for now.",
    ]
    assert all(a["data"]["flags"] & EPHEMERAL for a in answers)
    assert (
        await conn.fetchval("SELECT count(*) FROM audit_log WHERE subject = $1", user) == 0
    )  # the bot never saw them
    # In the person's language (these texts were once never extracted for translators).
    async with running_app(settings, mode="web") as client:
        malay = (await post(client, signer, slash("orders", user_id=user, locale="ms"))).json()
    assert malay["data"]["content"] == "Slash command dimatikan di sini buat masa ini."


# -- slow answers ------------------------------------------------------------------------


async def _hold_contact(conn: asyncpg.Connection, user: str) -> asyncpg.transaction.Transaction:
    """Lock the user's contact row, so the bot's first query waits: a slow database."""
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute(
        "SELECT 1 FROM contact_addresses WHERE channel = 'discord' AND address = $1 FOR UPDATE",
        user,
    )
    return transaction


async def test_slow_answer_is_deferred_then_filled_in(
    discord_settings: Callable[..., Settings],
    signer: Signer,
    fake: FakeDiscord,
    conn: asyncpg.Connection,
) -> None:
    user = new_user_id()
    settings = discord_settings(discord_answer_deadline_seconds=0.3)
    async with running_app(settings, mode="web") as client:
        await post(client, signer, slash("help", user_id=user))  # the contact exists now
        transaction = await _hold_contact(conn, user)
        payload = slash("status", user_id=user)
        try:
            answer = (await post(client, signer, payload)).json()
        finally:
            await transaction.rollback()
        assert answer == {"type": 5, "data": {"flags": EPHEMERAL}}
        [(method, message)] = await eventually(lambda: _async(fake.follow_ups(payload["token"])))
    assert method == "PATCH"
    assert message["content"].startswith("You have not joined any order yet")
    assert custom_ids(message) == ["orders"]


async def test_form_after_a_defer_becomes_a_button(
    discord_settings: Callable[..., Settings],
    signer: Signer,
    fake: FakeDiscord,
    conn: asyncpg.Connection,
    demo: dict[str, Any],
) -> None:
    user = new_user_id()
    settings = discord_settings(discord_answer_deadline_seconds=0.3)
    async with running_app(settings, mode="web") as client:
        await post(client, signer, slash("help", user_id=user, guild_id=""))
        transaction = await _hold_contact(conn, user)
        payload = press(f"submit {ORDER_PH_ID}", user_id=user, guild_id="")  # in a DM
        try:
            answer = (await post(client, signer, payload)).json()
        finally:
            await transaction.rollback()
        assert answer == {"type": 5, "data": {"flags": 0}}
        [(method, message)] = await eventually(lambda: _async(fake.follow_ups(payload["token"])))
    assert method == "PATCH"
    assert custom_ids(message) == [f"submit {ORDER_PH_ID}"]  # press again: the modal


# -- command registration ----------------------------------------------------------------


def _cli_env(monkeypatch: pytest.MonkeyPatch, fake: FakeDiscord, **extra: str) -> None:
    values = {
        "SERVICE_SECRET": SECRET,
        "ENABLE_DISCORD": "true",
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_CLIENT_ID": APP_ID,
        "DISCORD_PUBLIC_KEY": "ab" * 32,
        "DISCORD_API_BASE_URL": fake.base_url,
        "DISCORD_GUILD_ID": GUILD,
        "DISCORD_REQUEST_TIMEOUT_SECONDS": "2",
        **extra,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


async def test_cli_sync_overwrites_the_guild_commands(
    monkeypatch: pytest.MonkeyPatch, fake: FakeDiscord, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli_env(monkeypatch, fake)
    code = await asyncio.to_thread(cli.main, ["discord-commands", "sync"])
    out = capsys.readouterr().out
    assert code == 0
    expected = [c.name for c in command_menu("en", gom=True)]
    assert out.strip() == f"registered {len(expected)} commands (guild {GUILD}): " + ", ".join(
        f"/{n}" for n in expected
    )
    [put] = fake.calls_to("PUT", rf"/applications/{APP_ID}/guilds/{GUILD}/commands")
    assert [c["name"] for c in put.body] == expected
    status = next(c for c in put.body if c["name"] == "status")
    [option] = status["options"]
    assert {k: option[k] for k in ("type", "name", "required", "autocomplete")} == {
        "type": 3,
        "name": "reference",
        "required": False,
        "autocomplete": True,
    }
    assert option["description"].startswith("One of your payment references")
    submit = next(c for c in put.body if c["name"] == "submit")
    assert submit["options"][0]["autocomplete"] is True
    assert "title or code" in submit["options"][0]["description"]
    assert status["contexts"] == [0, 1]
    assert "global" not in fake.commands

    monkeypatch.setenv("DISCORD_GUILD_ID", "")
    assert await asyncio.to_thread(cli.main, ["discord-commands", "sync"]) == 0
    assert [c["name"] for c in fake.commands["global"]] == expected


async def test_cli_sync_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, fake: FakeDiscord, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli_env(monkeypatch, fake, DISCORD_TOKEN="wrong-token")
    assert await asyncio.to_thread(cli.main, ["discord-commands", "sync"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "discord-commands sync" in err and "bad_credentials" in err

    _cli_env(monkeypatch, fake, DISCORD_CLIENT_ID="100000000000000777")
    assert await asyncio.to_thread(cli.main, ["discord-commands", "sync"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "DISCORD_CLIENT_ID is 100000000000000777" in err
    assert APP_ID in err

    _cli_env(monkeypatch, fake)
    fake.fail_next("hang")
    assert await asyncio.to_thread(cli.main, ["discord-commands", "sync"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[network]" in err
    assert GUILD not in fake.commands  # nothing was registered


async def test_commands_status_says_where_the_list_comes_from(
    discord_settings: Callable[..., Settings], fake: FakeDiscord
) -> None:
    async with running_app(discord_settings(discord_guild_id=GUILD), mode="web") as client:
        public = (await client.get("/api/commands/status")).json()  # the seed guide's call
        # The public command list names no platform (nor the guild).
        assert "platforms" not in public and GUILD not in json.dumps(public)
        before = (await client.get("/api/commands/status", headers=AUTH)).json()["platforms"]
        channel = client.app.state.services.channels["discord"]  # type: ignore[attr-defined]
        await channel.rest.set_commands(command_menu("en", gom=True), GUILD)
        after = (await client.get("/api/commands/status", headers=AUTH)).json()["platforms"]
        fake.fail_next("server_error")
        down = (await client.get("/api/commands/status", headers=AUTH)).json()["platforms"]
    assert before["discord"]["source"] == "discord_api"
    assert before["discord"]["commands"] == []
    assert before["discord"]["in_sync"] is False
    assert after["discord"]["in_sync"] is True
    assert after["discord"]["scope"] == f"guild {GUILD}"
    assert {c["name"] for c in after["discord"]["commands"]} >= {"status", "manage"}
    assert down["discord"]["source"] == "local"
    assert "status" in {c["name"] for c in down["discord"]["commands"]}
    assert before["sandbox"]["source"] == "not_registered"


async def _async(value: Any) -> Any:
    return value
