"""The sandbox channel: records messages in Postgres (local use, demos, the deployment check).

Its registry entry: the channel, its /api/sandbox/* routes (mounted always; they answer 404
``sandbox_disabled`` while it is off), their body limit, its production warning and erasure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gomflow_messaging.channels.registry import ChannelPlugin, lazy
from gomflow_messaging.channels.sandbox.settings import SandboxSettings

if TYPE_CHECKING:
    from uuid import UUID

    from gomflow_messaging.db import Connection
    from gomflow_messaging.settings import Settings

INBOUND_PATH = "/api/sandbox/inbound"
#: Base64 makes a file a third larger; the JSON around it is small.
BASE64_SLACK = 64 * 1024


def _body_limits(settings: Settings) -> dict[str, int]:
    if not settings.enable_sandbox:
        return {}
    # A sandbox chat sends its receipt inline, base64, up to MAX_FILE_SIZE.
    limit: int = max(
        settings.max_request_body_bytes, settings.max_file_size * 4 // 3 + BASE64_SLACK
    )
    return {INBOUND_PATH: limit}


def _warnings(settings: Settings) -> list[str]:
    if not settings.enable_sandbox:
        return []
    return [
        "ENABLE_SANDBOX is true in production: messages to sandbox addresses are only "
        "recorded, and /api/sandbox/* answers"
    ]


async def _erase(
    conn: Connection, contact_id: UUID, notification_ids: list[UUID], addresses: list[str]
) -> None:
    await conn.execute(
        "DELETE FROM sandbox_messages WHERE message_id IN"
        " (SELECT id FROM messages WHERE notification_id = ANY($1::uuid[])"
        "  OR contact_id = $2)"
        " OR address = ANY($3::text[])",
        notification_ids,
        contact_id,
        addresses,
    )


PLUGIN = ChannelPlugin(
    name="sandbox",
    title="the sandbox",
    settings=SandboxSettings,
    build=lazy("gomflow_messaging.channels.sandbox.channel:build"),
    routes=lazy("gomflow_messaging.channels.sandbox.webhook:routes"),
    routes_when_off=True,
    body_limits=_body_limits,
    warnings=_warnings,
    erase=_erase,
    local=True,
    openapi_paths=lazy("gomflow_messaging.channels.sandbox.webhook:openapi_paths"),
)
