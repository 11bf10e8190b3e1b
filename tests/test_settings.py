"""Settings: a bad value stops start-up with one line naming the variable; secrets stay hidden."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gomflow_messaging.settings import ConfigError, load_settings
from tests.helpers import SECRET


def _env(**values: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return {**keep, **values}


def test_short_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_SECRET", "short")
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert "SERVICE_SECRET" in str(info.value)
    assert "32" in str(info.value)
    assert "short" not in str(info.value).replace("shorter", "")


def test_enabled_channel_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_SECRET", SECRET)
    monkeypatch.setenv("ENABLE_TELEGRAM", "true")
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert (
        "TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET are required when ENABLE_TELEGRAM is true"
        in str(info.value)
    )


def test_every_missing_credential_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_SECRET", SECRET)
    monkeypatch.setenv("ENABLE_WHATSAPP", "true")
    monkeypatch.setenv("TWILIO_WHATSAPP_NUMBER", "+14155238886")
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert str(info.value) == (
        "invalid configuration: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are required when "
        "ENABLE_WHATSAPP is true"
    )


def test_without_a_dotenv_it_says_where_settings_are_read(tmp_path: Path) -> None:
    """Run from a folder with no .env: not pydantic's "SERVICE_SECRET: Field required"."""
    run = subprocess.run(
        [sys.executable, "-m", "gomflow_messaging", "doctor"],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    [line] = run.stderr.strip().splitlines()
    assert "SERVICE_SECRET is not set" in line and "Field required" not in line
    assert f"a .env file in the working directory ({tmp_path / '.env'} does not exist" in line


def test_bad_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_SECRET", SECRET)
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ConfigError, match="PORT"):
        load_settings(_env_file=None)


def test_secrets_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_SECRET", SECRET)
    monkeypatch.setenv("SERVICE_SECRET_PREVIOUS", "p" * 40)
    settings = load_settings(_env_file=None)
    assert SECRET not in repr(settings)
    assert "p" * 40 not in repr(settings)
    assert settings.service_secrets() == [SECRET.encode(), b"p" * 40]


def test_sandbox_defaults_off_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_SECRET", SECRET)
    monkeypatch.setenv("ENVIRONMENT", "production")
    assert load_settings(_env_file=None).enabled_channels == []
    monkeypatch.setenv("ENVIRONMENT", "development")
    assert load_settings(_env_file=None).enabled_channels == ["sandbox"]


def test_serve_with_short_secret_refuses_in_one_line(tmp_path: os.PathLike[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gomflow_messaging", "serve"],
        env=_env(SERVICE_SECRET="short"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SERVICE_SECRET" in lines[0]
    assert "Traceback" not in result.stderr


def test_every_command_has_help() -> None:
    for command in ("migrate", "serve", "web", "worker", "seed-demo", "doctor", "run-job"):
        result = subprocess.run(
            [sys.executable, "-m", "gomflow_messaging", command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (command, result.stderr)
        assert "usage: gomflow-messaging" in result.stdout


@pytest.mark.parametrize(
    "variable", ["TELEGRAM_BOT_TOKEN", "DISCORD_TOKEN", "TWILIO_AUTH_TOKEN", "MESSENGER_APP_SECRET"]
)
def test_every_channels_empty_secret_means_unset(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """Each channel's settings are a mixin of one class: a validator one mixin names like
    another's would be lost (only one survives the composition)."""
    monkeypatch.setenv("SERVICE_SECRET", SECRET)
    monkeypatch.setenv(variable, "")
    assert getattr(load_settings(_env_file=None), variable.lower()) is None


@pytest.mark.parametrize(
    "variable",
    [
        "PUBLIC_BASE_URL",
        "TELEGRAM_API_BASE_URL",
        "DISCORD_API_BASE_URL",
        "TWILIO_API_BASE_URL",
        "MESSENGER_API_BASE_URL",
    ],
)
def test_every_base_url_is_checked(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv("SERVICE_SECRET", SECRET)
    monkeypatch.setenv(variable, "ftp://example.com")
    with pytest.raises(ConfigError, match=f"{variable}: must be an http"):
        load_settings(_env_file=None)


def test_every_channels_missing_credentials_and_the_secret_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first deploy that forgot several things hears of all of them in one run: pydantic
    stops at a missing variable, and at the first channel's check that fails."""
    monkeypatch.delenv("SERVICE_SECRET", raising=False)
    monkeypatch.setenv("ENABLE_WHATSAPP", "true")
    monkeypatch.setenv("TWILIO_WHATSAPP_NUMBER", "+14155238886")
    monkeypatch.setenv("ENABLE_TELEGRAM", "true")
    monkeypatch.setenv("ENABLE_MESSENGER", "true")
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith("invalid configuration: SERVICE_SECRET is not set; ")
    for named in (
        "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are required when ENABLE_WHATSAPP is true",
        "TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET are required when ENABLE_TELEGRAM is true",
        "required when ENABLE_MESSENGER is true",
    ):
        assert named in line, line
    monkeypatch.setenv("SERVICE_SECRET", SECRET)
    with pytest.raises(ConfigError) as again:
        load_settings(_env_file=None)
    assert "SERVICE_SECRET" not in str(again.value)
    assert str(again.value).count("required when ENABLE_") == 3
