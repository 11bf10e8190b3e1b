"""What every route shares: bearer auth, JSON bodies, the error shape."""

from __future__ import annotations

import hmac
import json
import re
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse

from gomflow_messaging.errors import ApiError, ValidationFailed
from gomflow_messaging.workflows.notify import pydantic_fields

if TYPE_CHECKING:
    from starlette.requests import Request

    from gomflow_messaging.bootstrap import Services
    from gomflow_messaging.db import Pool

#: Deeper JSON is refused before parsing: the parser and every walk over the result recurse,
#: and a few thousand levels are a RecursionError (a 500). No peer nests anywhere near this.
MAX_JSON_DEPTH = 64

Model = TypeVar("Model", bound=BaseModel)

_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def first_time(pool: Pool, platform: str, update_id: str) -> bool:
    """Record an inbound update's id; False when it came before (a retry or a replay).

    Telegram's ``update_id``, Twilio's ``MessageSid``, Discord's interaction ``id``: the
    table's primary key makes it once even when two replicas get it at the same moment.
    """
    inserted = await pool.fetchval(
        "INSERT INTO inbound_updates (platform, update_id) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        platform,
        update_id,
    )
    return inserted is not None


def require_service_secret(request: Request) -> None:
    """Bearer SERVICE_SECRET (or the previous one while rotating), compared in constant time."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    supplied = token.strip().encode()
    valid = False
    for secret in services(request).settings.service_secrets():
        # Every secret is compared, so the timing does not tell which one matched.
        valid |= hmac.compare_digest(supplied, secret)
    if scheme.lower() != "bearer" or not supplied or not valid:
        raise ApiError(
            401,
            "unauthorized",
            "Missing or wrong bearer token.",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def json_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    if "json" not in content_type:
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    # The size is bounded before this by api/limits.py, which counts the body as it arrives.
    raw = await request.body()
    try:
        body = parse_json(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(
            422, "validation_error", "The body is not valid JSON.", {"body": str(exc)[:200]}
        ) from None
    if b"\\u0000" in raw:
        path = _nul_path(body, "")
        if path is not None:
            # Postgres stores no NUL character in text or jsonb: refuse it here, by name.
            raise ApiError(
                422,
                "validation_error",
                "The body contains a NUL character (\\u0000), which cannot be stored.",
                {path or "body": "must not contain \\u0000"},
            )
    return body


async def model_body(request: Request, model: type[Model]) -> Model:
    """The JSON body validated by ``model``; a 422 naming each offending field otherwise
    (``{"fields": {"form.values": "..."}}``), the same way for every route."""
    try:
        return model.model_validate(await json_body(request))
    except ValidationError as exc:
        raise ValidationFailed(pydantic_fields(exc)) from None


def parse_json(raw: bytes) -> Any:
    """``json.loads``, but JSON nested deeper than MAX_JSON_DEPTH is a 422 before parsing.

    Invalid JSON still raises ValueError, for the caller to answer in its own way.
    """
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise ApiError(
            422,
            "validation_error",
            f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels.",
            {"body": f"must not nest deeper than {MAX_JSON_DEPTH} levels"},
        )
    return json.loads(raw)


def json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest (brackets inside strings do not count).

    Stops counting past MAX_JSON_DEPTH; for invalid JSON the figure is only an estimate,
    which is enough: the parser refuses it anyway.
    """
    openers = raw.count(b"[") + raw.count(b"{")
    if openers <= MAX_JSON_DEPTH:
        return openers  # nothing can nest deeper than its number of openers: the usual case
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    break
        else:
            depth -= 1
    return deepest


def _nul_path(value: Any, path: str) -> str | None:
    """Where the first NUL character is (``data.text``, ``recipients.0.address``), if any."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return here.replace("\x00", "\\u0000")
            found = _nul_path(item, here)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_path(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)
