"""WhatsApp's settings (TWILIO_*, WEBHOOK_PATH, ...), validated at start-up."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from gomflow_messaging.channels.base import empty_is_none, optional_http_url, require_when_enabled

if TYPE_CHECKING:
    from gomflow_messaging.settings import Environment


class WhatsAppSettings(BaseModel):
    enable_whatsapp: bool = False
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr | None = None
    twilio_whatsapp_number: str = ""
    twilio_api_base_url: str = ""

    _whatsapp_base_url = field_validator("twilio_api_base_url")(optional_http_url)
    webhook_path: str = "/webhooks/whatsapp"
    #: Twilio's form-encoded webhooks (a message of 1,600 characters and its fields).
    max_twilio_form_bytes: int = Field(65_536, ge=1024)
    #: Hosts a buyer's media may be fetched from after Twilio's API redirects (https only).
    twilio_media_hosts: str = (
        "api.twilio.com,mms.twiliocdn.com,media.twiliocdn.com,s3-external-1.amazonaws.com"
    )
    twilio_timeout_seconds: float = Field(15.0, gt=0, le=120)
    #: Twilio's per-sender WhatsApp throughput, shared by every worker.
    whatsapp_messages_per_second: float = Field(80.0, gt=0, le=1000)
    #: Wait after error 63018 (the daily cap on business-initiated conversations).
    whatsapp_daily_cap_retry_seconds: float = Field(3600.0, ge=0)

    if TYPE_CHECKING:
        environment: Environment
        public_base_url: str

    _whatsapp_blank = field_validator("twilio_auth_token", mode="before")(empty_is_none)

    @field_validator("webhook_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @model_validator(mode="after")
    def _whatsapp_credentials(self) -> WhatsAppSettings:
        require_when_enabled(
            self,
            "whatsapp",
            ("twilio_account_sid", "twilio_auth_token", "twilio_whatsapp_number"),
        )
        return self

    @model_validator(mode="after")
    def _whatsapp_public_url(self) -> WhatsAppSettings:
        # Twilio signs the URL it calls; behind Railway's proxy only PUBLIC_BASE_URL knows it.
        host = urlsplit(self.public_base_url).hostname or ""
        if (
            self.enable_whatsapp
            and self.environment == "production"
            and host in ("localhost", "127.0.0.1", "0.0.0.0")
        ):
            raise ValueError(
                "PUBLIC_BASE_URL must be the public URL Twilio calls when ENABLE_WHATSAPP is true"
            )
        return self
