"""A fake Smart Agent on loopback: ``POST /api/process`` reads a receipt as the real one would.

It takes the multipart form the real agent takes (``image``, ``platform``,
``submission_id``, ``order_id``, ``expected_amount``, ``currency``; Bearer SERVICE_SECRET)
and answers in its shape: an extraction and candidate matches. ``mode`` picks the answer:

- ``approve``: a confident auto-approvable match for the submission asked about;
- ``low_confidence``: a match for it, but an unsure reading;
- ``other_submission``: a confident auto-approvable match for ANOTHER buyer's submission
  (with that buyer's name and reference, as the original agent sent them);
- ``error``: 500; ``hang``: no answer until the fake closes.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import BodyPartReader, web

Mode = Literal["approve", "low_confidence", "other_submission", "error", "hang"]
OTHER_BUYER = "Someone Else Entirely"
OTHER_REFERENCE = "PH-OTHERBUY"


@dataclass
class Received:
    fields: dict[str, str]
    image: bytes
    filename: str
    content_type: str
    authorization: str


@dataclass
class FakeSmartAgent:
    secret: str
    mode: Mode = "approve"
    route: str = "/api/process"
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    async def start(self) -> FakeSmartAgent:
        app = web.Application(client_max_size=30 * 1024 * 1024)
        app.router.add_post(self.route, self._process)
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
        self.requests.append(Received(fields, image, filename, content_type, authorization))
        if authorization != f"Bearer {self.secret}":
            return web.json_response({"success": False, "error": "Unauthorized"}, status=401)
        if not image:
            return web.json_response(
                {"success": False, "error": "No image file provided"}, status=400
            )
        if self.mode == "error":
            return web.json_response({"success": False, "error": "Processing failed"}, status=500)
        if self.mode == "hang":
            await self._closing.wait()
            return web.json_response({"success": False}, status=504)
        return web.json_response(self._answer(fields))

    def _answer(self, fields: dict[str, str]) -> dict[str, Any]:
        submission_id = fields.get("submission_id", "")
        amount = fields.get("expected_amount", "0")
        confident = self.mode != "low_confidence"
        if self.mode == "other_submission":
            match = {
                "submission_id": str(uuid.uuid4()),
                "buyer_name": OTHER_BUYER,
                "amount": float(amount),
                "currency": fields.get("currency"),
                "payment_reference": OTHER_REFERENCE,
                "match_score": 0.97,
                "confidence": 0.96,
                "auto_approve": True,
                "reasons": ["amount matches", "name matches"],
            }
        else:
            match = {
                "submission_id": submission_id,
                "buyer_name": "As Typed On The Receipt",
                "amount": float(amount),
                "currency": fields.get("currency"),
                "payment_reference": "PH-WHATEVER",
                "match_score": 0.95 if confident else 0.55,
                "confidence": 0.93 if confident else 0.4,
                "auto_approve": confident,
                "reasons": ["amount matches expected"],
            }
        return {
            "success": True,
            "data": {
                "job_id": f"job_{uuid.uuid4()}",
                "extraction": {
                    "id": str(uuid.uuid4()),
                    "confidence": 0.92 if confident else 0.41,
                    "payments_found": 1,
                    "requires_review": not confident,
                    "payments": [{"amount": float(amount), "currency": fields.get("currency")}],
                },
                "matches": [match],
                "best_match": {
                    "submission_id": match["submission_id"],
                    "confidence": match["confidence"],
                    "auto_approved": match["auto_approve"],
                },
                "review_required": not confident,
            },
            "message": "Payment automatically approved" if confident else "review required",
        }
