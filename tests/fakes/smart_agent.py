"""A fake Smart Agent on loopback, modelled on the real one's source (see PEERS.md).

``POST /api/process`` takes the multipart form the real agent takes and validates it as its
zod schema does: ``platform`` one of whatsapp|telegram|discord|web, ``submission_id`` /
``order_id`` / ``user_id`` UUIDs, ``expected_amount`` a positive NUMBER (multipart fields are
strings and zod does not coerce them, so any ``expected_amount`` is refused), ``currency``
PHP|MYR, ``priority`` high|normal|low. A refusal is 400 ``{"success": false, "error":
"Invalid request data", "message": ...}``. The answer has the real shape: ``match_score`` on
0-100, confidences on 0-1, and ``matches`` that name OTHER buyers as well (name, reference,
amount), as the real matching engine returns every candidate above its suggest threshold.
``GET /api/health`` answers ``{"status": "healthy"}`` or 503 ``{"status": "unhealthy"}``.

``mode`` picks the answer:

- ``approve``: our submission at 95 points, auto-approved, and another buyer's at 62;
- ``low_confidence``: our submission at 55 points on an unsure reading (review required);
- ``other_submission``: ANOTHER buyer's submission at 95 points, auto-approved; not ours;
An image outside multer's allow-list (a PDF, HEIC) is a 500, as the real one answers.

- ``refuse``: a 400 to every request (the agent refusing even the bare form);
- ``error``: 500; ``hang``: no answer until the fake closes.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import BodyPartReader, web

Mode = Literal["approve", "low_confidence", "other_submission", "refuse", "error", "hang"]
OTHER_BUYER = "Someone Else Entirely"
OTHER_REFERENCE = "PH-OTHERBUY"
PLATFORMS = ("whatsapp", "telegram", "discord", "web")
# zod 3's uuid check.
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}\b-[0-9a-fA-F]{4}\b-[0-9a-fA-F]{4}\b-[0-9a-fA-F]{4}\b-[0-9a-fA-F]{12}$"
)
#: multer's allow-list (ALLOWED_IMAGE_TYPES); its fileFilter throws a plain Error for any
#: other type, which the agent's global handler answers with a 500.
ALLOWED_TYPES = ("image/jpeg", "image/png", "image/webp")


@dataclass
class Received:
    fields: dict[str, str]
    image: bytes
    filename: str
    content_type: str
    authorization: str
    status: int = 0


@dataclass
class FakeSmartAgent:
    #: The Bearer credential this deployment of the agent accepts; "" for an agent run
    #: without authentication (a developer's own), which takes any request.
    secret: str
    mode: Mode = "approve"
    healthy: bool = True
    route: str = "/api/process"
    #: What the agent finds in its database for the submission (``total_amount``).
    amount: float = 2500.0
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    async def start(self) -> FakeSmartAgent:
        app = web.Application(client_max_size=30 * 1024 * 1024)
        app.router.add_post(self.route, self._process)
        app.router.add_get("/api/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, request: web.Request) -> web.StreamResponse:
        if self.healthy:
            return web.json_response({"status": "healthy", "service": "gomflow-smart-agent"})
        return web.json_response(
            {"status": "unhealthy", "service": "gomflow-smart-agent", "issues": ["ocr not ready"]},
            status=503,
        )

    async def _process(self, request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization", "")
        fields: dict[str, str] = {}
        image = b""
        filename = content_type = ""
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "image":
                image = await part.read()
                filename = part.filename or ""
                content_type = part.headers.get("Content-Type", "")
            elif part.name:
                fields[part.name] = await part.text()
        received = Received(fields, image, filename, content_type, authorization)
        self.requests.append(received)
        response = await self._respond(received)
        received.status = response.status
        return response

    async def _respond(self, received: Received) -> web.Response:
        if self.secret and received.authorization != f"Bearer {self.secret}":
            return web.json_response(
                {
                    "success": False,
                    "error": "Unauthorized",
                    "message": "Valid service authentication required",
                },
                status=401,
            )
        if received.image and received.content_type not in ALLOWED_TYPES:
            return web.json_response(
                {"success": False, "error": "Internal server error"}, status=500
            )
        if not received.image:
            return web.json_response(
                {"success": False, "error": "No image file provided"}, status=400
            )
        problems = validate(received.fields)
        if self.mode == "refuse":
            problems = problems or ["Required"]
        if problems:
            return web.json_response(
                {
                    "success": False,
                    "error": "Invalid request data",
                    "message": ", ".join(problems),
                },
                status=400,
            )
        if self.mode == "error":
            return web.json_response({"success": False, "error": "Processing failed"}, status=500)
        if self.mode == "hang":
            await self._closing.wait()
            return web.json_response({"success": False}, status=504)
        return web.json_response(self._answer(received.fields))

    def _answer(self, fields: dict[str, str]) -> dict[str, Any]:
        confident = self.mode != "low_confidence"
        reading = 0.92 if confident else 0.41

        def match(submission_id: str, name: str, reference: str, score: float) -> dict[str, Any]:
            return {
                "submission_id": submission_id,
                "buyer_name": name,
                "amount": self.amount,
                "currency": fields.get("currency", "PHP"),
                "payment_reference": reference,
                "match_score": score,
                "confidence": round(score / 100 * reading, 4),
                "auto_approve": score >= 85 and reading >= 0.85,
                "reasons": ["Amount matches", "Payment method GCash"],
            }

        ours = fields.get("submission_id", "")
        if self.mode == "other_submission":
            matches = [match(str(uuid.uuid4()), OTHER_BUYER, OTHER_REFERENCE, 95)]
        elif self.mode == "low_confidence":
            matches = [match(ours, "As Typed On The Receipt", "PH-WHATEVER", 55)]
        else:
            matches = [
                match(ours, "As Typed On The Receipt", "PH-WHATEVER", 95),
                match(str(uuid.uuid4()), OTHER_BUYER, OTHER_REFERENCE, 62),
            ]
        best = max(matches, key=lambda m: m["match_score"])
        return {
            "success": True,
            "data": {
                "job_id": f"job_{uuid.uuid4()}",
                "extraction": {
                    "id": str(uuid.uuid4()),
                    "confidence": reading,
                    "payments_found": 1,
                    "requires_review": not confident,
                },
                "matches": matches,
                "best_match": {
                    "submission_id": best["submission_id"],
                    "confidence": best["confidence"],
                    "auto_approved": best["auto_approve"],
                },
                "review_required": not best["auto_approve"],
            },
            "message": "Payment automatically approved"
            if best["auto_approve"]
            else "Payment matches found - review required",
            "processingTime": 1234,
        }


def validate(fields: dict[str, str]) -> list[str]:
    """The agent's ProcessImageSchema over multipart fields (every value a string)."""
    problems = []
    platform = fields.get("platform")
    if platform is None:
        problems.append("Required")
    elif platform not in PLATFORMS:
        expected = " | ".join(f"'{p}'" for p in PLATFORMS)
        problems.append(f"Invalid enum value. Expected {expected}, received '{platform}'")
    for name in ("submission_id", "order_id", "user_id"):
        if name in fields and not _UUID.match(fields[name]):
            problems.append("Invalid uuid")
    if "expected_amount" in fields:
        problems.append("Expected number, received string")  # z.number() never coerces
    if "currency" in fields and fields["currency"] not in ("PHP", "MYR"):
        problems.append("Invalid enum value. Expected 'PHP' | 'MYR'")
    if "priority" in fields and fields["priority"] not in ("high", "normal", "low"):
        problems.append("Invalid enum value. Expected 'high' | 'normal' | 'low'")
    return problems
