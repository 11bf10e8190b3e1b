"""The Messenger sender against a fake Graph API on loopback: the window and its tag, Meta's
limits, one error map, shared pacing, health, attachments from Meta's CDN, the profile CLI."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from gomflow_messaging import db
from gomflow_messaging.channels.base import Button, OutboundMessage, on_hosts
from gomflow_messaging.channels.messenger import cli
from gomflow_messaging.channels.messenger.channel import MessengerChannel
from gomflow_messaging.channels.messenger.render import render
from gomflow_messaging.errors import PermanentError, SkipMessage, TransientError
from gomflow_messaging.settings import ConfigError, load_settings
from gomflow_messaging.workflows.chat.types import Card
from tests.fakes.messenger import FakeGraph, messenger_settings, run_psid
from tests.helpers import SECRET


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = await FakeGraph().start()
    yield fake
    await fake.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    p = await db.create_pool(database_url, max_size=4)
    yield p
    await p.close()


async def make_channel(
    graph: FakeGraph, pool: db.Pool, redis: Redis, **overrides: Any
) -> MessengerChannel:
    channel = MessengerChannel(
        messenger_settings(
            graph.base_url, messenger_attachment_hosts=f"*.fbcdn.net,{graph.host}", **overrides
        ),
        pool,
        redis,
        queue_name=f"gomflow-test-fb-{secrets.token_hex(4)}",
        max_file_size=1000,
        allow_http_downloads=True,
    )
    await channel.start()
    return channel


@pytest.fixture
async def channel(graph: FakeGraph, pool: db.Pool, redis: Redis) -> AsyncIterator[MessengerChannel]:
    adapter = await make_channel(graph, pool, redis)
    yield adapter
    await adapter.close()


async def person(pool: db.Pool, *, wrote_hours_ago: float | None = 0.0) -> str:
    """A contact on Messenger whose last message was that long ago (None: never wrote)."""
    psid = run_psid(secrets.randbelow(1_000_000), secrets.randbelow(1000))
    contact_id = await pool.fetchval(
        "INSERT INTO contacts (display_name) VALUES ('fb') RETURNING id"
    )
    await pool.execute(
        "INSERT INTO contact_addresses (contact_id, channel, address, last_inbound_at)"
        " VALUES ($1, 'messenger', $2, now() - make_interval(secs => $3))",
        contact_id,
        psid,
        None if wrote_hours_ago is None else wrote_hours_ago * 3600,
    )
    return psid


def message(psid: str, text: str = "hi", **extra: Any) -> OutboundMessage:
    return OutboundMessage(message_id=uuid.uuid4(), address=psid, text=text, **extra)


# -- the 24-hour window ----------------------------------------------------------------------


async def test_inside_the_window_a_message_goes_as_an_update(
    channel: MessengerChannel, graph: FakeGraph, pool: db.Pool
) -> None:
    psid = await person(pool, wrote_hours_ago=23)
    result = await channel.send(message(psid, "Payment reminder", event="payment_reminder"))
    [sent] = graph.to(psid)
    assert sent.body["messaging_type"] == "UPDATE"
    assert "tag" not in sent.body
    assert result.provider_message_id == sent.message_id


@pytest.mark.parametrize(
    "event", ["order_confirmation", "payment_confirmed", "payment_rejected", "order_status_update"]
)
async def test_outside_the_window_purchase_updates_carry_the_tag(
    channel: MessengerChannel, graph: FakeGraph, pool: db.Pool, event: str
) -> None:
    psid = await person(pool, wrote_hours_ago=30)
    graph.outside_window.add(psid)  # Meta would refuse anything untagged
    await channel.send(message(psid, "Your order has shipped", event=event))
    [sent] = graph.to(psid)
    assert sent.body["messaging_type"] == "MESSAGE_TAG"
    assert sent.body["tag"] == "POST_PURCHASE_UPDATE"


@pytest.mark.parametrize("event", ["payment_reminder", "custom", "new_submission"])
@pytest.mark.parametrize("wrote_hours_ago", [30.0, None])
async def test_outside_the_window_the_rest_is_skipped_unsent(
    channel: MessengerChannel,
    graph: FakeGraph,
    pool: db.Pool,
    event: str,
    wrote_hours_ago: float | None,
) -> None:
    psid = await person(pool, wrote_hours_ago=wrote_hours_ago)
    with pytest.raises(SkipMessage) as info:
        await channel.send(message(psid, "Pay before Friday!", event=event))
    assert info.value.code == "outside_window"
    assert graph.to(psid) == []


async def test_meta_saying_outside_the_window_is_a_skip(
    channel: MessengerChannel, graph: FakeGraph, pool: db.Pool
) -> None:
    # Our clock says inside (the margin is thin), Meta says no: try the next route.
    psid = await person(pool, wrote_hours_ago=1)
    graph.outside_window.add(psid)
    with pytest.raises(SkipMessage) as info:
        await channel.send(message(psid, "hi", event="custom"))
    assert info.value.code == "outside_window"


# -- Meta's limits -----------------------------------------------------------------------------


async def test_many_buttons_fit_meta_limits_and_none_is_lost(
    channel: MessengerChannel, graph: FakeGraph, pool: db.Pool
) -> None:
    psid = await person(pool)
    actions = tuple(
        Button(f"Order number {n} of the batch", action=f"order {n}") for n in range(16)
    )
    links = (Button("Open the GOMFLOW page", url="https://gomflow.example.com/o/1"),)
    await channel.send(message(psid, "Choose one", buttons=(actions, links)))
    sent = graph.to(psid)  # the fake refuses >13 quick replies, >3 buttons, titles >20
    payloads = [b.get("payload") or b.get("url") for s in sent for b in s.buttons]
    assert sorted(p for p in payloads if p) == sorted(
        [f"order {n}" for n in range(16)] + ["https://gomflow.example.com/o/1"]
    )
    assert len(sent[-1].message["quick_replies"]) == 13
    assert sent[0].text == "Choose one"


async def test_few_buttons_under_short_text_are_one_button_template(
    channel: MessengerChannel, graph: FakeGraph, pool: db.Pool
) -> None:
    psid = await person(pool)
    buttons = ((Button("Pay", action="pay PH-1"), Button("Guide", url="https://example.com/g")),)
    await channel.send(message(psid, "Your total is ₱1,250.00", buttons=buttons))
    [sent] = graph.to(psid)
    assert sent.template == "button"
    assert sent.text == "Your total is ₱1,250.00"
    assert [b["type"] for b in sent.buttons] == ["postback", "web_url"]


async def test_order_cards_become_carousels_of_ten(
    channel: MessengerChannel, graph: FakeGraph, pool: db.Pool
) -> None:
    psid = await person(pool)
    cards = [
        Card(
            f"SEVENTEEN 'FML' album, version {n} " * 3,
            (("Price", "₱1,250.00"), ("Deadline", "1 Dec 2026, 8:00 PM (Asia/Manila)")),
            Button("Join this order", action=f"submit {n}"),
        )
        for n in range(12)
    ]
    for part in render("Open orders", cards=cards):
        await channel.send_reply(psid, [part])
    carousels = [s for s in graph.to(psid) if s.template == "generic"]
    assert [len(s.payload["elements"]) for s in carousels] == [10, 2]
    assert carousels[0].body["messaging_type"] == "RESPONSE"


async def test_an_image_goes_as_an_attachment_before_its_text(
    channel: MessengerChannel, graph: FakeGraph, pool: db.Pool
) -> None:
    psid = await person(pool)
    await channel.send(message(psid, "Your receipt", image_url="https://example.com/r.png"))
    image, text = graph.to(psid)
    assert image.payload["url"] == "https://example.com/r.png"
    assert text.text == "Your receipt"


# -- one error map ---------------------------------------------------------------------------


async def test_rate_limit_without_a_wait_holds_the_page_back_for_every_worker(
    graph: FakeGraph, pool: db.Pool, redis: Redis
) -> None:
    first = await make_channel(graph, pool, redis, messenger_rate_limit_pause_seconds=120)
    # A second worker sharing the pace (the same queue name) through Redis.
    second = MessengerChannel(
        first.config, pool, redis, queue_name=first._parts._prefix.split(":")[1], max_file_size=0
    )
    await second.start()
    try:
        psid = await person(pool)
        graph.faults.append(("rate_limited", None))  # Graph's 80006 names no wait here
        with pytest.raises(TransientError) as info:
            await first.send(message(psid))
        assert info.value.code == "rate_limited"
        assert info.value.retry_after == 120
        # The other worker does not hammer the Page: it is told to come back later.
        with pytest.raises(TransientError) as paced:
            await second.send(message(psid))
        assert paced.value.code == "paced"
        assert graph.to(psid) == []
    finally:
        await first.close()
        await second.close()


async def test_a_wait_meta_names_in_its_usage_header_is_honoured(
    channel: MessengerChannel, graph: FakeGraph, pool: db.Pool
) -> None:
    graph.faults.append(("rate_limited", 120))  # estimated_time_to_regain_access: 2 minutes
    with pytest.raises(TransientError) as info:
        await channel.send(message(await person(pool)))
    assert info.value.code == "rate_limited"
    assert info.value.retry_after == 120


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("rate_limited", TransientError, "rate_limited"),  # 80006, the Page's limit
        ("app_rate_limited", TransientError, "rate_limited"),  # 613
        ("unavailable", PermanentError, "unreachable"),
        ("server_error", TransientError, "http_500"),
        ("bad_token", PermanentError, "bad_credentials"),
    ],
)
async def test_graph_errors_map_to_ours(
    channel: MessengerChannel,
    graph: FakeGraph,
    pool: db.Pool,
    fault: str,
    error: type[Exception],
    code: str,
) -> None:
    psid = await person(pool)
    graph.errors_for[psid] = fault
    with pytest.raises(error) as info:
        await channel.send(message(psid))
    assert getattr(info.value, "code", "") == code
    assert getattr(info.value, "address_unreachable", False) is (fault == "unavailable")


async def test_a_wrong_token_is_bad_credentials_and_never_printed(
    graph: FakeGraph, pool: db.Pool, redis: Redis
) -> None:
    wrong = "EAAwrong" + "y" * 40
    adapter = await make_channel(graph, pool, redis, messenger_page_access_token=wrong)
    try:
        with pytest.raises(PermanentError) as info:
            await adapter.send(message(await person(pool)))
        assert info.value.code == "bad_credentials"
        assert wrong not in str(info.value)
        health = await adapter.health()
        assert not health.ok
        assert wrong not in health.detail
    finally:
        await adapter.close()


async def test_health_asks_graph_once_then_caches(
    channel: MessengerChannel, graph: FakeGraph
) -> None:
    assert (await channel.health()).ok
    assert (await channel.health()).ok
    assert graph.me_calls == 1


async def test_an_unreachable_graph_is_degraded_not_down(pool: db.Pool, redis: Redis) -> None:
    graph = await FakeGraph().start()
    adapter = await make_channel(graph, pool, redis)
    await graph.close()  # nothing listens there any more
    try:
        health = await adapter.health()
        assert not health.ok and health.away
        assert "unreachable" in health.detail
    finally:
        await adapter.close()


# -- attachments ------------------------------------------------------------------------------


async def test_attachments_only_from_meta_cdn_hosts(
    channel: MessengerChannel, graph: FakeGraph
) -> None:
    graph.media["/cdn/ok.jpg"] = ("image/jpeg", b"\xff\xd8\xff receipt")
    assert await channel.download_attachment(graph.origin + "/cdn/ok.jpg") == (
        b"\xff\xd8\xff receipt"
    )
    graph.media_redirects["/cdn/away.jpg"] = "http://127.0.0.2:9/steal"
    with pytest.raises(PermanentError) as off:
        await channel.download_attachment(graph.origin + "/cdn/away.jpg")
    assert off.value.code == "untrusted_url"
    with pytest.raises(PermanentError) as other:
        await channel.download_attachment("https://evil.example.com/x.jpg")
    assert other.value.code == "untrusted_url"
    graph.media["/cdn/big.jpg"] = ("image/jpeg", b"x" * 5000)
    with pytest.raises(PermanentError) as big:
        await channel.download_attachment(graph.origin + "/cdn/big.jpg")
    assert big.value.code == "too_large"


def test_meta_cdn_host_rules() -> None:
    hosts = ("*.fbcdn.net", "lookaside.fbsbx.com")
    assert on_hosts("https://scontent.xx.fbcdn.net/v/t1/a.jpg", hosts)
    assert on_hosts("https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1", hosts)
    assert not on_hosts("https://fbcdn.net.evil.com/a.jpg", hosts)
    assert not on_hosts("https://evilfbcdn.net/a.jpg", hosts)
    assert not on_hosts("http://scontent.xx.fbcdn.net/a.jpg", hosts)
    assert not on_hosts("https://user:pw@lookaside.fbsbx.com/a", hosts)


# -- settings and the profile CLI ----------------------------------------------------------------


@pytest.mark.parametrize(
    "missing",
    ["MESSENGER_PAGE_ACCESS_TOKEN", "MESSENGER_APP_SECRET", "MESSENGER_VERIFY_TOKEN"],
)
def test_enabled_without_a_secret_stops_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setenv("SERVICE_SECRET", SECRET)
    monkeypatch.setenv("ENABLE_MESSENGER", "true")
    for name in ("MESSENGER_PAGE_ACCESS_TOKEN", "MESSENGER_APP_SECRET", "MESSENGER_VERIFY_TOKEN"):
        monkeypatch.setenv(name, "" if name == missing else "set")
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert f"{missing} is required when ENABLE_MESSENGER is true" in str(info.value)
    assert "\n" not in str(info.value)


async def test_profile_set_info_delete(graph: FakeGraph) -> None:
    config = messenger_settings(graph.base_url)
    lines = await cli.profile_action(config, "set")
    assert "get_started" in graph.profile and lines
    menus = {m["locale"]: m for m in graph.profile["persistent_menu"]}
    assert set(menus) == {"default", "tl_PH", "ms_MY"}
    titles = {loc: [a["title"] for a in m["call_to_actions"]] for loc, m in menus.items()}
    assert titles["default"] == ["Open orders", "My orders", "Pay", "Settings"]
    assert titles["tl_PH"] != titles["default"] and titles["ms_MY"] != titles["default"]
    greetings = {g["locale"]: g["text"] for g in graph.profile["greeting"]}
    assert "{{user_first_name}}" in greetings["tl_PH"]
    assert len({greetings["default"], greetings["tl_PH"], greetings["ms_MY"]}) == 3
    info = await cli.profile_action(config, "info")
    assert info["page"] == "GOMFLOW Test Page"
    assert info["profile"]["get_started"] == {"payload": "start"}
    await cli.profile_action(config, "delete")
    assert graph.profile == {}


async def test_command_status_shows_the_page_menu_and_whether_it_is_ours(
    channel: MessengerChannel, graph: FakeGraph
) -> None:
    before = await channel.command_status([])
    assert before["source"] == "messenger_profile" and before["in_sync"] is False
    await cli.set_profile(channel)
    after = await channel.command_status([])
    assert after["in_sync"] is True
    assert after["get_started"] == {"payload": "start"}
    assert [i["payload"] for i in after["menu"]["default"]] == [
        "orders",
        "status",
        "pay",
        "settings",
    ]
