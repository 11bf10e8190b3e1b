"""The WhatsApp channel, through Twilio (the default) or Meta's Cloud API (WHATSAPP_PROVIDER).

Its registry entry: the channel; with Twilio ``POST <WEBHOOK_PATH>`` (incoming messages) and
``POST /webhook/status`` (status callbacks), with the Cloud API ``GET|POST
/webhook/whatsapp-cloud``; ``whatsapp-templates list|set|delete`` (both) and
``whatsapp-cloud info``. Nothing outside this package learns which provider is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gomflow_messaging.channels.registry import ChannelPlugin, lazy
from gomflow_messaging.channels.whatsapp.settings import WhatsAppSettings
from gomflow_messaging.i18n import LOCALES

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from starlette.routing import BaseRoute

    from gomflow_messaging.channels.base import Channel
    from gomflow_messaging.channels.registry import AddCommand
    from gomflow_messaging.db import Pool
    from gomflow_messaging.settings import Settings

STATUS_PATH = "/webhook/status"
CLOUD_PATH = "/webhook/whatsapp-cloud"


def _cloud(settings: Settings) -> bool:
    return bool(settings.whatsapp_provider == "cloud")


def _module(settings: Settings, part: str) -> str:
    """The provider's module: ``channel`` -> Twilio's or ``cloud.channel``."""
    prefix = "gomflow_messaging.channels.whatsapp."
    return prefix + ("cloud." if _cloud(settings) else "") + part


def _paths(settings: Settings) -> list[str]:
    return [CLOUD_PATH] if _cloud(settings) else [settings.webhook_path, STATUS_PATH]


def _build(settings: Settings, pool: Pool, redis: Redis) -> Channel:
    built: Channel = lazy(_module(settings, "channel") + ":build")(settings, pool, redis)
    return built


def _routes(settings: Settings) -> list[BaseRoute]:
    found: list[BaseRoute] = lazy(_module(settings, "webhook") + ":routes")(settings)
    return found


def _openapi(settings: Settings) -> dict[str, Any]:
    found: dict[str, Any] = lazy(_module(settings, "webhook") + ":openapi_paths")(settings)
    return found


def _body_limits(settings: Settings) -> dict[str, int]:
    if _cloud(settings):
        return {CLOUD_PATH: settings.max_whatsapp_cloud_event_bytes}
    return dict.fromkeys(_paths(settings), settings.max_twilio_form_bytes)


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
    templates.add_argument(
        "content_sid",
        nargs="?",
        metavar="template",
        help="Twilio's HX... Content SID, or the Meta template's name (WHATSAPP_PROVIDER=cloud)",
    )
    templates.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="N=VALUE",
        help="a placeholder and its value, e.g. --var 1={order_title} --var 2={reference}",
    )
    cloud = add(
        "whatsapp-cloud",
        lazy("gomflow_messaging.channels.whatsapp.cloud.cli:command"),
        "Show the WhatsApp Cloud API number as Meta holds it: display name, number and "
        "quality rating (WHATSAPP_PROVIDER=cloud).",
    )
    cloud.add_argument("action", choices=("info",), help="what to do")


PLUGIN = ChannelPlugin(
    name="whatsapp",
    title="WhatsApp",
    settings=WhatsAppSettings,
    build=_build,
    routes=_routes,
    webhook_paths=_paths,
    body_limits=_body_limits,
    cli=_cli,
    openapi_paths=_openapi,
    link_how="LINK {code}",
    phone_address=True,
    submission_platform=True,
)
