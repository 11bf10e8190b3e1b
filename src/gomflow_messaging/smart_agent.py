"""The Smart Agent: a receipt goes out as multipart, its answer is trusted for one submission only.

``POST SMART_AGENT_SERVICE_URL + SMART_AGENT_ROUTE`` (Bearer SERVICE_SECRET) with ``image``,
``platform``, ``submission_id``, ``order_id``, ``expected_amount`` and ``currency``. The
agent answers ``{"success", "data": {"extraction": {"confidence", "payments_found",
"requires_review"}, "matches": [{"submission_id", "match_score", "confidence",
"auto_approve", "reasons", ...}], "review_required"}}``. Its matches may name other
buyers: `judge` keeps only what concerns the submission we asked about, so nothing about
anyone else is stored or shown. Timeouts and 5xx are retried (tenacity); every failure
leaves as `AgentUnavailable`, and the proof then goes to the GOM.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
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


class _Retry(Exception):
    """A 5xx or a timeout: worth another attempt."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Receipt:
    """What we send: the file and the one submission it should pay."""

    content: bytes
    filename: str
    mime: str
    platform: str
    submission_id: UUID
    order_id: UUID
    expected_amount: Decimal
    currency: str


class SmartAgent:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.smart_agent_service_url.rstrip("/") + settings.smart_agent_route
        self._secret = settings.service_secret.get_secret_value()
        self._timeout = settings.smart_agent_timeout_seconds
        self._attempts = settings.smart_agent_attempts
        self._production = settings.environment is Environment.production

    async def process(self, receipt: Receipt) -> dict[str, Any]:
        """The agent's answer as JSON; raises AgentUnavailable for anything else."""
        if self._production and urlsplit(self.url).scheme != "https":
            raise AgentUnavailable("insecure", "the Smart Agent must be reached over https")
        fields = {
            "platform": receipt.platform,
            "submission_id": str(receipt.submission_id),
            "order_id": str(receipt.order_id),
            "expected_amount": str(receipt.expected_amount),
            "currency": receipt.currency,
        }
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
        try:
            response = await client.post(
                self.url,
                headers={"Authorization": f"Bearer {self._secret}"},
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
    if response.status_code >= 400:
        raise AgentUnavailable(f"http_{response.status_code}")
    try:
        body = response.json()
    except ValueError:
        raise AgentUnavailable("bad_response") from None
    if not isinstance(body, dict) or body.get("success") is False:
        raise AgentUnavailable("refused")
    return body


def _fraction(value: Any) -> float:
    """A score in [0, 1]; anything else counts as no confidence at all."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0.0
    try:
        number = float(value)
    except ValueError:
        return 0.0
    return number if 0.0 <= number <= 1.0 else 0.0


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
    """Approve on the agent's word only for a confident match of THIS submission."""
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
            "match_score": _fraction(ours.get("match_score")),
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
        if first.get("currency") in ("PHP", "MYR"):
            summary["currency_read"] = first["currency"]
    auto = (
        match is not None
        and match["auto_approve"]
        and match["match_score"] >= threshold
        and confidence >= threshold
        and not requires_review
    )
    return Verdict(auto_approve=auto, summary=summary)
