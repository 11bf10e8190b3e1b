"""Logging: one JSON object per line (or plain text), with the request id of the work at hand.

The request id is set by the HTTP middleware for a request and by the dispatcher for a
delivery (it is stored on the notification), so `grep <request id>` follows a message from
`POST /api/notify` to the platform's answer, across processes.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

#: The request this work belongs to ("" outside any).
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is logged.
# uvicorn passes ``color_message`` (its message with ANSI colour codes) for its own
# formatter: terminal escapes in a JSON log are noise to every log reader, so it is dropped.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
}


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (as ``record.request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras, error."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def configure(level: str, fmt: str, stream: Any = None) -> logging.Handler:
    """Replace the root handlers with one that writes ``fmt`` ("json" or "text")."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # SAQ logs every job at INFO; one line per message is noise at campaign scale.
    logging.getLogger("saq").setLevel(logging.WARNING)
    return handler


class Outage:
    """Logs a lost dependency once, then once per ``every`` seconds while it lasts, then its return.

    Without it every loop that touches Redis (heartbeat, sweeper, SAQ's upkeep and its 20
    dequeuing slots) logged each failure, with a traceback: over a thousand lines in 20 s.
    """

    def __init__(
        self,
        what: str,
        where: str,
        every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        effect: str = "messages wait in the outbox until it is back",
    ) -> None:
        self.what = what
        self.where = where
        self.every = every
        #: What the outage means for the people the service serves, said once when it starts.
        self.effect = effect
        self._clock = clock
        self._log = logger or logging.getLogger("gomflow_messaging.outage")
        self._since: float | None = None
        self._warned_at = 0.0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        now = self._clock()
        reason = type(exc).__name__
        if self._since is None:
            self._since = self._warned_at = now
            self._log.warning(
                "%s unreachable at %s (%s): %s; one reminder every %.0f s while it lasts",
                self.what,
                self.where,
                reason,
                self.effect,
                self.every,
            )
        elif now - self._warned_at >= self.every:
            self._warned_at = now
            self._log.warning(
                "%s still unreachable at %s after %.0f s (%s)",
                self.what,
                self.where,
                now - self._since,
                reason,
            )

    def ok(self) -> None:
        if self._since is not None:
            self._log.warning(
                "%s reachable again at %s after %.0f s",
                self.what,
                self.where,
                self._clock() - self._since,
            )
            self._since = None


class OutageFilter(logging.Filter):
    """Turns a library's per-failure error records about ``errors`` into the outage's lines."""

    def __init__(self, outage: Outage, errors: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.outage = outage
        self.errors = errors

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, self.errors):
            self.outage.failed(exc)
            return False
        return True
