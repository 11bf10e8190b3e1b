"""Outbound fetches go only to each platform's own hosts, in every environment, no redirects."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from gomflow_messaging.settings import Settings
from tests.fakes.discord import FakeDiscord, Signer, new_user_id, slash_with_file
from tests.fakes.twilio import ACCOUNT_SID, FakeTwilio
from tests.helpers import running_app
from tests.test_payment_proofs import (
    JPEG,
    PNG,
    discord_settings,
    interact,
    new_buyer,
    new_gom,
    new_order,
    proofs_of,
    whatsapp_settings,
)
from tests.test_whatsapp import Chat, new_phone


class InternalAdmin:
    """Something on loopback that must never be reached from outside: it counts its visitors."""

    def __init__(self) -> None:
        self.hits = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> InternalAdmin:
        app = web.Application()

        async def admin(request: web.Request) -> web.Response:
            self.hits += 1
            return web.Response(body=PNG, content_type="image/png")

        app.router.add_route("*", "/{path:.*}", admin)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def internal_admin() -> AsyncIterator[InternalAdmin]:
    admin = await InternalAdmin().start()
    yield admin
    await admin.close()


@pytest.mark.parametrize("environment", ["development", "test"])
async def test_a_discord_attachment_off_the_cdn_is_not_fetched(
    make_settings: Callable[..., Settings],
    conn: asyncpg.Connection,
    internal_admin: InternalAdmin,
    environment: str,
) -> None:
    signer = Signer()
    fake = await FakeDiscord(public_key=signer.public_key).start()
    try:
        user = new_user_id()
        buyer = await new_buyer(
            conn,
            await new_order(conn, await new_gom(conn)),
            ("discord", user),
            platform="discord",
            platform_id=user,
        )
        # The fake CDN is allowed (by host:port); the admin shares its host, not its port.
        settings = make_settings(**discord_settings(fake, signer), environment=environment)
        attachment: dict[str, Any] = {
            "filename": "receipt.png",
            "size": len(PNG),
            "url": f"http://127.0.0.1:{internal_admin.port}/internal-admin",
            "proxy_url": f"http://127.0.0.1:{internal_admin.port}/internal-admin",
            "content_type": "image/png",
        }
        async with running_app(settings, mode="web") as client:
            answer = await interact(
                client,
                signer,
                slash_with_file(
                    "pay", "receipt", attachment, {"reference": buyer["reference"]}, user_id=user
                ),
            )
    finally:
        await fake.close()
    assert internal_admin.hits == 0
    assert await proofs_of(conn, buyer["submission_id"]) == []
    assert "We received your receipt" not in answer["data"]["content"]


async def test_twilio_media_redirected_off_its_hosts_is_not_followed(
    make_settings: Callable[..., Settings],
    conn: asyncpg.Connection,
    internal_admin: InternalAdmin,
) -> None:
    twilio = await FakeTwilio().start()
    try:
        _typed, phone = new_phone()
        buyer = await new_buyer(
            conn,
            await new_order(conn, await new_gom(conn)),
            ("whatsapp", phone),
            platform="whatsapp",
            platform_id=phone,
        )
        path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{uuid.uuid4().hex}/Media/ME1"
        twilio.media[path] = ("image/jpeg", JPEG)
        twilio.media_redirects[path] = f"http://127.0.0.1:{internal_admin.port}/internal-admin"
        settings = make_settings(**whatsapp_settings(twilio), environment="development")
        async with running_app(settings, mode="web") as client:
            answer = await Chat(client, phone).say(
                "",
                NumMedia="1",
                MediaContentType0="image/jpeg",
                MediaUrl0="https://api.twilio.com" + path,
            )
    finally:
        await twilio.close()
    assert internal_admin.hits == 0
    assert "could not get that file" in answer[0]
    assert await proofs_of(conn, buyer["submission_id"]) == []
