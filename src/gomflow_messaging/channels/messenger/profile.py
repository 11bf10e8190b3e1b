"""The Page's Messenger profile: the Get Started button, the greeting and the menu, per locale.

Set through the Messenger Profile API by ``messenger-profile set`` and compared with what the
Page holds by ``/api/commands/status``. Menu items are postbacks carrying the same command
lines as the bot's buttons.
"""

from __future__ import annotations

from typing import Any

from gomflow_messaging.i18n import gettext

#: Our locales as Meta names them; "default" is for every other Facebook language.
PROFILE_LOCALES: tuple[tuple[str, str], ...] = (
    ("default", "en"),
    ("tl_PH", "fil"),
    ("ms_MY", "ms"),
)
FIELDS = ("get_started", "greeting", "persistent_menu")
#: What the Get Started button sends: the bot's welcome (a ref link sends ``/start CODE``).
GET_STARTED = "start"
#: (label, the command line the item sends), labels translated per locale (30 at most).
MENU: tuple[tuple[str, str], ...] = (
    ("Open orders", "orders"),
    ("My orders", "status"),
    ("Pay", "pay"),
    ("Settings", "settings"),
)


def profile_body() -> dict[str, Any]:
    """The whole profile: Get Started, then a greeting and a menu per locale."""
    greeting = []
    menus = []
    for meta, locale in PROFILE_LOCALES:
        greeting.append(
            {
                "locale": meta,
                # Translators: Messenger fills in {{user_first_name}}: keep it as is. Shown
                # before the first message; at most 160 characters.
                "text": gettext(
                    locale,
                    "Hi {{user_first_name}}! Browse group orders, join one, pay and follow "
                    "your orders here. Press Get Started.",
                ),
            }
        )
        menus.append(
            {
                "locale": meta,
                "composer_input_disabled": False,
                "call_to_actions": [
                    {"type": "postback", "title": gettext(locale, label)[:30], "payload": action}
                    for label, action in MENU
                ],
            }
        )
    return {
        "get_started": {"payload": GET_STARTED},
        "greeting": greeting,
        "persistent_menu": menus,
    }
