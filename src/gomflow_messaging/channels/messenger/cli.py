"""``messenger-profile set|info|delete``: the Page's Get Started button, greeting and menu.

Through the Messenger Profile API (``{base}/me/messenger_profile``). What is set is in
`profile`: per locale, the default (English) and Meta's codes for Filipino (``tl_PH``) and
Malay (``ms_MY``); a person sees the one for their Facebook language.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gomflow_messaging.channels.messenger.channel import MessengerChannel
from gomflow_messaging.channels.messenger.profile import (
    FIELDS,
    GET_STARTED,
    MENU,
    PROFILE_LOCALES,
    profile_body,
)
from gomflow_messaging.cli import CommandError, run
from gomflow_messaging.errors import ChannelError

if TYPE_CHECKING:
    import argparse

    from gomflow_messaging.channels.messenger.settings import MessengerSettings
    from gomflow_messaging.settings import Settings

COMMAND = "messenger-profile"


async def set_profile(channel: MessengerChannel) -> list[str]:
    # The persistent menu needs the Get Started button first: one call sets both in order.
    await channel.graph("POST", "/me/messenger_profile", body=profile_body())
    locales = ", ".join(meta for meta, _locale in PROFILE_LOCALES)
    return [
        f"Get Started button: payload {GET_STARTED!r}",
        f"greeting and menu ({len(MENU)} items) for {locales}",
    ]


async def profile_info(channel: MessengerChannel) -> dict[str, Any]:
    answer = await channel.graph(
        "GET", "/me/messenger_profile", params={"fields": ",".join(FIELDS)}
    )
    data = answer.get("data") or [{}]
    found: dict[str, Any] = data[0] if isinstance(data, list) and data else {}
    page = await channel.page()
    return {"page": page.get("name", ""), "profile": found}


async def delete_profile(channel: MessengerChannel) -> str:
    await channel.graph("DELETE", "/me/messenger_profile", body={"fields": list(FIELDS)})
    return f"deleted: {', '.join(FIELDS)}"


async def profile_action(config: MessengerSettings | Settings, action: str) -> Any:
    """One action with a channel of its own (no database, no Redis: nothing is sent).

    Raises ChannelError when Graph refuses or cannot be reached.
    """
    channel = MessengerChannel(config, None, None, queue_name="cli", max_file_size=0)
    await channel.start()
    try:
        if action == "set":
            return await set_profile(channel)
        if action == "info":
            return await profile_info(channel)
        return await delete_profile(channel)
    finally:
        await channel.close()


def command(settings: Settings, args: argparse.Namespace) -> int:
    """`messenger-profile set|info|delete`."""
    if settings.messenger_page_access_token is None:
        raise CommandError(f"{COMMAND}: set MESSENGER_PAGE_ACCESS_TOKEN")
    try:
        result = run(profile_action(settings, args.action))
    except ChannelError as exc:
        raise CommandError(f"{COMMAND} {args.action}: {exc.code}: {exc.message}") from None
    if isinstance(result, list):
        for line in result:
            print(line)
    elif isinstance(result, dict):
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(result)
    return 0
