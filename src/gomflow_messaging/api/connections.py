"""The HTTP connection edge: uvicorn's h11 protocol with a deadline and a size bound for the
request head, and a request limit that idle sockets do not use up.

uvicorn counts every open connection against ``limit_concurrency``, idle ones included, and
times a connection out only after a response (keep-alive): a thousand sockets that never send
a request head (or half a request line) would hold the service at 503 for as long as they
stay open. h11 refuses a head larger than its bound only while the head is incomplete, so one
that arrives whole in a single read is accepted at any size. Here a connection that has not
sent a complete head within ``HTTP_HEADER_TIMEOUT_SECONDS`` of opening (or of its previous
response) is closed, a head over ``HTTP_MAX_HEADER_BYTES`` is refused however it arrives, and
only requests in flight count against ``HTTP_LIMIT_CONCURRENCY``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import h11
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from gomflow_messaging.settings import Settings

#: Written to a connection that sent part of a head and then stalled (h11 cannot answer a
#: request it has not parsed, so the bytes are ours).
_TIMEOUT_BODY = b"The request head did not arrive in time.\n"
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


def _head_size(request: h11.Request) -> int:
    """The request line and headers as sent (h11 has stripped only the line breaks)."""
    line = len(request.method) + len(request.target) + len(b"  HTTP/1.1\r\n\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items())


class _BoundedHeads(h11.Connection):
    """h11's connection, refusing a complete request head larger than the bound."""

    def __init__(self, max_head_bytes: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self.max_head_bytes = max_head_bytes

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request) and _head_size(event) > self.max_head_bytes:
            # uvicorn answers this with 400 and closes the connection, as for h11's own bound.
            raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


class HeadTimedH11Protocol(H11Protocol):
    """One connection; see the module's docstring. Settings come as class attributes."""

    head_timeout: float = 10.0
    max_head_bytes: int = 65_536
    max_requests: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _BoundedHeads(self.max_head_bytes)
        self._head_deadline: asyncio.TimerHandle | None = None
        # uvicorn's own check counts connections; ours (in `_admit`) counts requests.
        self.limit_concurrency = None
        self._inner_app = self.app
        self.app = self._admit

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        # This request's task is already in `tasks`, hence ">".
        if self.max_requests is not None and len(self.tasks) > self.max_requests:
            await service_unavailable(scope, receive, send)  # type: ignore[arg-type]
            return
        await self._inner_app(scope, receive, send)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        """Between requests the head's deadline runs from when the wait began: a client that
        sends a byte now and then does not extend it."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout, self._head_timed_out)
        elif not waiting:
            self._stop_deadline()

    def _stop_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


def protocol(settings: Settings) -> type[HeadTimedH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these settings."""
    return type(
        "HeadTimedH11Protocol",
        (HeadTimedH11Protocol,),
        {
            "head_timeout": settings.http_header_timeout_seconds,
            "max_head_bytes": settings.http_max_header_bytes,
            "max_requests": settings.http_limit_concurrency,
        },
    )
