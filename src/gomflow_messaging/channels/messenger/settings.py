"""Messenger's settings (MESSENGER_*, names fixed by DESIGN.md), validated at start-up."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from gomflow_messaging.channels.base import empty_is_none, http_url, require_when_enabled
from gomflow_messaging.channels.meta_graph import GRAPH_API


class MessengerSettings(BaseModel):
    """Facebook Messenger through one Page: its token, the app secret, the webhook's token."""

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

    _messenger_blank = field_validator(
        "messenger_page_access_token",
        "messenger_app_secret",
        "messenger_verify_token",
        mode="before",
    )(empty_is_none)

    _messenger_base_url = field_validator("messenger_api_base_url")(http_url)

    @model_validator(mode="after")
    def _messenger_credentials(self) -> MessengerSettings:
        require_when_enabled(
            self,
            "messenger",
            ("messenger_page_access_token", "messenger_app_secret", "messenger_verify_token"),
        )
        return self
