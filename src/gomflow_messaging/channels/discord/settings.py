"""Discord's settings (DISCORD_*, ENABLE_SLASH_COMMANDS, ...), validated at start-up."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from gomflow_messaging.channels.base import empty_is_none, http_url, require_when_enabled


class DiscordSettings(BaseModel):
    enable_discord: bool = False
    discord_token: SecretStr | None = None
    discord_client_id: str = ""
    discord_guild_id: str = ""
    discord_public_key: str = ""
    discord_api_base_url: str = "https://discord.com/api/v10"

    _discord_base_url = field_validator("discord_api_base_url")(http_url)
    enable_slash_commands: bool = True
    enable_button_interactions: bool = True
    enable_modal_interactions: bool = True
    #: Discord interactions, resolved users and messages included, are tens of KiB.
    max_discord_interaction_bytes: int = Field(262_144, ge=1024)
    #: Members holding this role are GOMs on the server (Sender.gom_role); empty: no role.
    discord_gom_role_id: str = ""
    #: hikari's own timeout per HTTP request; a hanging Discord fails the send after this.
    discord_request_timeout_seconds: float = Field(10.0, gt=0, le=120)
    #: hikari's own retries on 5xx and network errors; the outbox retries too, with backoff.
    discord_max_retries: int = Field(0, ge=0, le=5)
    #: Rate-limit waits hikari may sleep through; longer ones come back as retry-after.
    discord_max_rate_limit_wait_seconds: float = Field(2.0, ge=0, le=300)
    #: Discord's global limit: requests per second shared by every replica (through Redis).
    discord_requests_per_second: float = Field(50.0, gt=0, le=1000)
    #: An interaction not answered by then is deferred (Discord's limit is 3 s).
    discord_answer_deadline_seconds: float = Field(2.0, gt=0, le=2.8)
    #: Hosts (or host:port) a slash command's attachment may be downloaded from (Discord's
    #: CDN), in every environment; tests name their fake's 127.0.0.1:port here.
    discord_attachment_hosts: str = "cdn.discordapp.com,media.discordapp.net"

    _discord_blank = field_validator("discord_token", mode="before")(empty_is_none)

    @field_validator("discord_public_key")
    @classmethod
    def _ed25519_hex(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                key = bytes.fromhex(value)
            except ValueError:
                key = b""
            if len(key) != 32:
                raise ValueError("must be the application's public key: 64 hexadecimal characters")
        return value

    @field_validator("discord_client_id", "discord_guild_id", "discord_gom_role_id")
    @classmethod
    def _snowflake(cls, value: str) -> str:
        value = value.strip()
        if value and not (value.isdigit() and 15 <= len(value) <= 21):
            raise ValueError("must be a Discord id (a number of 15 to 21 digits)")
        return value

    @model_validator(mode="after")
    def _discord_credentials(self) -> DiscordSettings:
        require_when_enabled(
            self, "discord", ("discord_token", "discord_public_key", "discord_client_id")
        )
        return self
