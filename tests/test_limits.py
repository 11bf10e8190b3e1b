"""Bounded input in the app: body limits per route, JSON depth, NUL characters named."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from gomflow_messaging.settings import Settings
from tests.fakes.discord import APP_ID, TOKEN, FakeDiscord, Signer
from tests.fakes.messenger import FakeGraph, messenger_env, sign
from tests.fakes.telegram import FakeTelegram
from tests.helpers import AUTH, running_app

TELEGRAM_SECRET = "limits-webhook-secret_0123456789"
DEEP = 100_000


def _deep(levels: int, inner: Any = 1) -> bytes:
    return b"[" * levels + json.dumps(inner).encode() + b"]" * levels


async def _chunks(total: int, block: int = 4096) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        sent += block
        yield b" " * block


def _envelope(body: dict[str, Any], code: str) -> dict[str, Any]:
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    fields: dict[str, Any] = body["error"]["fields"]
    return fields


async def test_a_body_over_the_route_limit_is_413_by_length_and_while_streaming(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(max_request_body_bytes=4096)
    async with running_app(settings, mode="web") as client:
        declared = await client.post(
            "/api/notify", content=b" " * 5000, headers={**AUTH, "content-type": "application/json"}
        )
        # No Content-Length (a generator is sent chunked): counted as it arrives.
        streamed = await client.post(
            "/api/notify",
            content=_chunks(10 * 4096),
            headers={**AUTH, "content-type": "application/json"},
        )
        # Within the limit, the route still answers as before.
        small = await client.post(
            "/api/notify", content=b"[]", headers={**AUTH, "content-type": "application/json"}
        )
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        _envelope(response.json(), "too_large")
        assert response.headers["connection"] == "close"
    assert small.status_code == 422


async def test_deep_json_and_nested_nul_to_notify_are_422_naming_the_field(
    settings: Settings,
) -> None:
    def notify(data: Any) -> dict[str, Any]:
        return {
            "event": "custom",
            "data": data,
            "recipients": [{"channel": "sandbox", "address": "deep"}],
        }

    nested_nul: Any = "a\x00b"
    for _ in range(900):
        nested_nul = [nested_nul]
    async with running_app(settings, mode="web") as client:
        deep = await client.post(
            "/api/notify",
            content=_deep(DEEP),
            headers={**AUTH, "content-type": "application/json"},
        )
        nul_900 = await client.post(
            "/api/notify", json=notify({"text": "hi", "extra": nested_nul}), headers=AUTH
        )
        nul_named = await client.post(
            "/api/notify",
            json={
                "event": "custom",
                "data": {"text": "hi"},
                "recipients": [{"channel": "sandbox", "address": "x\x00y"}],
            },
            headers=AUTH,
        )
    assert deep.status_code == 422, deep.text
    assert "body" in _envelope(deep.json(), "validation_error")
    assert nul_900.status_code == 422, nul_900.text
    assert "body" in _envelope(nul_900.json(), "validation_error")
    assert nul_named.status_code == 422, nul_named.text
    assert "recipients.0.address" in _envelope(nul_named.json(), "validation_error")


async def test_deep_json_to_a_signed_telegram_webhook_is_422(
    make_settings: Callable[..., Settings],
) -> None:
    fake = await FakeTelegram().start()
    try:
        settings = make_settings(
            enable_telegram=True,
            telegram_bot_token=fake.token,
            telegram_webhook_secret=TELEGRAM_SECRET,
            telegram_api_base_url=fake.url,
        )
        async with running_app(settings, mode="web") as client:
            response = await client.post(
                "/webhook/telegram",
                content=_deep(DEEP),
                headers={
                    "content-type": "application/json",
                    "x-telegram-bot-api-secret-token": TELEGRAM_SECRET,
                },
            )
    finally:
        await fake.close()
    assert response.status_code == 422, response.text
    _envelope(response.json(), "validation_error")


async def test_deep_json_to_a_signed_discord_webhook_is_422(
    make_settings: Callable[..., Settings],
) -> None:
    signer = Signer()
    fake = await FakeDiscord(public_key=signer.public_key).start()
    try:
        settings = make_settings(
            enable_discord=True,
            discord_token=TOKEN,
            discord_client_id=APP_ID,
            discord_public_key=signer.public_key,
            discord_api_base_url=fake.base_url,
        )
        body = b'{"type": 2, "data": ' + _deep(DEEP) + b"}"
        async with running_app(settings, mode="web") as client:
            response = await client.post(
                "/webhook/discord",
                content=body,
                headers={"content-type": "application/json", **signer.headers(body)},
            )
    finally:
        await fake.close()
    assert response.status_code == 422, response.text
    _envelope(response.json(), "validation_error")


async def test_deep_json_to_a_signed_messenger_webhook_is_422(
    make_settings: Callable[..., Settings],
) -> None:
    graph = await FakeGraph().start()
    try:
        body = b'{"object": "page", "entry": ' + _deep(DEEP) + b"}"
        async with running_app(make_settings(**messenger_env(graph.base_url)), mode="web") as c:
            response = await c.post(
                "/webhook/messenger",
                content=body,
                headers={"content-type": "application/json", "X-Hub-Signature-256": sign(body)},
            )
    finally:
        await graph.close()
    assert response.status_code == 422, response.text
    _envelope(response.json(), "validation_error")
    assert graph.sent == []
