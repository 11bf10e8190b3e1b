"""The Smart Agent: a receipt goes out as multipart, its answer is trusted for one submission only.

``POST SMART_AGENT_SERVICE_URL + SMART_AGENT_ROUTE`` with ``image``, ``platform``
(``whatsapp``, ``telegram``, ``discord`` or ``web``), ``submission_id``, ``order_id`` and
``currency``, and ``Authorization: Bearer SMART_AGENT_API_KEY``. Without a key (allowed
outside production only) no Authorization header is sent: SERVICE_SECRET, which opens this
service's own API, never leaves the service. The agent answers ``{"success", "data":
{"extraction": {"confidence" (0-1), "payments_found", "requires_review"}, "matches":
[{"submission_id", "match_score" (0-100), "confidence" (0-1), "auto_approve", "reasons",
...}], "review_required"}}``. Its matches may name other buyers: `judge` keeps only what
concerns the submission we asked about, so nothing about anyone else is stored or shown.

The agent validates its form with zod, and ``z.number()`` does not coerce the strings a
multipart form carries: as written it refuses (400) any request with ``expected_amount``.
So that field is never sent (the agent looks the amount up by ``submission_id``), and one
request is made per receipt. A 400 is the agent refusing THIS request, not the agent being
away: it leaves as `AgentRefused` with the agent's reason, without a second call. Timeouts
and 5xx are retried (tenacity); they leave as `AgentUnavailable`. Either way the proof then
goes to the GOM.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit
from uuid import UUID

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from gomflow_messaging.settings import Environment

if TYPE_CHECKING:
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

MAX_REASONS = 5


class AgentUnavailable(Exception):
    """No usable answer: ``code`` says why (timeout, http_500, network, bad_response ...)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


class AgentRefused(AgentUnavailable):
    """The agent answered 400: it refused this request (``reasons``, in its own words)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("refused", "; ".join(reasons))
        self.reasons = reasons


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Retry(Exception):
    """A 5xx or a timeout: worth another attempt."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Receipt:
    """What we send: the file and the one submission it should pay."""

    #: Read from its start on each attempt, in chunks (a file, not the bytes in memory).
    content: BinaryIO
    filename: str
    mime: str
    platform: str
    submission_id: UUID
    order_id: UUID
    currency: str


#: The platforms the agent's schema accepts; a receipt from elsewhere (the sandbox, the
#: web) is sent as ``web``, since anything else is refused.
AGENT_PLATFORMS = ("whatsapp", "telegram", "discord", "web")


#: What the agent's upload filter takes by default (its ALLOWED_IMAGE_TYPES); it answers
#: anything else (a PDF, HEIC) with a 500, so such receipts go straight to the GOM.
AGENT_TYPES = ("image/jpeg", "image/png", "image/webp")


#: The currencies the agent's schema accepts; another is left out rather than refused.
AGENT_CURRENCIES = ("PHP", "MYR")


def agent_platform(channel: str) -> str:
    return channel if channel in AGENT_PLATFORMS else "web"


def auth_headers(settings: Settings) -> dict[str, str]:
    """Bearer SMART_AGENT_API_KEY, or nothing: never SERVICE_SECRET (settings refuse a
    production agent without a key)."""
    key = settings.smart_agent_api_key
    return {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}


class SmartAgent:
    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.smart_agent_service_url.rstrip("/")
        self.url = self.base_url + settings.smart_agent_route
        self._headers = auth_headers(settings)
        self._timeout = settings.smart_agent_timeout_seconds
        self._attempts = settings.smart_agent_attempts
        self._production = settings.environment is Environment.production

    async def process(self, receipt: Receipt) -> dict[str, Any]:
        """The agent's answer; raises AgentRefused or AgentUnavailable for anything else."""
        if self._production and urlsplit(self.url).scheme != "https":
            raise AgentUnavailable("insecure", "the Smart Agent must be reached over https")
        # No expected_amount: the agent's schema refuses it in every multipart request.
        fields = {
            "platform": agent_platform(receipt.platform),
            "submission_id": str(receipt.submission_id),
            "order_id": str(receipt.order_id),
        }
        if receipt.currency in AGENT_CURRENCIES:
            fields["currency"] = receipt.currency
        try:
            return await self._process(fields, receipt)
        except _Refused as refused:
            raise AgentRefused([refused.reason]) from None

    async def health(self) -> str:
        """``GET /api/health``: the agent's status word; raises AgentUnavailable if not healthy."""
        try:
            async with httpx.AsyncClient(
                timeout=min(self._timeout, 5.0), follow_redirects=False, trust_env=False
            ) as client:
                response = await client.get(self.base_url + "/api/health")
        except httpx.HTTPError as exc:
            raise AgentUnavailable(f"network: {type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        status = body.get("status") if isinstance(body, dict) else None
        if response.status_code != 200 or status != "healthy":
            code = f"http_{response.status_code}"
            raise AgentUnavailable(code, f"{code}, status {status or 'not given'}")
        return "healthy"

    async def _process(self, fields: dict[str, str], receipt: Receipt) -> dict[str, Any]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            retry=retry_if_exception_type(_Retry),
            reraise=True,
        )
        try:
            async with httpx.AsyncClient(
                timeout=self._timeout, follow_redirects=False, trust_env=False
            ) as client:
                async for attempt in retrying:
                    with attempt:
                        response = await self._post(client, fields, receipt)
        except _Retry as exc:
            raise AgentUnavailable(exc.code) from None
        return _answer(response)

    async def _post(
        self, client: httpx.AsyncClient, fields: dict[str, str], receipt: Receipt
    ) -> httpx.Response:
        receipt.content.seek(0)
        try:
            response = await client.post(
                self.url,
                headers=self._headers,
                data=fields,
                files={"image": (receipt.filename, receipt.content, receipt.mime)},
            )
        except httpx.TimeoutException:
            raise _Retry("timeout") from None
        except httpx.HTTPError as exc:
            raise _Retry(f"network: {type(exc).__name__}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise _Retry(f"http_{response.status_code}")
        return response


def _answer(response: httpx.Response) -> dict[str, Any]:
    if response.status_code == 400:
        raise _Refused(_refusal(response))
    if response.status_code >= 400:
        raise AgentUnavailable(f"http_{response.status_code}")
    try:
        body = response.json()
    except ValueError:
        raise AgentUnavailable("bad_response") from None
    if not isinstance(body, dict) or body.get("success") is False:
        raise AgentUnavailable("refused")
    return body


def _refusal(response: httpx.Response) -> str:
    """The agent's own words for a 400 (about our request, never about a buyer), kept short."""
    try:
        body = response.json()
    except ValueError:
        return "http_400"
    if not isinstance(body, dict):
        return "http_400"
    words = [str(body[k])[:200] for k in ("error", "message") if body.get(k)]
    return ": ".join(words) or "http_400"


def _number(value: Any, top: float) -> float:
    """A number in [0, top]; anything else (a string, a bool, out of range) counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if 0.0 <= number <= top else 0.0


def _fraction(value: Any) -> float:
    """A confidence: 0-1 on the agent's scale."""
    return _number(value, 1.0)


def _score(value: Any) -> float:
    """A match score: 0-100 on the agent's scale."""
    return _number(value, 100.0)


def _amount(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return str(number) if number.is_finite() and number >= 0 else None


@dataclass(frozen=True)
class Verdict:
    auto_approve: bool
    #: What we keep (payment_proofs.agent_result) and show the GOM: this submission only.
    summary: dict[str, Any]


def judge(answer: dict[str, Any], submission_id: UUID, threshold: float) -> Verdict:
    """Approve on the agent's word only for a confident match of THIS submission.

    ``threshold`` (SMART_AGENT_AUTO_APPROVE_THRESHOLD) applies on each number's own scale:
    the match score (0-100) at least ``threshold x 100``, the reading's confidence (0-1) at
    least ``threshold``, and the agent itself must say auto_approve. Another submission the
    agent would approve as well makes the payment ambiguous: the GOM decides.
    """
    data = answer.get("data") if isinstance(answer.get("data"), dict) else answer
    assert isinstance(data, dict)
    extraction = data.get("extraction") if isinstance(data.get("extraction"), dict) else {}
    assert isinstance(extraction, dict)
    confidence = _fraction(extraction.get("confidence"))
    requires_review = bool(extraction.get("requires_review")) or bool(data.get("review_required"))
    raw = data.get("matches")
    matches = [m for m in raw if isinstance(m, dict)] if isinstance(raw, list) else []
    ours = next((m for m in matches if str(m.get("submission_id")) == str(submission_id)), None)
    match: dict[str, Any] | None = None
    if ours is not None:
        given = ours.get("reasons")
        reasons: list[Any] = given if isinstance(given, list) else []
        match = {
            "match_score": _score(ours.get("match_score")),
            "confidence": _fraction(ours.get("confidence")),
            "auto_approve": ours.get("auto_approve") is True,
            "reasons": [str(r)[:200] for r in reasons[:MAX_REASONS]],
        }
    summary: dict[str, Any] = {
        "status": "answered",
        "confidence": confidence,
        "requires_review": requires_review,
        "payments_found": extraction.get("payments_found")
        if isinstance(extraction.get("payments_found"), int)
        else None,
        "match": match,
        # How many candidates were other submissions: a count, never who.
        "other_matches": len(matches) - (1 if ours is not None else 0),
    }
    payments = extraction.get("payments")
    first = payments[0] if isinstance(payments, list) and payments else extraction
    if isinstance(first, dict) and _amount(first.get("amount")) is not None:
        summary["amount_read"] = _amount(first.get("amount"))
        if first.get("currency") in AGENT_CURRENCIES:
            summary["currency_read"] = first["currency"]
    rivals = [m for m in matches if m is not ours and m.get("auto_approve") is True]
    auto = (
        match is not None
        and match["auto_approve"]
        and match["match_score"] >= threshold * 100
        and confidence >= threshold
        and not requires_review
        and not rivals
    )
    return Verdict(auto_approve=auto, summary=summary)
