"""Telegram's settings (TELEGRAM_*), validated at start-up."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from gomflow_messaging.channels.base import empty_is_none, http_url, require_when_enabled


class TelegramSettings(BaseModel):
    enable_telegram: bool = False
    telegram_bot_token: SecretStr | None = None
    telegram_webhook_url: str = ""
    telegram_webhook_secret: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org"

    _telegram_base_url = field_validator("telegram_api_base_url")(http_url)
    #: Telegram updates are JSON of a few KiB (a message of 4,096 characters, its entities).
    max_telegram_update_bytes: int = Field(262_144, ge=1024)
    # Bot API request timeout; the adapter also keeps it under half the dispatcher's lease.
    telegram_request_timeout_seconds: float = Field(10.0, gt=0)
    # Telegram's send limits: per bot, per chat (with a short burst), per group chat.
    telegram_rate_per_second: float = Field(30.0, gt=0)
    telegram_chat_rate_per_second: float = Field(1.0, gt=0)
    telegram_group_rate_per_minute: float = Field(20.0, gt=0)
    telegram_chat_burst: int = Field(3, ge=1, le=30)
    telegram_health_cache_seconds: float = Field(30.0, ge=0)

    _telegram_blank = field_validator(
        "telegram_bot_token", "telegram_webhook_secret", mode="before"
    )(empty_is_none)

    @field_validator("telegram_bot_token")
    @classmethod
    def _telegram_token(cls, value: SecretStr | None) -> SecretStr | None:
        token = value.get_secret_value() if value is not None else ""
        if token and not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", token):
            raise ValueError("must look like 123456:ABC-DEF... (the token from @BotFather)")
        return value

    @model_validator(mode="after")
    def _telegram_credentials(self) -> TelegramSettings:
        require_when_enabled(self, "telegram", ("telegram_bot_token", "telegram_webhook_secret"))
        return self
