"""``whatsapp-cloud info``: the phone number as Meta holds it (name, number, quality rating)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gomflow_messaging.channels.whatsapp.cloud.channel import CloudChannel
from gomflow_messaging.cli import CommandError, run
from gomflow_messaging.errors import ChannelError

if TYPE_CHECKING:
    import argparse

    from gomflow_messaging.settings import Settings

COMMAND = "whatsapp-cloud"


async def number_info(settings: Settings) -> dict[str, Any]:
    """With a channel of its own (no database, no Redis: nothing is sent)."""
    channel = CloudChannel(settings, None, None)
    await channel.start()
    try:
        return await channel.number()
    finally:
        await channel.close()


def command(settings: Settings, args: argparse.Namespace) -> int:
    """`whatsapp-cloud info`."""
    missing = [
        name
        for name, value in (
            ("WHATSAPP_CLOUD_ACCESS_TOKEN", settings.whatsapp_cloud_access_token),
            ("WHATSAPP_CLOUD_PHONE_NUMBER_ID", settings.whatsapp_cloud_phone_number_id),
        )
        if not value
    ]
    if missing:
        raise CommandError(f"{COMMAND}: set {', '.join(missing)}")
    try:
        number = run(number_info(settings))
    except ChannelError as exc:
        raise CommandError(f"{COMMAND} {args.action}: {exc.code}: {exc.message}") from None
    print(f"number: {number.get('display_phone_number', '?')}")
    print(f"display name: {number.get('verified_name', '?')}")
    print(f"quality rating: {number.get('quality_rating', '?')}")
    return 0
