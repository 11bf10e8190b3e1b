"""GET /api/proofs/{id}/image: a receipt, for the GOM's chat, at a signed short-lived URL.

Telegram and Discord fetch a review card's picture themselves, so the URL cannot carry a
bearer token: it carries an expiry and an HMAC of SERVICE_SECRET instead
(`workflows.proofs.urls.image_url`). Once the proof is decided and the bytes are deleted, 410.
"""

from __future__ import annotations

import time
import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gomflow_messaging.api.common import services
from gomflow_messaging.errors import ApiError
from gomflow_messaging.workflows.proofs import urls


async def proof_image(request: Request) -> Response:
    svc = services(request)
    try:
        proof_id = uuid.UUID(request.path_params["proof_id"])
        expires = int(request.query_params.get("exp", ""))
    except ValueError:
        raise ApiError(404, "not_found", "No such receipt.") from None
    signature = request.query_params.get("sig", "")
    if not urls.signature_valid(svc.settings, proof_id, expires, signature, time.time()):
        raise ApiError(403, "invalid_signature", "This link is not valid or has expired.")
    row = await svc.pool.fetchrow(
        "SELECT content, mime FROM payment_proofs WHERE id = $1", proof_id
    )
    if row is None or row["content"] is None:
        raise ApiError(410, "gone", "This receipt is no longer kept.")
    return Response(
        bytes(row["content"]),
        media_type=row["mime"],
        headers={
            "Cache-Control": "private, max-age=60",
            "Content-Disposition": "inline",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


routes = [Route("/api/proofs/{proof_id}/image", proof_image, methods=["GET"])]
