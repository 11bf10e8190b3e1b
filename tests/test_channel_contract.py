"""One contract suite that every channel adapter passes (see tests/contract.py)."""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gomflow_messaging import db
from gomflow_messaging.channels.base import Button, Channel, OutboundMessage
from gomflow_messaging.errors import PermanentError, TransientError
from tests.contract import Harness, Unsupported
from tests.fakes.discord import DiscordHarness
from tests.fakes.messenger import MessengerHarness
from tests.fakes.sandbox import SandboxHarness
from tests.fakes.telegram import TelegramHarness
from tests.fakes.twilio import TwilioHarness
from tests.fakes.whatsapp_cloud import CloudHarness


async def _sandbox(pool: Any, redis: Any) -> Harness:
    return SandboxHarness(pool, secrets.token_hex(4))


async def _whatsapp(pool: Any, redis: Any) -> Harness:
    return TwilioHarness(pool, redis)


async def _whatsapp_cloud(pool: Any, redis: Any) -> Harness:
    return CloudHarness(pool, redis)


async def _discord(pool: Any, redis: Any) -> Harness:
    return DiscordHarness(redis, secrets.token_hex(4))


async def _telegram(pool: Any, redis: Any) -> Harness:
    return TelegramHarness(pool, redis)


async def _messenger(pool: Any, redis: Any) -> Harness:
    return MessengerHarness(pool, redis)


# Each platform adds its harness factory here: async (pool, redis) -> Harness.
HARNESSES: dict[str, Callable[[Any, Any], Any]] = {
    "sandbox": _sandbox,
    "whatsapp": _whatsapp,
    "whatsapp-cloud": _whatsapp_cloud,
    "discord": _discord,
    "telegram": _telegram,
    "messenger": _messenger,
}


@pytest.fixture(params=sorted(HARNESSES))
async def harness(
    request: pytest.FixtureRequest, database_url: str, redis: Any
) -> AsyncIterator[Harness]:
    pool = await db.create_pool(database_url, max_size=4)
    h: Harness = await HARNESSES[request.param](pool, redis)
    try:
        yield h
    finally:
        await h.close()
        await pool.close()


@pytest.fixture
async def channel(harness: Harness) -> AsyncIterator[Channel]:
    adapter = await harness.start()
    yield adapter
    await adapter.close()


def message(address: str, text: str, **extra: Any) -> OutboundMessage:
    return OutboundMessage(message_id=uuid.uuid4(), address=address, text=text, **extra)


async def test_text_arrives(harness: Harness, channel: Channel) -> None:
    address = harness.address(1)
    result = await channel.send(message(address, "Hello from GOMFLOW ₱1,250.00 <b>&"))
    assert result.provider_message_id
    [got] = await harness.received(address)
    assert got.text == "Hello from GOMFLOW ₱1,250.00 <b>&"


async def test_buttons_arrive(harness: Harness, channel: Channel) -> None:
    address = harness.address(2)
    buttons = ((Button("Pay now", action="pay"), Button("My orders", action="status")),)
    await channel.send(message(address, "Choose", buttons=buttons))
    [got] = await harness.received(address)
    assert got.buttons == ["Pay now", "My orders"]


async def test_long_text_is_split_not_lost(harness: Harness, channel: Channel) -> None:
    if not harness.max_text:
        pytest.skip(f"{harness.name} has no length limit")
    address = harness.address(3)
    text = ("line of an order update\n" * ((harness.max_text // 24) + 50)).strip()
    await channel.send(message(address, text))
    got = await harness.received(address)
    assert all(len(part.text) <= harness.max_text for part in got)
    assert "".join(part.text.replace("\n", "") for part in got) == text.replace("\n", "")


async def test_blocked_recipient_is_permanent(harness: Harness, channel: Channel) -> None:
    with pytest.raises(PermanentError) as info:
        await channel.send(message(harness.blocked_address(), "hi"))
    assert info.value.address_unreachable


async def test_rate_limit_is_transient_with_retry_after(harness: Harness, channel: Channel) -> None:
    try:
        await harness.fail_next("rate_limited", retry_after=3)
    except Unsupported:
        pytest.skip(f"{harness.name} has no rate limit answer")
    with pytest.raises(TransientError) as info:
        await channel.send(message(harness.address(4), "hi"))
    # The wait as the platform names it: seconds, or (Graph) whole minutes, rounded up.
    unit = getattr(harness, "retry_after_unit", 1.0)
    assert info.value.retry_after == pytest.approx(math.ceil(3 / unit) * unit, abs=0.5)


async def test_server_error_is_transient(harness: Harness, channel: Channel) -> None:
    try:
        await harness.fail_next("server_error")
    except Unsupported:
        pytest.skip(f"{harness.name} has no server errors")
    with pytest.raises(TransientError):
        await channel.send(message(harness.address(5), "hi"))


async def test_hanging_platform_is_transient(harness: Harness, channel: Channel) -> None:
    try:
        await harness.fail_next("hang")
    except Unsupported:
        pytest.skip(f"{harness.name} cannot hang")
    with pytest.raises(TransientError):
        await channel.send(message(harness.address(6), "hi"))


#: Addresses no platform takes; each harness adds what its platform's ids rule out.
GARBAGE = ["", "   \t", "x" * 300]


async def test_garbage_address_is_refused(harness: Harness, channel: Channel) -> None:
    for address in [*GARBAGE, *getattr(harness, "garbage", ())]:
        with pytest.raises(ValueError):
            channel.validate_address(address)
            pytest.fail(f"{harness.name} took {address!r} as an address")


async def test_a_send_accepted_whose_answer_is_lost_is_counted_honestly(
    harness: Harness, channel: Channel
) -> None:
    """The platform accepts the message and its answer never arrives (the request times out):
    the dispatcher retries the same message. What the person then sees is counted, not
    assumed: one message where the platform recognises the retry (Discord's nonce), two
    where it has no idempotency key (Telegram, Twilio, Messenger: the README says so)."""
    try:
        await harness.fail_next("accepted_lost")
    except Unsupported:
        pytest.skip(f"{harness.name} accepts and records in one write")
    address = harness.address(7)
    outbound = message(address, "Your order ships today")
    with pytest.raises(TransientError):
        await channel.send(outbound)
    assert [r.text for r in await harness.received(address)] == ["Your order ships today"]
    await channel.send(outbound)  # the dispatcher's retry: the same message, the same id
    got = await harness.received(address)
    assert len(got) == 1 + harness.duplicates_after_lost_answer, got
