"""Signed, short-lived URLs of a receipt's image: for chat platforms and the GOM to fetch.

The signature is an HMAC of SERVICE_SECRET (any of the accepted ones while rotating) over
the proof id and the expiry; `api/proofs.py` serves the image only with a valid one.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uuid import UUID

    from gomflow_messaging.settings import Settings


def _signature(secret: bytes, proof_id: UUID, expires: int) -> str:
    # A purpose prefix: this HMAC of SERVICE_SECRET is good for nothing else.
    message = f"proof-image:{proof_id}:{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def image_url(settings: Settings, proof_id: UUID, now: float | None = None) -> str:
    """Where a chat platform (or the GOM) fetches this receipt, for a short while."""
    expires = int(now if now is not None else time.time()) + settings.proof_image_url_ttl_seconds
    signature = _signature(settings.service_secrets()[0], proof_id, expires)
    return f"{settings.public_base_url}/api/proofs/{proof_id}/image?exp={expires}&sig={signature}"


def signature_valid(
    settings: Settings, proof_id: UUID, expires: int, signature: str, now: float
) -> bool:
    if expires < now or expires > now + settings.proof_image_url_ttl_seconds + 60:
        return False
    valid = False
    for secret in settings.service_secrets():
        valid |= hmac.compare_digest(_signature(secret, proof_id, expires), signature)
    return valid
