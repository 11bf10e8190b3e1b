"""Settings: built once from the environment (and `.env`) at start-up, validated, secrets hidden."""

from __future__ import annotations

from contextlib import suppress
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gomflow_messaging.channels import registry
from gomflow_messaging.channels.base import collecting_credential_problems, http_url


class ConfigError(Exception):
    """The configuration cannot run: one line naming the variable and what is wrong."""


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


#: The SERVICE_SECRET of .env.example: known to everyone who has read the repository.
PLACEHOLDER_SECRET = "change-me-to-at-least-32-random-characters"


class CoreSettings(BaseSettings):
    """The core's variables; each channel's own are in its package (`channels.registry`)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    environment: Environment = Environment.development
    port: int = Field(3000, ge=1, le=65535)
    #: Unset: every interface in production (the Docker image sets it too), else only this
    #: machine (127.0.0.1), so `make dev` is not reachable from the network.
    host: str = ""
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
    #: The Smart Agent's own credential (Bearer). Required in production when the agent is
    #: used; unset elsewhere, requests carry no credential: SERVICE_SECRET is never sent.
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
    #: How long a worker's drainer waits for its channel's doorbell before it looks anyway.
    #: At most 4 s: in `serve` the wait (a BLPOP) runs on the web's Redis client, whose reads
    #: time out after 5 s, and Redis answers a timed-out BLPOP up to a tenth of a second late.
    dispatch_poll_seconds: float = Field(1.0, gt=0, le=4)
    sweep_interval_seconds: float = Field(15.0, gt=0)
    sweep_grace_seconds: float = Field(30.0, ge=0)
    shutdown_grace_seconds: int = Field(20, ge=0)
    #: While Redis or Postgres is unreachable: one warning when it goes, then one per interval.
    outage_warning_seconds: float = Field(30.0, gt=0)

    # Bounded input (api/limits.py): bodies over these are refused (413) before they are read.
    #: Any route not named below (/api/notify, ...).
    max_request_body_bytes: int = Field(1_048_576, ge=1024)
    #: A body still arriving after this is cut with 408 (slow clients hold no connection).
    body_read_timeout_seconds: float = Field(10.0, gt=0, le=300)
    #: More requests in flight at once than this are answered 503 (with h11, connections
    #: still waiting for their request head do not count: see the timeout below).
    http_limit_concurrency: int = Field(1000, ge=10)
    #: h11: a connection that has not sent a whole request head this long after it opened
    #: (or after its previous response) is closed (api/connections.py).
    http_header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    #: uvicorn: an idle keep-alive connection is closed after this.
    http_keep_alive_seconds: int = Field(5, ge=1, le=300)
    #: uvicorn's HTTP parser: h11 bounds the request line and headers (below); httptools is
    #: faster but keeps headers of any size, so use it only behind a proxy that bounds them.
    http_parser: Literal["h11", "httptools"] = "h11"
    #: h11: request line and headers larger than this are refused (400) before the app runs,
    #: however they arrive (in pieces or in one read).
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
    #: Items one buyer may hold in an order whose GOM set no cap of their own.
    default_max_per_buyer: int = Field(10, ge=1, le=100_000)
    #: An unpaid hold expires this long after the order's deadline (its payment deadline)...
    hold_grace_hours: int = Field(24, ge=0, le=24 * 30)
    #: ...and never sooner than this after its last reminder ("expires at ..."), which goes
    #: out this long before that payment deadline.
    hold_notice_hours: int = Field(12, ge=1, le=24 * 7)

    # Chat bots, on every channel
    enable_inline_payments: bool = True
    enable_smart_payment_detection: bool = True
    auto_delete_processed_images: bool = True
    max_file_size: int = Field(20_971_520, gt=0)
    rate_limit_window_ms: int = Field(60_000, gt=0)
    rate_limit_max_messages: int = Field(30, gt=0)
    rate_limit_max_uploads: int = Field(5, gt=0)
    #: Link-code tries per person (a deep link, /link CODE or LINK CODE, as the chat has it):
    #: far tighter than messages, so guessing a code costs more than the code space allows.
    link_code_max_attempts: int = Field(5, gt=0)
    link_code_window_seconds: int = Field(900, gt=0)
    #: Autocomplete lookups (one per keystroke) per person per RATE_LIMIT_WINDOW_MS;
    #: past it the suggestions are empty and nothing is searched.
    rate_limit_max_autocomplete: int = Field(60, gt=0)
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
    #: Receipt images (decided or not) are deleted this many days after they arrived, by the
    #: proof-images job; the proof's row (hash, decision, audit) stays.
    proof_image_retention_days: int = Field(30, ge=1, le=3650)
    #: Receipts of one submission waiting for a decision at once; past it the buyer is told
    #: to wait for the GOM.
    proof_max_pending_per_submission: int = Field(3, ge=1, le=100)
    #: Receipts one person may have stored in an hour, whatever they pay.
    proof_max_per_person_hour: int = Field(10, ge=1, le=1000)
    #: Receipts one process holds in memory at once (up to MAX_FILE_SIZE each), for intake
    #: and again for the Smart Agent's jobs; more wait their turn.
    proof_max_in_memory: int = Field(1, ge=1, le=64)

    @field_validator("service_secret")
    @classmethod
    def _secret_length(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    # A secret set empty (as .env.example has them) means "not set", not an empty secret.
    @field_validator(
        "service_secret_previous",
        "smart_agent_api_key",
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

    _public_base_url = field_validator("public_base_url")(http_url)

    @model_validator(mode="after")
    def _smart_agent_url(self) -> CoreSettings:
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
        if (
            self.smart_agent_enabled
            and self.environment is Environment.production
            and self.smart_agent_api_key is None
        ):
            # Receipts go out only with the agent's own key: never with SERVICE_SECRET,
            # which opens this service's API, and never with no credential at all.
            raise ValueError(
                "SMART_AGENT_API_KEY must be set in production when SMART_AGENT_SERVICE_URL "
                "is (the Smart Agent's own key; SERVICE_SECRET is never sent to it)"
            )
        return self

    @model_validator(mode="after")
    def _production_secret(self) -> CoreSettings:
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
        for plugin in registry.plugins():
            if plugin.warnings is not None:
                found += plugin.warnings(self)  # type: ignore[arg-type]
        reaching = [p for p in registry.plugins() if not p.local]
        if not [p for p in reaching if p.name in self.enabled_channels]:
            flags = ", ".join(f"ENABLE_{p.name.upper()}" for p in reaching)
            found.append(
                f"no channel is enabled ({flags} are all false): nothing can reach a buyer"
            )
        return found

    @model_validator(mode="after")
    def _host(self) -> CoreSettings:
        if not self.host:
            self.host = "0.0.0.0" if self.environment is Environment.production else "127.0.0.1"
        return self

    @model_validator(mode="after")
    def _log_format(self) -> CoreSettings:
        if self.log_format is None:
            self.log_format = "json" if self.environment is Environment.production else "text"
        return self

    @property
    def smart_agent_enabled(self) -> bool:
        return bool(self.enable_smart_payment_detection and self.smart_agent_service_url)

    @property
    def enabled_channels(self) -> list[str]:
        return [name for name in registry.names() if getattr(self, f"enable_{name}")]

    def service_secrets(self) -> list[bytes]:
        secrets = [self.service_secret.get_secret_value().encode()]
        if self.service_secret_previous is not None:
            secrets.append(self.service_secret_previous.get_secret_value().encode())
        return secrets


if TYPE_CHECKING:

    class Settings(CoreSettings):
        """Typed as the core; a channel's variables (from its package) read as ``Any``."""

        def __getattr__(self, name: str) -> Any: ...

else:

    class Settings(CoreSettings, *registry.settings_models()):
        """Every variable of the seed deployment guide keeps its name and meaning (see README):
        the core's, then each registered channel's (its package's ``settings`` model)."""


#: Every registered channel, in the default delivery order.
CHANNEL_NAMES = registry.names()


def _describe(error: ValidationError, more: list[str]) -> tuple[str, bool]:
    """One line for every problem, the variables not set named together first, then
    ``more`` (what the validation did not reach); and whether a variable is missing."""
    missing: list[str] = []
    parts = []
    for item in error.errors():
        loc = item.get("loc") or ()
        if item.get("type") == "missing" and loc:
            missing.append(str(loc[0]).upper())
            continue
        message = str(item.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        if loc:
            parts.append(f"{str(loc[0]).upper()}: {message}")
        else:
            parts.append(message)
    parts += [problem for problem in more if problem not in parts]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        parts.insert(0, f"{', '.join(missing)} {verb} not set")
    return "; ".join(parts), bool(missing)


#: Stand-ins for required variables during the second look only (never used to run).
_STAND_INS: dict[str, Any] = {"service_secret": "x" * 32}


def _credential_problems(error: ValidationError, overrides: dict[str, Any]) -> list[str]:
    """Every enabled channel's missing credentials, which the first validation may not have
    reached (it stops at a missing variable, or at the first channel that lacks any)."""
    missing = {str(item["loc"][0]) for item in error.errors() if item.get("type") == "missing"}
    stand_ins: dict[str, Any] = {k: v for k, v in _STAND_INS.items() if k in missing}
    with collecting_credential_problems() as found, suppress(ValidationError):
        Settings(**stand_ins, **overrides)
    return found


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment; raise ConfigError with one readable line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        line, missing = _describe(exc, _credential_problems(exc, overrides))
        if missing:
            env = Path.cwd() / ".env"
            where = (
                f"the environment and {env}"
                if env.exists()
                else f"the environment, or a .env file in the working directory ({env} does "
                "not exist; `make env` writes one from .env.example)"
            )
            line += f". Settings are read from {where}"
        raise ConfigError(f"invalid configuration: {line}") from None
