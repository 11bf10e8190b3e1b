"""The Facebook Messenger channel (the Graph API's Send API, one Page), the fourth chat.

Its registry entry: the channel, ``GET|POST /webhook/messenger`` (Meta's handshake, signed
events) and ``messenger-profile set|info|delete`` (Get Started, greeting, menu).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gomflow_messaging.channels.messenger.settings import MessengerSettings
from gomflow_messaging.channels.registry import ChannelPlugin, lazy

if TYPE_CHECKING:
    from gomflow_messaging.channels.registry import AddCommand

WEBHOOK_PATH = "/webhook/messenger"


def _cli(add: AddCommand) -> None:
    profile = add(
        "messenger-profile",
        lazy("gomflow_messaging.channels.messenger.cli:command"),
        "Set, show or delete the Messenger Page's Get Started button, greeting and menu "
        "(English, Filipino, Malay).",
    )
    profile.add_argument("action", choices=("set", "info", "delete"), help="what to do")


PLUGIN = ChannelPlugin(
    name="messenger",
    title="Messenger",
    settings=MessengerSettings,
    build=lazy("gomflow_messaging.channels.messenger.channel:build"),
    routes=lazy("gomflow_messaging.channels.messenger.webhook:routes"),
    webhook_paths=lambda settings: [WEBHOOK_PATH],
    body_limits=lambda settings: {WEBHOOK_PATH: settings.max_messenger_event_bytes},
    cli=_cli,
    openapi_paths=lazy("gomflow_messaging.channels.messenger.webhook:openapi_paths"),
    # Typed as on WhatsApp; an m.me/<page>?ref=<code> link does the same with one tap.
    link_how="LINK {code}",
)
