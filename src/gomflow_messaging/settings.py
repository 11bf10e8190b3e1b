"""Settings: built once from the environment (and `.env`) at start-up, validated, secrets hidden."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """The configuration cannot run: one line naming the variable and what is wrong."""


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


CHANNEL_NAMES = ("sandbox", "telegram", "discord", "whatsapp")
#: The SERVICE_SECRET of .env.example: known to everyone who has read the repository.
PLACEHOLDER_SECRET = "change-me-to-at-least-32-random-characters"


class Settings(BaseSettings):
    """Every variable of the seed deployment guide keeps its name and meaning (see README)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    environment: Environment = Environment.development
    port: int = Field(3000, ge=1, le=65535)
    host: str = "0.0.0.0"
    log_level: str = "INFO"
    #: One JSON object per line (the default in production) or plain text.
    log_format: Literal["json", "text"] | None = None

    # Core
    database_url: str = "postgresql://postgres@127.0.0.1:5432/gomflow"
    redis_url: str = "redis://127.0.0.1:6379/0"
    service_secret: SecretStr
    service_secret_previous: SecretStr | None = None
    core_api_url: str = "https://gomflow-core.vercel.app"
    payment_service_url: str = ""
    smart_agent_service_url: str = ""
    #: The Smart Agent's own credential (Bearer); unset, SERVICE_SECRET is sent as the seed
    #: guide's deployments expect, though that secret also opens this service's own API.
    smart_agent_api_key: SecretStr | None = None
    public_base_url: str = "http://localhost:3000"

    # Queue and dispatcher
    db_pool_size: int = Field(10, ge=2, le=200)
    queue_name: str = "gomflow-messaging"
    worker_concurrency: int = Field(20, ge=1, le=1000)
    dispatch_lease_seconds: float = Field(60.0, gt=0)
    dispatch_max_attempts: int = Field(8, ge=1, le=100)
    dispatch_backoff_base_seconds: float = Field(2.0, ge=0)
    dispatch_backoff_max_seconds: float = Field(600.0, ge=0)
    sweep_interval_seconds: float = Field(15.0, gt=0)
    sweep_grace_seconds: float = Field(30.0, ge=0)
    shutdown_grace_seconds: int = Field(20, ge=0)
    #: While Redis or Postgres is unreachable: one warning when it goes, then one per interval.
    outage_warning_seconds: float = Field(30.0, gt=0)

    # Bounded input (api/limits.py): bodies over these are refused (413) before they are read.
    #: Any route not named below (/api/notify, ...).
    max_request_body_bytes: int = Field(1_048_576, ge=1024)
    #: Telegram updates are JSON of a few KiB (a message of 4,096 characters, its entities).
    max_telegram_update_bytes: int = Field(262_144, ge=1024)
    #: Discord interactions, resolved users and messages included, are tens of KiB.
    max_discord_interaction_bytes: int = Field(262_144, ge=1024)
    #: Twilio's form-encoded webhooks (a message of 1,600 characters and its fields).
    max_twilio_form_bytes: int = Field(65_536, ge=1024)
    #: A body still arriving after this is cut with 408 (slow clients hold no connection).
    body_read_timeout_seconds: float = Field(10.0, gt=0, le=300)
    #: uvicorn: more connections and requests at once than this are answered 503.
    http_limit_concurrency: int = Field(1000, ge=10)
    #: uvicorn: an idle keep-alive connection is closed after this.
    http_keep_alive_seconds: int = Field(5, ge=1, le=300)
    #: uvicorn's HTTP parser: h11 bounds the request line and headers (below); httptools is
    #: faster but keeps headers of any size, so use it only behind a proxy that bounds them.
    http_parser: Literal["h11", "httptools"] = "h11"
    #: h11: request line and headers larger than this are refused (400) before the app runs.
    http_max_header_bytes: int = Field(65_536, ge=4096, le=1_048_576)

    # Workflows
    #: Hours before the deadline at which unpaid buyers are reminded, e.g. "48,24,12,6,2".
    reminder_offsets_hours: str = "24"
    reminder_max_per_day: int = Field(2, ge=1, le=24)
    #: More new submissions than this in a minute are folded into one digest for the GOM.
    gom_alert_digest_threshold: int = Field(5, ge=1)
    #: Local hour (GOM's time zone) of the daily summary; weekly on summary_weekday (0=Mon).
    summary_hour: int = Field(20, ge=0, le=23)
    summary_weekday: int = Field(6, ge=0, le=6)

    # Channel flags
    enable_sandbox: bool | None = None  # default: on outside production
    enable_whatsapp: bool = False
    enable_telegram: bool = False
    enable_discord: bool = False
    sandbox_delay_ms: int = Field(0, ge=0, le=60_000)

    # WhatsApp (Twilio)
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr | None = None
    twilio_whatsapp_number: str = ""
    twilio_api_base_url: str = ""
    webhook_path: str = "/webhooks/whatsapp"
    #: Hosts a buyer's media may be fetched from after Twilio's API redirects (https only).
    twilio_media_hosts: str = (
        "api.twilio.com,mms.twiliocdn.com,media.twiliocdn.com,s3-external-1.amazonaws.com"
    )
    twilio_timeout_seconds: float = Field(15.0, gt=0, le=120)
    #: Twilio's per-sender WhatsApp throughput, shared by every worker.
    whatsapp_messages_per_second: float = Field(80.0, gt=0, le=1000)
    #: Wait after error 63018 (the daily cap on business-initiated conversations).
    whatsapp_daily_cap_retry_seconds: float = Field(3600.0, ge=0)

    # Telegram
    telegram_bot_token: SecretStr | None = None
    telegram_webhook_url: str = ""
    telegram_webhook_secret: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org"
    enable_inline_payments: bool = True
    enable_smart_payment_detection: bool = True
    auto_delete_processed_images: bool = True
    max_file_size: int = Field(20_971_520, gt=0)
    rate_limit_window_ms: int = Field(60_000, gt=0)
    rate_limit_max_messages: int = Field(30, gt=0)
    rate_limit_max_uploads: int = Field(5, gt=0)
    #: Link-code tries per person (Telegram /start CODE, Discord /link, WhatsApp LINK CODE):
    #: far tighter than messages, so guessing a code costs more than the code space allows.
    link_code_max_attempts: int = Field(5, gt=0)
    link_code_window_seconds: int = Field(900, gt=0)
    # Bot API request timeout; the adapter also keeps it under half the dispatcher's lease.
    telegram_request_timeout_seconds: float = Field(10.0, gt=0)
    # Telegram's send limits: per bot, per chat (with a short burst), per group chat.
    telegram_rate_per_second: float = Field(30.0, gt=0)
    telegram_chat_rate_per_second: float = Field(1.0, gt=0)
    telegram_group_rate_per_minute: float = Field(20.0, gt=0)
    telegram_chat_burst: int = Field(3, ge=1, le=30)
    telegram_health_cache_seconds: float = Field(30.0, ge=0)

    # Discord
    discord_token: SecretStr | None = None
    discord_client_id: str = ""
    discord_guild_id: str = ""
    discord_public_key: str = ""
    discord_api_base_url: str = "https://discord.com/api/v10"
    enable_slash_commands: bool = True
    enable_button_interactions: bool = True
    enable_modal_interactions: bool = True
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

    # Payment proofs and the Smart Agent (SMART_AGENT_SERVICE_URL, ENABLE_SMART_PAYMENT_...)
    #: The agent's route for a receipt; the deployment guide tests /api/process-payment.
    smart_agent_route: str = "/api/process"
    #: One request's limit; 5xx and timeouts are tried smart_agent_attempts times in all.
    smart_agent_timeout_seconds: float = Field(20.0, gt=0, le=120)
    smart_agent_attempts: int = Field(3, ge=1, le=10)
    #: An agent's match is approved on its own only at or above this score and confidence.
    smart_agent_auto_approve_threshold: float = Field(0.85, gt=0, le=1)
    #: How long a signed receipt image URL (for the GOM's chat) stays valid.
    proof_image_url_ttl_seconds: int = Field(900, ge=30, le=7 * 24 * 3600)

    @field_validator("service_secret")
    @classmethod
    def _secret_length(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    # `TELEGRAM_BOT_TOKEN=` (as .env.example has it) means "not set", not an empty secret.
    @field_validator(
        "service_secret_previous",
        "smart_agent_api_key",
        "twilio_auth_token",
        "telegram_bot_token",
        "telegram_webhook_secret",
        "discord_token",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("service_secret_previous")
    @classmethod
    def _previous_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("reminder_offsets_hours")
    @classmethod
    def _offsets(cls, value: str) -> str:
        try:
            hours = [int(part) for part in value.replace(" ", "").split(",") if part]
        except ValueError:
            raise ValueError("must be whole hours separated by commas, e.g. 48,24,12,6,2") from None
        if not hours or any(h <= 0 or h > 24 * 30 for h in hours):
            raise ValueError("must be between 1 and 720 hours, e.g. 48,24,12,6,2")
        return ",".join(str(h) for h in sorted(set(hours), reverse=True))

    @property
    def reminder_offsets(self) -> list[int]:
        """Largest first: 48, 24, 12, 6, 2."""
        return [int(h) for h in self.reminder_offsets_hours.split(",")]

    @field_validator("telegram_bot_token")
    @classmethod
    def _telegram_token(cls, value: SecretStr | None) -> SecretStr | None:
        token = value.get_secret_value() if value is not None else ""
        if token and not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", token):
            raise ValueError("must look like 123456:ABC-DEF... (the token from @BotFather)")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis:// URL")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")

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

    @field_validator("webhook_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @model_validator(mode="after")
    def _channel_credentials(self) -> Settings:
        if self.enable_sandbox is None:
            self.enable_sandbox = self.environment is not Environment.production
        required = {
            "whatsapp": ("twilio_account_sid", "twilio_auth_token", "twilio_whatsapp_number"),
            "telegram": ("telegram_bot_token", "telegram_webhook_secret"),
            "discord": ("discord_token", "discord_public_key", "discord_client_id"),
        }
        for channel, names in required.items():
            if not getattr(self, f"enable_{channel}"):
                continue
            for name in names:
                if not getattr(self, name):
                    raise ValueError(
                        f"{name.upper()} is required when ENABLE_{channel.upper()} is true"
                    )
        return self

    @model_validator(mode="after")
    def _whatsapp_public_url(self) -> Settings:
        # Twilio signs the URL it calls; behind Railway's proxy only PUBLIC_BASE_URL knows it.
        host = urlsplit(self.public_base_url).hostname or ""
        if (
            self.enable_whatsapp
            and self.environment is Environment.production
            and host in ("localhost", "127.0.0.1", "0.0.0.0")
        ):
            raise ValueError(
                "PUBLIC_BASE_URL must be the public URL Twilio calls when ENABLE_WHATSAPP is true"
            )
        return self

    @model_validator(mode="after")
    def _smart_agent_url(self) -> Settings:
        # Receipts carry names and account numbers: never in clear text over the internet.
        url = self.smart_agent_service_url
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("SMART_AGENT_SERVICE_URL must be an http(s):// URL")
        if (
            url
            and self.enable_smart_payment_detection
            and self.environment is Environment.production
            and urlsplit(url).scheme != "https"
        ):
            raise ValueError("SMART_AGENT_SERVICE_URL must be https:// in production")
        if not self.smart_agent_route.startswith("/"):
            raise ValueError("SMART_AGENT_ROUTE must start with /")
        return self

    @model_validator(mode="after")
    def _production_secret(self) -> Settings:
        if (
            self.environment is Environment.production
            and self.service_secret.get_secret_value() == PLACEHOLDER_SECRET
        ):
            raise ValueError(
                "SERVICE_SECRET is the placeholder of .env.example; in production set a random "
                "one (python3 -c 'import secrets; print(secrets.token_urlsafe(36))')"
            )
        return self

    def warnings(self) -> list[str]:
        """What runs but is probably a mistake: logged at start and shown by `doctor`."""
        if self.environment is not Environment.production:
            return []
        found = []
        if self.enable_sandbox:
            found.append(
                "ENABLE_SANDBOX is true in production: messages to sandbox addresses are only "
                "recorded, and /api/sandbox/* answers"
            )
        if not [name for name in self.enabled_channels if name != "sandbox"]:
            found.append(
                "no channel is enabled (ENABLE_WHATSAPP, ENABLE_TELEGRAM, ENABLE_DISCORD are all "
                "false): nothing can reach a buyer"
            )
        return found

    @model_validator(mode="after")
    def _log_format(self) -> Settings:
        if self.log_format is None:
            self.log_format = "json" if self.environment is Environment.production else "text"
        return self

    @property
    def smart_agent_enabled(self) -> bool:
        return bool(self.enable_smart_payment_detection and self.smart_agent_service_url)

    @property
    def enabled_channels(self) -> list[str]:
        return [name for name in CHANNEL_NAMES if getattr(self, f"enable_{name}")]

    def service_secrets(self) -> list[bytes]:
        secrets = [self.service_secret.get_secret_value().encode()]
        if self.service_secret_previous is not None:
            secrets.append(self.service_secret_previous.get_secret_value().encode())
        return secrets


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = item.get("loc") or ()
        message = str(item.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        if loc:
            parts.append(f"{str(loc[0]).upper()}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment; raise ConfigError with one readable line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_describe(exc)}") from None
