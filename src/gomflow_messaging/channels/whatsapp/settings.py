"""WhatsApp's settings (TWILIO_*, WEBHOOK_PATH, ...), validated at start-up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from gomflow_messaging.channels.base import (
    empty_is_none,
    http_url,
    missing_credentials,
    optional_http_url,
    require_when_enabled,
)
from gomflow_messaging.channels.meta_graph import GRAPH_API

if TYPE_CHECKING:
    from gomflow_messaging.settings import Environment


#: What the Cloud provider needs, named in one line when any is missing.
CLOUD_REQUIRED = (
    "whatsapp_cloud_access_token",
    "whatsapp_cloud_phone_number_id",
    "whatsapp_cloud_app_secret",
    "whatsapp_cloud_verify_token",
)


class WhatsAppSettings(BaseModel):
    enable_whatsapp: bool = False
    #: How the channel talks to WhatsApp: through Twilio, or Meta's own Cloud API.
    whatsapp_provider: Literal["twilio", "cloud"] = "twilio"
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

    # Meta's WhatsApp Cloud API (WHATSAPP_PROVIDER=cloud).
    whatsapp_cloud_access_token: SecretStr | None = None
    whatsapp_cloud_phone_number_id: str = ""
    whatsapp_cloud_app_secret: SecretStr | None = None
    whatsapp_cloud_verify_token: SecretStr | None = None
    whatsapp_cloud_api_base_url: str = GRAPH_API
    _cloud_base_url = field_validator("whatsapp_cloud_api_base_url")(http_url)
    #: Messages per second from the number (Meta's default 80, raised up to 1,000).
    whatsapp_cloud_rate_per_second: float = Field(80.0, gt=0, le=1000)
    whatsapp_cloud_timeout_seconds: float = Field(15.0, gt=0, le=120)
    #: Hosts a buyer's media is fetched from with the token (Meta's; tests name a fake).
    whatsapp_cloud_media_hosts: str = "lookaside.fbsbx.com"
    #: One signed webhook POST (Meta batches up to 1,000 updates in one).
    max_whatsapp_cloud_event_bytes: int = Field(3 * 1024 * 1024, ge=1024)

    if TYPE_CHECKING:
        environment: Environment
        public_base_url: str

    _whatsapp_blank = field_validator(
        "twilio_auth_token",
        "whatsapp_cloud_access_token",
        "whatsapp_cloud_app_secret",
        "whatsapp_cloud_verify_token",
        mode="before",
    )(empty_is_none)

    @field_validator("webhook_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @model_validator(mode="after")
    def _whatsapp_credentials(self) -> WhatsAppSettings:
        if self.whatsapp_provider == "twilio":
            require_when_enabled(
                self,
                "whatsapp",
                ("twilio_account_sid", "twilio_auth_token", "twilio_whatsapp_number"),
            )
            return self
        missing = [name.upper() for name in CLOUD_REQUIRED if not getattr(self, name)]
        if self.enable_whatsapp and missing:
            missing_credentials(
                f"{', '.join(missing)} required when ENABLE_WHATSAPP is true and "
                "WHATSAPP_PROVIDER is cloud"
            )
        return self

    @model_validator(mode="after")
    def _whatsapp_public_url(self) -> WhatsAppSettings:
        # Twilio signs the URL it calls; behind Railway's proxy only PUBLIC_BASE_URL knows it.
        host = urlsplit(self.public_base_url).hostname or ""
        if (
            self.enable_whatsapp
            and self.whatsapp_provider == "twilio"
            and self.environment == "production"
            and host in ("localhost", "127.0.0.1", "0.0.0.0")
        ):
            raise ValueError(
                "PUBLIC_BASE_URL must be the public URL Twilio calls when ENABLE_WHATSAPP is true"
            )
        return self
