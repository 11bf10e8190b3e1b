"""GET /api/commands/status: the bot commands; what each platform has registered with the secret.

The seed guide's monitoring calls it without auth: that gets the public command list (names
and descriptions, which every chat user sees anyway); which platforms are enabled and what
each holds (its scope, app, whether it is in sync) stay behind the service secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from gomflow_messaging.api.common import require_service_secret, services
from gomflow_messaging.errors import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request


async def commands_status(request: Request) -> Response:
    """Per platform: what it has registered (asked of the platform when it keeps a list).

    A channel that registers commands offers ``command_status(menu)``; it says in
    ``source`` whether the list came from the platform or is what we would register.
    """
    svc = services(request)
    menu = svc.bot.menu("en", gom=True)
    try:
        require_service_secret(request)
    except ApiError:
        # Which platforms are enabled is the operator's to know, not the public's.
        return JSONResponse(
            {
                "commands": [
                    {"name": c.name, "description": c.description, "gom_only": c.gom_only}
                    for c in menu
                ],
            }
        )
    platforms: dict[str, Any] = {}
    for name, channel in svc.channels.items():
        status = getattr(channel, "command_status", None)
        if status is not None:
            platforms[name] = await status(menu)
        else:
            platforms[name] = {
                "source": "not_registered",
                "note": "this platform keeps no command list; the bot understands these",
                "commands": [{"name": c.name, "description": c.description} for c in menu],
            }
    return JSONResponse({"platforms": platforms})
