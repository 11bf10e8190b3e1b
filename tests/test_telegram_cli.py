"""`telegram-webhook set|info|delete` against the fake Bot API."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import gomflow_messaging
from gomflow_messaging import cli
from gomflow_messaging.channels.telegram import cli as tw
from gomflow_messaging.settings import Settings
from tests.fakes.telegram import FakeTelegram, new_token
from tests.helpers import SECRET

WEBHOOK_SECRET = "cli-webhook-secret_0123456789"
HOOK_URL = "https://messaging.example.com/webhook/telegram"
# This worktree's code, not whatever the virtualenv has installed.
SRC = str(Path(gomflow_messaging.__file__).resolve().parents[1])


@pytest.fixture
def hook_settings(make_settings: Callable[..., Settings], fake_telegram: FakeTelegram) -> Settings:
    return make_settings(
        telegram_bot_token=fake_telegram.token,
        telegram_webhook_secret=WEBHOOK_SECRET,
        telegram_webhook_url=HOOK_URL,
        telegram_api_base_url=fake_telegram.url,
    )


async def test_set_registers_the_secret_and_publishes_menus(
    hook_settings: Settings, fake_telegram: FakeTelegram
) -> None:
    lines = await tw.set_webhook(hook_settings)
    updates = ["message", "callback_query", "my_chat_member", "inline_query"]
    assert lines[0] == f"webhook set: {HOOK_URL} ({', '.join(updates)})"
    assert fake_telegram.webhook["url"] == HOOK_URL
    assert fake_telegram.webhook["secret_token"] == WEBHOOK_SECRET
    assert fake_telegram.webhook["allowed_updates"] == updates
    assert {language for _scope, language in fake_telegram.commands} == {"", "tl", "ms"}
    default = fake_telegram.commands[('{"type": "default"}', "")]
    names = [c["command"] for c in default]
    assert names[:3] == ["start", "help", "orders"]
    assert "manage" not in names and "create" not in names  # GOM commands stay off the menu
    assert default[2]["description"] == "Browse open group orders"

    info = await tw.webhook_info(hook_settings)
    assert info["url"] == HOOK_URL and info["pending_update_count"] == 0

    assert await tw.delete_webhook(hook_settings) == "webhook removed"
    assert fake_telegram.webhook == {}
    assert (await tw.webhook_info(hook_settings))["url"] == ""


async def test_set_refuses_a_plain_http_url(
    make_settings: Callable[..., Settings], fake_telegram: FakeTelegram
) -> None:
    settings = make_settings(
        telegram_bot_token=fake_telegram.token,
        telegram_webhook_secret=WEBHOOK_SECRET,
        telegram_webhook_url="http://messaging.example.com/webhook/telegram",
        telegram_api_base_url=fake_telegram.url,
    )
    with pytest.raises(tw.WebhookError, match="must be an https:// URL"):
        await tw.set_webhook(settings)
    assert fake_telegram.calls == []


def test_missing_token_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(Path(os.sep))  # no .env
    monkeypatch.setenv("SERVICE_SECRET", SECRET)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    assert cli.main(["telegram-webhook", "info"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "gomflow-messaging: telegram-webhook info: TELEGRAM_BOT_TOKEN is not set"


async def test_cli_prints_one_line_when_telegram_refuses(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": SRC,
        "SERVICE_SECRET": SECRET,
        "TELEGRAM_BOT_TOKEN": new_token(),  # not the fake's: Telegram answers 401
        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TELEGRAM_WEBHOOK_URL": HOOK_URL,
        "TELEGRAM_API_BASE_URL": fake_telegram.url,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gomflow_messaging",
        "telegram-webhook",
        "set",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, err
    lines = err.decode().strip().splitlines()
    assert lines == [
        f"gomflow-messaging: telegram-webhook set: setWebhook at {fake_telegram.url}: "
        "Telegram refused the bot token (TELEGRAM_BOT_TOKEN)"
    ]
    assert out == b""
    assert [c.method for c in fake_telegram.calls] == ["setWebhook"]
