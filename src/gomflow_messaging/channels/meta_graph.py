"""Meta's Graph API, as Messenger and the WhatsApp Cloud API both speak it.

One client (httpx, the token as a Bearer header, never in a URL that could be logged), one
reading of Graph's error envelope ``{"error": {"message", "type", "code", "error_subcode",
"error_data", "fbtrace_id"}}`` (usually HTTP 400 whatever the cause: branch on ``code``),
one signature check (``X-Hub-Signature-256``: HMAC-SHA256 of the raw body with the app
secret, compared in constant time before anything is parsed) and one verify-token
handshake. Each channel keeps its own map from Graph codes to our errors: the same code
means different things on the two products.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
from redis.exceptions import RedisError

from gomflow_messaging.errors import ApiError, ChannelError, TransientError

if TYPE_CHECKING:
    from pydantic import SecretStr
    from starlette.datastructures import QueryParams

log = logging.getLogger(__name__)

#: Meta's own Graph API; tests point the *_API_BASE_URL settings at a fake on loopback.
GRAPH_API = "https://graph.facebook.com/v23.0"
SIGNATURE_HEADER = "x-hub-signature-256"


class GraphError(Exception):
    """The Graph API answered an error (its envelope read) or an HTTP error without one."""

    def __init__(
        self,
        status: int,
        code: int = 0,
        subcode: int = 0,
        message: str = "",
        retry_after: float | None = None,
        details: str = "",
    ) -> None:
        super().__init__(f"HTTP {status}, code {code}")
        self.status = status
        self.code = code
        self.subcode = subcode
        self.message = message
        self.retry_after = retry_after
        #: ``error_data.details``: Meta's explanation for a person (WhatsApp sends one).
        self.details = details

    def describe(self) -> str:
        """For the attempt record: the code and Meta's words, never a token."""
        text = f"Graph error {self.code or self.status}: {self.message}"
        if self.details and self.details not in self.message:
            text += f" ({self.details})"
        return text[:500]


def retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait: Retry-After when a proxy sends one, else Meta's usage header."""
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value) if value else None
    except ValueError:
        seconds = None
    if seconds is not None and seconds >= 0:
        return seconds
    # X-Business-Use-Case-Usage: {"<id>": [{"estimated_time_to_regain_access": minutes}]}
    try:
        usage = json.loads(response.headers.get("x-business-use-case-usage", "") or "{}")
        minutes = [
            float(entry.get("estimated_time_to_regain_access") or 0)
            for entries in usage.values()
            for entry in entries
        ]
    except (ValueError, AttributeError, TypeError):
        return None
    return max(minutes) * 60 if minutes and max(minutes) > 0 else None


def graph_error(response: httpx.Response) -> GraphError:
    """Read Graph's envelope from an error response."""
    try:
        body = response.json().get("error") or {}
    except (ValueError, AttributeError):
        body = {}
    if not isinstance(body, dict):
        body = {}

    def number(name: str) -> int:
        value = body.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    data = body.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    return GraphError(
        response.status_code,
        number("code"),
        number("error_subcode"),
        str(body.get("message") or "")[:300],
        retry_after(response),
        str(details or "")[:300],
    )


def transport_error(exc: BaseException, platform: str) -> ChannelError:
    """What is not Graph's answer: our own errors as they are, the network, Redis, Postgres."""
    if isinstance(exc, ChannelError):
        return exc
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return TransientError("no answer from Graph in time", code="timeout", platform=platform)
    if isinstance(exc, httpx.HTTPError):
        # The code already says "network"; the message says where (the CLI prints both).
        return TransientError(f"cannot reach {_host(exc)}", code="network", platform=platform)
    if isinstance(exc, RedisError | asyncpg.PostgresError | OSError):
        return TransientError(
            f"store unavailable: {type(exc).__name__}", code="unavailable", platform=platform
        )
    log.error("unexpected error from the %s adapter: %r", platform, exc)
    return TransientError(f"unexpected: {type(exc).__name__}", code="internal", platform=platform)


def _host(exc: httpx.HTTPError) -> str:
    try:
        return exc.request.url.host or "the Graph API"
    except RuntimeError:  # an error raised without its request
        return "the Graph API"


class GraphClient:
    """Graph calls with one token; failures raised as GraphError or httpx's own errors."""

    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None, "start() the channel first"
        return self._http

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def start(self) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self._timeout, follow_redirects=False, trust_env=False
            )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        response = await self.http.request(
            method, self.base_url + path, json=body, params=params, headers=self.bearer
        )
        if response.status_code >= 400:
            raise graph_error(response)
        answer = response.json()
        return answer if isinstance(answer, dict) else {"data": answer}


# -- webhooks ------------------------------------------------------------------------------


def objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list in Meta's envelope (``entry``, ``changes``, ``messaging``...);
    anything else, as a fuzzer or a forged-then-signed body can send, reads as none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def signature_ok(app_secret: bytes, raw: bytes, header: str) -> bool:
    """``sha256=<hex>`` of the raw body, compared in constant time."""
    expected = "sha256=" + hmac.new(app_secret, raw, hashlib.sha256).hexdigest()
    return secrets.compare_digest(header.strip().lower().encode(), expected.encode())


def verify_signature(raw: bytes, header: str, app_secret: SecretStr | None, what: str) -> None:
    """403 unless ``header`` signs ``raw`` with the app secret; ``what`` names it in the log."""
    if app_secret is None or not signature_ok(app_secret.get_secret_value().encode(), raw, header):
        # Every event failing here usually means the app secret is another app's.
        log.warning("refused a %s webhook with a bad signature", what)
        raise ApiError(403, "invalid_signature", "The X-Hub-Signature-256 does not match.")


def handshake(params: QueryParams, verify_token: SecretStr | None) -> str:
    """Meta subscribes a webhook once: the ``hub.challenge`` to echo if the token is ours."""
    supplied = params.get("hub.verify_token", "")
    if (
        params.get("hub.mode") != "subscribe"
        or verify_token is None
        or not secrets.compare_digest(supplied.encode(), verify_token.get_secret_value().encode())
    ):
        raise ApiError(403, "forbidden", "Wrong hub.mode or hub.verify_token.")
    return params.get("hub.challenge", "")
