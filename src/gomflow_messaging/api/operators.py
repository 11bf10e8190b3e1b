"""How an operator's request proves it holds the service secret, and that a browser's change
comes from one of our own pages: for `/saq` and `/metrics` (api/monitoring.py) and the web
console (console/), one place for both."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Literal
from urllib.parse import urlsplit


def authorized(header: str, secrets: list[bytes]) -> Literal["bearer", "basic", ""]:
    """Bearer <secret>, or Basic with the secret as password (any user name): which one."""
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        supplied = credentials.encode()
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return ""
        supplied = decoded.partition(b":")[2]
    else:
        return ""
    valid = False
    for secret in secrets:
        valid |= hmac.compare_digest(supplied, secret)
    if not (supplied and valid):
        return ""
    return "bearer" if scheme.lower() == "bearer" else "basic"


def same_origin(headers: dict[bytes, bytes]) -> bool:
    """The request comes from a page of this service, not from another site's form or script.

    A browser replays cached Basic credentials (and sends cookies) on requests to us that
    another site starts, a cross-site form post included; it also says where the request
    comes from (Sec-Fetch-Site, else Origin), which a page on another site cannot forge.
    """
    site = headers.get(b"sec-fetch-site")
    if site is not None:
        return site == b"same-origin"
    origin = headers.get(b"origin")
    if origin is None:
        return False
    return urlsplit(origin.decode("latin-1")).netloc.encode("latin-1") == headers.get(b"host")
