"""The error taxonomy shared by channels, the dispatcher and the HTTP API."""

from __future__ import annotations

from typing import Any


class ChannelError(Exception):
    """A platform refused or failed a send; adapters raise only subclasses of this."""

    def __init__(self, message: str, *, code: str = "", platform: str = "") -> None:
        super().__init__(message)
        self.message = message
        #: A short machine-readable cause, such as ``blocked`` or ``http_503``.
        self.code = code
        #: The platform that answered, for logs and the attempt record.
        self.platform = platform


class TransientError(ChannelError):
    """Worth retrying: rate limits (429), 5xx, timeouts, network trouble."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        platform: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, platform=platform)
        #: Seconds the platform asked us to wait; honoured by the dispatcher's backoff.
        self.retry_after = retry_after


class PermanentError(ChannelError):
    """Retrying cannot help: blocked or unknown recipient, rejected content, bad credentials."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        platform: str = "",
        address_unreachable: bool = False,
    ) -> None:
        super().__init__(message, code=code, platform=platform)
        #: The recipient's address will never work again (blocked the bot, deleted number).
        self.address_unreachable = address_unreachable


class SkipMessage(ChannelError):
    """Not sent by rule, not by failure: the message is recorded as skipped, ``code`` the reason.

    For instance WhatsApp outside the 24-hour window with no approved template for the event
    (``template_required``). Nothing is retried and the address stays reachable.
    """


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "fields"}}``."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "fields": self.fields}}


class ValidationFailed(ApiError):
    """422 with the offending fields named."""

    def __init__(self, fields: dict[str, str], message: str = "The request is not valid.") -> None:
        super().__init__(422, "validation_error", message, fields)
