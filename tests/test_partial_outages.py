"""Honest about partial outages: a platform away is `degraded` in health and a warning in
`doctor`; production without a channel that reaches anyone is degraded; `make dev` listens on
this machine only, and a port already taken is one line."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from gomflow_messaging import doctor
from gomflow_messaging.settings import Settings, load_settings
from tests.conftest import REDIS_URL, unique_text
from tests.fakes.telegram import FakeTelegram
from tests.helpers import AUTH, SECRET, running_app
from tests.test_deployer import cli, free_port, one_line


async def test_telegram_away_is_degraded_and_a_doctor_warning(
    telegram_settings: Callable[..., Settings], fake_telegram: FakeTelegram
) -> None:
    settings = telegram_settings(queue_name=unique_text("telegram-away"))
    await fake_telegram.close()  # nothing answers at its address now
    async with running_app(settings) as client:
        response = await client.get("/api/health", headers=AUTH)
        assert response.status_code == 200, response.text
        found = response.json()
        assert found["status"] == "degraded"
        telegram = found["components"]["channels"]["telegram"]
        assert not telegram["ok"] and "unreachable" in telegram["detail"]
        bare = (await client.get("/health")).json()
        assert (bare["status"], bare["components"]["platforms"]) == ("degraded", {"ok": False})

    findings = await doctor.run(settings)
    [channel] = [f for f in findings if f.name == "channel telegram"]
    assert channel.ok and channel.warning, channel
    printed = doctor.report(findings)
    assert "[WARN] channel telegram: Telegram unreachable now" in printed
    assert "all checks passed" not in printed
    assert printed.splitlines()[-1].startswith("no check failed, but")


async def test_production_without_a_reaching_channel_is_degraded_and_says_so_at_start(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        environment="production",
        enable_sandbox=False,
        queue_name=unique_text("no-channel"),
        public_base_url="https://messaging.example.com",
    )
    with caplog.at_level(logging.INFO, logger="gomflow_messaging.app"):
        async with running_app(settings) as client:
            response = await client.get("/api/health", headers=AUTH)
    assert response.status_code == 200
    found = response.json()
    assert found["status"] == "degraded", found
    assert "no channel that reaches buyers is enabled" in found["problems"]
    [ready] = [r.getMessage() for r in caplog.records if "ready" in r.getMessage()]
    assert "no channel enabled" in ready and "channels " not in ready, ready


def test_dev_listens_on_this_machine_and_production_everywhere() -> None:
    base = {"_env_file": None, "service_secret": SECRET}
    assert load_settings(**base).host == "127.0.0.1"
    assert load_settings(**base, environment="production").host == "0.0.0.0"
    assert load_settings(**base, host="0.0.0.0").host == "0.0.0.0"
    dockerfile = (Path(__file__).parents[1] / "Dockerfile").read_text()
    assert "HOST=0.0.0.0" in dockerfile


def test_a_second_serve_on_a_taken_port_is_one_line(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        result = cli(
            "serve",
            cwd=tmp_path,
            PORT=str(port),
            DATABASE_URL=database_url,
            REDIS_URL=REDIS_URL,
            QUEUE_NAME=unique_text("taken"),
            ENABLE_SANDBOX="true",
        )
    assert result.returncode == 1
    line = one_line(result)
    assert f"port {port} on 127.0.0.1 is taken" in line, line
