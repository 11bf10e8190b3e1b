"""Bounded request bodies: too large (413) or too slow (408) is refused before it is buffered.

Every route reads its body through Starlette's ``request.stream()`` (``body()``, ``form()`` and
``json()`` included), which calls the ASGI ``receive`` this middleware wraps: a declared
``Content-Length`` over the route's limit is answered at once, without reading a byte; a body
without one (chunked) is counted as it arrives and refused the moment it passes the limit; a
body still arriving after ``BODY_READ_TIMEOUT_SECONDS`` is cut. Each refusal closes the
connection, so a client that keeps sending holds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gomflow_messaging.api.common import error_response
from gomflow_messaging.channels import registry
from gomflow_messaging.errors import ApiError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

#: After a refusal, input discarded before the close (so the client reads the answer).
LINGER_SECONDS = 1.0
LINGER_BYTES = 16 * 1024 * 1024
LINGER_IDLE_SECONDS = 0.2


class BodyRefused(ApiError):
    """The body broke its route's limit; the connection is closed after the answer."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(status_code, code, message, headers={"Connection": "close"})


@dataclass(frozen=True)
class BodyLimits:
    """Bytes allowed per path (the rest get ``default``) and seconds to receive a body in."""

    default: int
    read_timeout: float
    by_path: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimits:
        # Each channel bounds its own paths (its webhooks): see channels/registry.py.
        return cls(
            default=settings.max_request_body_bytes,
            read_timeout=settings.body_read_timeout_seconds,
            by_path=registry.body_limits(settings),
        )

    def limit_for(self, path: str) -> int:
        return self.by_path.get(path, self.default)


def _too_large(limit: int) -> BodyRefused:
    return BodyRefused(413, "too_large", f"The body is larger than {limit} bytes.")


def _body_framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length (None if absent or malformed) and whether a body comes."""
    length: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None  # the server (h11, httptools) refuses a malformed one itself
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return length, chunked or bool(length)


class BodyLimitMiddleware:
    """Wraps ``receive`` so that no route can buffer more than its limit, or wait forever."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.limit_for(scope["path"])
        declared, has_body = _body_framing(scope)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.read_timeout
        received = 0
        complete = not has_body
        started = False

        async def bounded_receive() -> Message:
            nonlocal received, complete
            if complete:
                # The body is in; what is left is waiting for a disconnect, which may be long.
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyRefused(
                    408,
                    "request_timeout",
                    f"The body did not arrive within {self.limits.read_timeout:g} seconds.",
                ) from None
            if message["type"] != "http.request":
                complete = True
                return message
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
            complete = not message.get("more_body", False)
            return message

        async def bounded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not complete:
                    # Answered before the body was read (refused, or unauthorised): the rest
                    # of it is not worth reading, so the connection ends with this answer.
                    headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            elif (
                message["type"] == "http.response.body"
                and not message.get("more_body", False)
                and not complete
            ):
                await send({**message, "more_body": True})
                await self._linger(receive)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        if declared is not None and declared > limit:
            await error_response(_too_large(limit))(scope, receive, bounded_send)
            return
        try:
            await self.app(scope, bounded_receive, bounded_send)
        except BodyRefused as exc:
            # Routes answer it through the ApiError handler; this catches what escaped one.
            if started:
                raise
            log.info("refused a body on %s: %s", scope["path"], exc.code)
            await error_response(exc)(scope, receive, bounded_send)

    async def _linger(self, receive: Receive) -> None:
        """Read and drop what the client is still sending, briefly, before the close.

        Closing a socket with unread input resets it, and the reset can reach the client
        before it has read our answer; like nginx's lingering close, a little more input is
        discarded first (bounded in bytes and time), so the client sees the 413 or 408.
        """
        dropped = 0
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(loop.time() + LINGER_SECONDS):
                while dropped < LINGER_BYTES:
                    # A client that has read the answer stops sending: no need to wait on.
                    async with asyncio.timeout(LINGER_IDLE_SECONDS):
                        message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body"):
                        return
                    dropped += len(message.get("body", b""))
