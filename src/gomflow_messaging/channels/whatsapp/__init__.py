"""The WhatsApp channel (Twilio's REST API and webhooks).

Its registry entry: the channel, ``POST <WEBHOOK_PATH>`` (incoming messages) and
``POST /webhook/status`` (status callbacks), and ``whatsapp-templates list|set|delete``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gomflow_messaging.channels.registry import ChannelPlugin, lazy
from gomflow_messaging.channels.whatsapp.settings import WhatsAppSettings
from gomflow_messaging.i18n import LOCALES

if TYPE_CHECKING:
    from gomflow_messaging.channels.registry import AddCommand
    from gomflow_messaging.settings import Settings

STATUS_PATH = "/webhook/status"


def _paths(settings: Settings) -> list[str]:
    return [settings.webhook_path, STATUS_PATH]


def _cli(add: AddCommand) -> None:
    templates = add(
        "whatsapp-templates",
        lazy("gomflow_messaging.channels.whatsapp.cli:command"),
        "List, set or delete the approved WhatsApp Content templates used outside the "
        "24-hour window (one per event and language; '*' for any event).",
    )
    templates.add_argument("action", choices=("list", "set", "delete"), help="what to do")
    templates.add_argument("event", nargs="?", help="an event name (see README) or *")
    templates.add_argument("locale", nargs="?", choices=LOCALES, help="the language")
    templates.add_argument("content_sid", nargs="?", help="Twilio's HX... Content SID")
    templates.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="N=VALUE",
        help="a placeholder and its value, e.g. --var 1={order_title} --var 2={reference}",
    )


PLUGIN = ChannelPlugin(
    name="whatsapp",
    title="WhatsApp",
    settings=WhatsAppSettings,
    build=lazy("gomflow_messaging.channels.whatsapp.channel:build"),
    routes=lazy("gomflow_messaging.channels.whatsapp.webhook:routes"),
    webhook_paths=_paths,
    body_limits=lambda settings: dict.fromkeys(_paths(settings), settings.max_twilio_form_bytes),
    cli=_cli,
    openapi_paths=lazy("gomflow_messaging.channels.whatsapp.webhook:openapi_paths"),
    link_how="LINK {code}",
    phone_address=True,
    submission_platform=True,
)
