"""The Discord adapter beyond the contract: embeds, DM channels, the error map, pacing,
resuming a split message, and delivery through /api/notify."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from gomflow_messaging.channels.base import Button, OutboundMessage
from gomflow_messaging.channels.discord.channel import DiscordChannel, build
from gomflow_messaging.channels.discord.render import action_rows, render_cards
from gomflow_messaging.channels.pacing import Limit, Pacer
from gomflow_messaging.errors import PermanentError, TransientError
from gomflow_messaging.settings import ConfigError, Settings, load_settings
from gomflow_messaging.workflows.chat.types import Card
from tests.fakes.discord import APP_ID, TOKEN, FakeDiscord, new_user_id
from tests.helpers import AUTH, SECRET, eventually, running_app


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = await FakeDiscord().start()
    yield server
    await server.close()


@pytest.fixture
def discord_settings(make_settings: Callable[..., Settings], fake: FakeDiscord) -> Settings:
    return make_settings(
        enable_discord=True,
        discord_token=TOKEN,
        discord_client_id=APP_ID,
        discord_public_key="ab" * 32,
        discord_api_base_url=fake.base_url,
        discord_request_timeout_seconds=2,
        discord_max_rate_limit_wait_seconds=1,
    )


@pytest.fixture
async def channel(discord_settings: Settings, redis: Redis) -> AsyncIterator[DiscordChannel]:
    adapter = build(discord_settings, None, redis)  # type: ignore[arg-type]
    await adapter.start()
    yield adapter
    await adapter.close()


def message(address: str, text: str, **extra: Any) -> OutboundMessage:
    return OutboundMessage(message_id=uuid.uuid4(), address=address, text=text, **extra)


async def test_embed_has_title_colour_and_buttons(
    channel: DiscordChannel, fake: FakeDiscord
) -> None:
    user = new_user_id()
    buttons = (
        (Button("Pay now", action="pay"), Button("Order page", url="https://gomflow.app/o/1")),
        (Button("Pay again", action="pay"),),  # same action: one button
    )
    result = await channel.send(
        message(
            user,
            "Payment reminder\nPay ₱1,250.00 by tomorrow 6 PM.",
            buttons=buttons,
            extra={"colour": "orange"},
        )
    )
    [sent] = fake.dm_messages(user)
    assert result.provider_message_id == sent["id"]
    [embed] = sent["embeds"]
    assert embed["title"] == "Payment reminder"
    assert embed["description"] == "Pay ₱1,250.00 by tomorrow 6 PM."
    assert embed["color"] == 0xE67E22
    [row] = sent["components"]
    assert [(b.get("custom_id"), b.get("url"), b["style"]) for b in row["components"]] == [
        ("pay", None, 2),
        (None, "https://gomflow.app/o/1", 5),
    ]
    [call] = fake.calls_to("POST", r"/channels/\d+/messages")
    assert call.body["allowed_mentions"] == {"parse": []}  # a buyer's name cannot ping @everyone


async def test_plain_text_is_split_at_2000_with_buttons_on_the_last_part(
    channel: DiscordChannel, fake: FakeDiscord
) -> None:
    user = new_user_id()
    text = "\n".join(f"{n:04d} " + "x" * 95 for n in range(45))  # 4544 characters
    await channel.send(
        message(user, text, buttons=((Button("OK", action="help"),),), extra={"embed": False})
    )
    parts = fake.dm_messages(user)
    assert [len(p["content"]) <= 2000 for p in parts] == [True, True, True]
    assert "\n".join(p["content"] for p in parts) == text
    assert [bool(p["components"]) for p in parts] == [False, False, True]


async def test_dm_channel_is_opened_once_and_reopened_when_discord_forgets_it(
    channel: DiscordChannel, fake: FakeDiscord, redis: Redis, discord_settings: Settings
) -> None:
    user = new_user_id()
    await channel.send(message(user, "one"))
    await channel.send(message(user, "two"))
    assert len(fake.calls_to("POST", r"/users/@me/channels")) == 1
    # Discord lost the channel (or the cache is stale): 404 Unknown Channel, then a new one.
    await redis.set(f"{discord_settings.queue_name}:discord:dm:{user}", "999999999999999999")
    await channel.send(message(user, "three"))
    assert len(fake.calls_to("POST", r"/users/@me/channels")) == 2
    assert [m["embeds"][0]["description"] for m in fake.dm_messages(user)] == [
        "one",
        "two",
        "three",
    ]


async def test_error_map(channel: DiscordChannel, fake: FakeDiscord) -> None:
    blocked, unknown = new_user_id(), new_user_id()
    fake.cannot_dm.add(blocked)
    fake.unknown_users.add(unknown)

    with pytest.raises(PermanentError) as cannot_dm:
        await channel.send(message(blocked, "hi"))
    assert (cannot_dm.value.code, cannot_dm.value.address_unreachable) == ("cannot_dm", True)

    with pytest.raises(PermanentError) as gone:
        await channel.send(message(unknown, "hi"))
    assert (gone.value.code, gone.value.address_unreachable) == ("unknown_user", True)

    invalid = new_user_id()
    fake.invalid_recipients.add(invalid)  # a bot, a deleted account: no DM can be opened
    with pytest.raises(PermanentError) as refused:
        await channel.send(message(invalid, "hi"))
    assert (refused.value.code, refused.value.address_unreachable) == ("invalid_recipient", True)

    fake.fail_next("unauthorized")
    with pytest.raises(PermanentError) as token:
        await channel.send(message(new_user_id(), "hi"))
    assert (token.value.code, token.value.address_unreachable) == ("bad_credentials", False)

    fake.fail_next("server_error")
    with pytest.raises(TransientError) as server:
        await channel.send(message(new_user_id(), "hi"))
    assert server.value.code == "http_502"

    with pytest.raises(PermanentError) as garbage:
        await channel.send(message("not-a-snowflake", "hi"))
    assert garbage.value.code == "invalid_address"


async def test_global_rate_limit_holds_back_every_sender(
    channel: DiscordChannel, fake: FakeDiscord, redis: Redis, discord_settings: Settings
) -> None:
    user = new_user_id()
    await channel.send(message(user, "hi"))  # hikari learns the route's bucket
    fake.fail_next("global_rate_limited", retry_after=5)
    with pytest.raises(TransientError) as info:
        await channel.send(message(user, "hi again"))
    assert info.value.code == "rate_limited"
    assert info.value.retry_after == pytest.approx(5, abs=0.5)
    # The shared pacing scope is pushed back, so other workers and replicas wait too.
    other_replica = Pacer(redis, discord_settings.queue_name)
    assert await other_replica.reserve([Limit("discord:global", 50)]) > 3


async def test_split_message_resumes_where_it_failed(
    channel: DiscordChannel, fake: FakeDiscord
) -> None:
    user = new_user_id()
    text = "\n".join("y" * 99 for _ in range(50))  # 3 parts of plain content
    outbound = message(user, text, extra={"embed": False})
    fake.fail_next("server_error", path="/messages", after=1)
    with pytest.raises(TransientError):
        await channel.send(outbound)
    assert len(fake.dm_messages(user)) == 1
    await channel.send(outbound)  # the dispatcher's retry
    parts = fake.dm_messages(user)
    assert len(parts) == 3  # part one is not sent twice
    assert "\n".join(p["content"] for p in parts) == text
    again = await channel.send(outbound)  # delivered already: nothing more
    assert len(fake.dm_messages(user)) == 3
    assert again.provider_message_id == parts[-1]["id"]


async def test_health_says_whether_the_token_works(
    channel: DiscordChannel, fake: FakeDiscord
) -> None:
    health = await channel.health()
    assert health.ok and "GOMFLOW" in health.detail
    fake.token = "rotated"
    channel._health = None  # the result is kept a minute; ask again now
    health = await channel.health()
    assert not health.ok and "token" in health.detail


async def test_notify_reaches_the_buyer_and_a_closed_dm_marks_the_address(
    discord_settings: Settings, fake: FakeDiscord, conn: asyncpg.Connection
) -> None:
    reachable, closed = new_user_id(), new_user_id()
    fake.cannot_dm.add(closed)
    contact = await conn.fetchval("INSERT INTO contacts (display_name) VALUES ('x') RETURNING id")
    await conn.execute(
        "INSERT INTO contact_addresses (contact_id, channel, address) VALUES ($1, 'discord', $2)",
        contact,
        closed,
    )
    body = {
        "event": "custom",
        "data": {"text": "Your order has shipped"},
        "recipients": [
            {"channel": "discord", "address": reachable},
            {"channel": "discord", "address": closed},
        ],
    }
    async with running_app(discord_settings) as client:
        response = await client.post("/api/notify", json=body, headers=AUTH)
        assert response.status_code == 202, response.text
        ids = {m["address"]: m["id"] for m in response.json()["messages"]}

        async def finished() -> dict[str, Any] | None:
            states = {
                address: (await client.get(f"/api/messages/{mid}", headers=AUTH)).json()
                for address, mid in ids.items()
            }
            done = all(s["status"] in ("sent", "failed") for s in states.values())
            return states if done else None

        states = await eventually(finished)
    assert states[reachable]["status"] == "sent"
    assert states[closed]["status"] == "failed"
    assert [m["embeds"][0]["description"] for m in fake.dm_messages(reachable)] == [
        "Your order has shipped"
    ]
    assert (
        await conn.fetchval(
            "SELECT reachable FROM contact_addresses WHERE channel = 'discord' AND address = $1",
            closed,
        )
        is False
    )


def test_bad_public_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_SECRET", SECRET)
    monkeypatch.setenv("ENABLE_DISCORD", "true")
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("DISCORD_CLIENT_ID", APP_ID)
    monkeypatch.setenv("DISCORD_PUBLIC_KEY", "not-hex")
    with pytest.raises(ConfigError, match="DISCORD_PUBLIC_KEY: must be the application's public"):
        load_settings(_env_file=None)
    monkeypatch.setenv("DISCORD_PUBLIC_KEY", "ab" * 32)
    monkeypatch.setenv("DISCORD_GUILD_ID", "my-guild")
    with pytest.raises(ConfigError, match="DISCORD_GUILD_ID: must be a Discord id"):
        load_settings(_env_file=None)


async def test_many_long_cards_fit_discords_embed_limits(
    channel: DiscordChannel, fake: FakeDiscord
) -> None:
    cards = [
        Card(
            f"Order {n} " + "t" * 240,
            (("Notes", "n" * 1000), ("Price", "₱1,250.00")),
            Button(f"Join {n}", action=f"submit {n}"),
        )
        for n in range(12)
    ]
    parts = render_cards("Open orders:", cards, ((Button("Next", action="orders 2"),),))
    # Twelve cards of about 1,260 characters: four to a message, within 6,000.
    assert [len(p.embeds) for p in parts] == [4, 4, 4]
    for part in parts:
        await channel.follow_up("itok-cards", part)  # the fake refuses what Discord would
    sent = [body for _method, body in fake.follow_ups("itok-cards")]
    assert len(sent) == 3
    assert sent[0]["content"] == "Open orders:"
    ids = [b["custom_id"] for body in sent for row in body["components"] for b in row["components"]]
    assert ids == [f"submit {n}" for n in range(12)] + ["orders 2"]


def test_more_than_five_button_rows_are_packed_not_cut() -> None:
    rows = tuple(
        (Button(f"A{n}", action=f"a {n}"), Button(f"B{n}", action=f"b {n}")) for n in range(8)
    )
    built = action_rows(rows)
    assert len(built) == 4  # 16 buttons, 5 to a row
    actions = [c.custom_id for row in built for c in row.components]
    assert actions == [a for n in range(8) for a in (f"a {n}", f"b {n}")]


async def test_the_fake_counts_down_each_bucket_and_refuses_past_it(
    channel: DiscordChannel, fake: FakeDiscord
) -> None:
    """What hikari reads to pace itself: the bucket's remaining requests, as Discord counts."""
    fake.bucket_limit, fake.bucket_window = 3, 60.0
    user = new_user_id()
    for _ in range(2):
        await channel.send(message(user, "hi"))
    sends = [c for c in fake.calls if c.method == "POST" and c.path.endswith("/messages")]
    assert len(sends) == 2
    # The third send of this DM channel's bucket is the last; a fourth would be a 429.
    await channel.send(message(user, "hi"))
    with pytest.raises(TransientError) as limited:
        await channel.send(message(user, "hi"))
    assert limited.value.code == "rate_limited" and limited.value.retry_after
    assert len(fake.dm_messages(user)) == 3


async def test_an_interaction_takes_one_callback(fake: FakeDiscord) -> None:
    """Discord answers a second callback for one interaction 400 (40060)."""
    import httpx

    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        url = "/interactions/123456789012345678/itok-x/callback"
        first = await client.post(url, json={"type": 4, "data": {"content": "hi"}})
        second = await client.post(url, json={"type": 4, "data": {"content": "again"}})
    assert first.status_code == 204
    assert (second.status_code, second.json()["code"]) == (400, 40060)
    assert len(fake.callbacks) == 1
