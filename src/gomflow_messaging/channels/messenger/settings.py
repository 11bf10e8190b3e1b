"""MESSENGER_* settings (names fixed by DESIGN.md), validated once at start-up."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gomflow_messaging.settings import ConfigError, _describe

#: Meta's own Graph API; tests point MESSENGER_API_BASE_URL at a fake on loopback.
GRAPH_API = "https://graph.facebook.com/v23.0"


class MessengerSettings(BaseSettings):
    """Facebook Messenger through one Page: its token, the app secret, the webhook's token."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    enable_messenger: bool = False
    #: The Page access token (Meta app > Messenger > Access tokens): sends and the profile.
    messenger_page_access_token: SecretStr | None = None
    #: The Meta app's secret: every webhook event is signed with it (X-Hub-Signature-256).
    messenger_app_secret: SecretStr | None = None
    #: Any string you choose; Meta sends it back once when the webhook is subscribed.
    messenger_verify_token: SecretStr | None = None
    messenger_api_base_url: str = GRAPH_API
    #: Send API calls per second for the Page, shared by every worker (Meta allows ~300/s).
    messenger_rate_per_second: float = Field(250.0, gt=0, le=1000)
    #: Graph's rate-limit errors (codes 4, 32, 613) say no wait: hold the Page back this long.
    messenger_rate_limit_pause_seconds: float = Field(60.0, ge=0, le=3600)
    messenger_timeout_seconds: float = Field(10.0, gt=0, le=120)
    messenger_health_cache_seconds: float = Field(60.0, ge=0)
    #: Hosts a buyer's attachment may be fetched from (``*.`` any subdomain; host:port that
    #: port only), each redirect hop included; tests name their fake's 127.0.0.1:port.
    messenger_attachment_hosts: str = "*.fbcdn.net,lookaside.fbsbx.com"
    #: Webhook batches carry at most a few events of a few KiB each.
    max_messenger_event_bytes: int = Field(262_144, ge=1024)

    @field_validator(
        "messenger_page_access_token",
        "messenger_app_secret",
        "messenger_verify_token",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("messenger_api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _credentials(self) -> MessengerSettings:
        if self.enable_messenger:
            for name in (
                "messenger_page_access_token",
                "messenger_app_secret",
                "messenger_verify_token",
            ):
                if getattr(self, name) is None:
                    raise ValueError(f"{name.upper()} is required when ENABLE_MESSENGER is true")
        return self

    @property
    def attachment_hosts(self) -> tuple[str, ...]:
        return tuple(
            h.strip().lower() for h in self.messenger_attachment_hosts.split(",") if h.strip()
        )


def load(source: object = None, **overrides: Any) -> MessengerSettings:
    """From the environment, or from a settings object that carries the same fields.

    Raises ConfigError with one line naming the variable, as the core settings do.
    """
    values: dict[str, Any] = {}
    if source is not None:
        for name in MessengerSettings.model_fields:
            if hasattr(source, name):
                values[name] = getattr(source, name)
    values.update(overrides)
    try:
        return MessengerSettings(**values)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_describe(exc)}") from None
