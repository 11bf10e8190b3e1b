"""The house: the core knows channels only through channels/registry.py and the protocol."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gomflow_messaging.channels import registry
from gomflow_messaging.settings import CHANNEL_NAMES, Settings

SRC = Path(__file__).parent.parent / "src" / "gomflow_messaging"

#: The core: it meets channels through the registry (and the Channel protocol) only.
CORE_MODULES = (
    "app.py",
    "cli.py",
    "bootstrap.py",
    "health.py",
    "doctor.py",
    "settings.py",
    "metrics.py",
    "dispatcher.py",
    "worker.py",
    "api/routes.py",
    "api/commands.py",
    "api/limits.py",
    "workflows/data_rights.py",
    "workflows/notify.py",
    "workflows/reminders.py",
    "workflows/gom_alerts.py",
    "workflows/linking.py",
    "api/openapi.py",
    "contacts.py",
    "orders.py",
)
#: Every platform name, today's and the next one's (Twilio is how WhatsApp is reached).
PLATFORM = re.compile(r"telegram|discord|whatsapp|twilio|sandbox|messenger", re.IGNORECASE)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_modules_name_no_platform(module: str) -> None:
    lines = (SRC / module).read_text().splitlines()
    found = [
        f"{module}:{n}: {line.strip()}" for n, line in enumerate(lines, 1) if PLATFORM.search(line)
    ]
    assert found == []


def test_every_channel_is_one_package_in_the_registry() -> None:
    assert CHANNEL_NAMES == ("sandbox", "telegram", "discord", "whatsapp", "messenger")
    for plugin in registry.plugins():
        package = SRC / "channels" / plugin.name
        assert (package / "__init__.py").is_file()
        assert (package / "channel.py").is_file()
        assert (package / "settings.py").is_file()
        assert plugin.settings.__module__ == f"gomflow_messaging.channels.{plugin.name}.settings"
        assert issubclass(Settings, plugin.settings)
        assert f"enable_{plugin.name}" in plugin.settings.model_fields
    assert not (SRC / "telegram_webhook.py").exists()
    assert not (SRC / "whatsapp_templates.py").exists()
    assert not [p for p in (SRC / "api").glob("*.py") if PLATFORM.search(p.stem)]


def test_a_disabled_channel_is_never_imported() -> None:
    """With every channel off: only the registry entries and settings models are loaded,
    no channel module, webhook or SDK; switching one on loads that one alone."""
    script = (
        "import sys\n"
        "from gomflow_messaging.app import create_app\n"
        "from gomflow_messaging.cli import build_parser\n"
        "from gomflow_messaging.settings import Settings\n"
        "build_parser()\n"
        "kw = dict(_env_file=None, service_secret='s' * 32, enable_sandbox=False)\n"
        "for on in ('', 'telegram'):\n"
        "    extra = {'enable_telegram': True, 'telegram_bot_token': '1:a',\n"
        "             'telegram_webhook_secret': 'x'} if on else {}\n"
        "    create_app(Settings(**kw, **extra))\n"
        "    mods = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "                  ('aiogram', 'hikari', 'twilio')\n"
        "                  or m.startswith('gomflow_messaging.channels.')\n"
        "                  and m.count('.') == 3 and not m.endswith('.settings'))\n"
        "    print(on or '-', sorted({m.split('.')[0] for m in mods if '.' not in m}),\n"
        "          [m for m in mods if m.startswith('gomflow')])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    ).stdout.splitlines()
    assert out[0] == "- [] ['gomflow_messaging.channels.sandbox.webhook']"
    assert out[1].startswith("telegram ['aiogram'] [")
    assert "gomflow_messaging.channels.telegram.webhook" in out[1]
    assert "discord" not in out[1] and "whatsapp" not in out[1]


def test_each_channel_brings_its_commands() -> None:
    from gomflow_messaging.cli import build_parser

    parser = build_parser()
    for command in (
        "telegram-webhook",
        "discord-commands",
        "whatsapp-templates",
        "messenger-profile",
    ):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([command, "--help"])
        assert exit_.value.code == 0


def test_every_webhook_path_is_bounded_before_it_is_read() -> None:
    """The webhooks no longer measure a body after reading it: api/limits.py must know
    every path a platform calls, with that channel's own limit."""
    from gomflow_messaging.api.limits import BodyLimits

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        service_secret="s" * 32,
        max_request_body_bytes=1_000_000,
        max_telegram_update_bytes=2048,
        max_discord_interaction_bytes=3072,
        max_twilio_form_bytes=4096,
        max_messenger_event_bytes=5120,
        webhook_path="/hooks/twilio",
    )
    limits = BodyLimits.from_settings(settings)
    assert {
        path: limits.limit_for(path)
        for plugin in registry.plugins()
        if plugin.webhook_paths is not None
        for path in plugin.webhook_paths(settings)
    } == {
        "/webhook/telegram": 2048,
        "/webhook/discord": 3072,
        "/hooks/twilio": 4096,
        "/webhook/status": 4096,
        "/webhook/messenger": 5120,
    }
