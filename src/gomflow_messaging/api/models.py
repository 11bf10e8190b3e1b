"""The JSON the API takes and gives, as pydantic models: routes validate with them and
`api/openapi.py` generates the document's schemas from them, so a rule is stated once.

The body of ``POST /api/notify`` is the notify workflow's own model (``NotifyRequest``), which
the other workflows use too. Response models describe what routes answer (they are the
document's promise, checked by tests/test_openapi.py); routes build the dicts themselves.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StrictBool, StringConstraints, field_validator

from gomflow_messaging.i18n import Locale

#: Non-blank text: surrounding spaces are not a value.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class TestNotificationRequest(BaseModel):
    """``POST /api/notifications/test``: where to send the test message, or only check."""

    # Not a pytest test class, though its name starts with Test.
    __test__ = False

    addresses: dict[str, str] | None = Field(
        None, description='`{"<channel>": "<address>"}` for the channels to test.'
    )
    address: str | None = Field(None, description="One address for every enabled channel.")
    locale: Locale | None = None
    test_message: StrictBool | None = Field(
        None,
        description="`true` without addresses: check the deployment, messaging nobody "
        "(one message to the sandbox when it is on).",
    )


class SandboxForm(BaseModel):
    """A filled-in form (Discord's modal, as the sandbox shows it)."""

    id: str = ""
    values: dict[str, str]


class SandboxFile(BaseModel):
    """A file as a sandbox chat sends it: a payment receipt, for instance."""

    name: str = "receipt"
    mime_type: str = "application/octet-stream"
    content_base64: str

    @field_validator("content_base64")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (ValueError, binascii.Error):
            raise ValueError("must be base64") from None
        return value

    def content(self) -> bytes:
        return base64.b64decode(self.content_base64, validate=True)


class SandboxInboundRequest(BaseModel):
    """``POST /api/sandbox/inbound``: what a sandbox chat user types or sends."""

    address: Text
    #: Required unless a file (a file may come without a caption) or a form's answers come.
    text: str | None = None
    name: str = ""
    language: str = ""
    supports_forms: StrictBool = False
    form: SandboxForm | None = None
    file: SandboxFile | None = None

    @field_validator("text")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value if value is None or value.strip() else None

    def missing(self) -> dict[str, str]:
        """The field the request lacks: text, unless a file or a form's answers come instead."""
        answered = self.file is not None or self.form is not None
        return {"text": "is required"} if self.text is None and not answered else {}


class LinkTokenRequest(BaseModel):
    """``POST /api/link-tokens``: exactly one of the two."""

    submission_id: UUID | None = None
    gom_id: UUID | None = None


class NotifyMessage(BaseModel):
    id: UUID
    channel: str
    address: str
    status: Literal["queued", "skipped"]
    #: The index of the recipient in the request this message is for.
    recipient: int
    reason: str | None = None
    send_at: datetime | None = None


class NotifyResponse(BaseModel):
    notification_id: UUID
    event: str
    send_at: datetime | None = None
    messages: list[NotifyMessage]


class Message(BaseModel):
    id: UUID
    notification_id: UUID | None = None
    channel: str
    address: str
    event: str | None = None
    status: Literal["queued", "sending", "sent", "delivered", "read", "failed", "skipped"]
    status_reason: str | None = None
    attempts: int
    last_error: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None
    attempt_log: list[dict[str, Any]]


class Health(BaseModel):
    ok: bool
    status: Literal["ok", "degraded", "unavailable"]
    version: str | None = None
    mode: str | None = None
    components: dict[str, Any]
    #: With the secret: why it is degraded, when nothing in one component says it.
    problems: list[str] | None = None


class DeploymentCheck(BaseModel):
    """The answer to ``{"test_message": true}`` without addresses."""

    ok: bool
    status: str
    mode: str | None = None
    components: dict[str, Any]
    problems: list[str] | None = None
    test_message: dict[str, Any] | None = None


class SandboxMessages(BaseModel):
    messages: list[Any]


class BotReplies(BaseModel):
    replies: list[Any]


class LinkToken(BaseModel):
    code: str
    expires_at: datetime
    #: How to send the code on each platform.
    how: dict[str, str]


class CommandsStatus(BaseModel):
    """Without the secret only ``commands``; with it only ``platforms``."""

    platforms: dict[str, Any] | None = None
    commands: list[Any] | None = None


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: dict[str, Any]


class Error(BaseModel):
    """Every error the API answers: ``fields`` names each offending field."""

    error: ErrorDetail


#: Request models, validated as they arrive.
REQUESTS: tuple[type[BaseModel], ...] = (
    TestNotificationRequest,
    SandboxInboundRequest,
    LinkTokenRequest,
)
#: Response models, as routes serialise them.
RESPONSES: tuple[type[BaseModel], ...] = (
    NotifyResponse,
    Message,
    Health,
    DeploymentCheck,
    SandboxMessages,
    BotReplies,
    LinkToken,
    CommandsStatus,
    Error,
)
