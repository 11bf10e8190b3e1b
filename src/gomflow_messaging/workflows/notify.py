"""Notify: an event for recipients becomes outbox messages, committed, then enqueued."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gomflow_messaging import contacts, idempotency, outbox
from gomflow_messaging.errors import ValidationFailed
from gomflow_messaging.outbox import PlannedMessage
from gomflow_messaging.settings import CHANNEL_NAMES
from gomflow_messaging.workflows import events

if TYPE_CHECKING:
    from collections.abc import Mapping

    from gomflow_messaging.bootstrap import Services
    from gomflow_messaging.channels.base import Channel
    from gomflow_messaging.contacts import Recipient
    from gomflow_messaging.db import Connection

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 10_000
ChannelName = Literal["sandbox", "telegram", "discord", "whatsapp"]


class DirectRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: ChannelName
    address: Annotated[str, Field(min_length=1, max_length=200)]


class SubmissionRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    submission_id: UUID


class OrderRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: UUID


class GomRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gom_id: UUID


RecipientSpec = DirectRecipient | SubmissionRecipient | OrderRecipient | GomRecipient


class NotifyRequest(BaseModel):
    """The body of ``POST /api/notify``."""

    model_config = ConfigDict(extra="forbid")

    event: str
    data: dict[str, Any] = Field(default_factory=dict)
    recipients: Annotated[list[RecipientSpec], Field(min_length=1, max_length=1000)]
    #: Preferred channel order; a recipient's addresses on other channels are not used.
    channels: list[ChannelName] | None = None
    send_at: datetime | None = None
    locale: Literal["en", "fil", "ms"] | None = None

    @field_validator("event")
    @classmethod
    def _known_event(cls, value: str) -> str:
        if value not in events.EVENTS:
            raise ValueError(f"unknown event; known: {', '.join(sorted(events.EVENTS))}")
        return value

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a time zone offset, e.g. 2026-12-01T09:00:00+08:00")
        return value

    @model_validator(mode="after")
    def _channels_unique(self) -> NotifyRequest:
        if self.channels is not None and len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        return self


def parse_request(body: Any) -> NotifyRequest:
    try:
        return NotifyRequest.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(pydantic_fields(exc)) from None


def pydantic_fields(exc: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        # Union members add their class name to the path; a reader wants the JSON path.
        loc = [part for part in loc if not part[:1].isupper()]
        name = ".".join(loc) or "body"
        fields.setdefault(name, error["msg"].removeprefix("Value error, "))
    return fields


@dataclass
class NotifyResult:
    status_code: int
    body: dict[str, Any]
    to_enqueue: list[tuple[UUID, int, datetime | None]]


async def _resolve(
    conn: Connection, spec: RecipientSpec, index: int, channels: Mapping[str, Channel]
) -> list[Recipient]:
    field = f"recipients.{index}"
    if isinstance(spec, DirectRecipient):
        if spec.channel not in channels:
            raise ValidationFailed(
                {f"{field}.channel": f"channel {spec.channel} is not enabled on this deployment"}
            )
        # The channel's own form ("0917 123 4567" -> "+639171234567"), so the contact is found.
        try:
            address = channels[spec.channel].validate_address(spec.address)
        except ValueError as exc:
            raise ValidationFailed({f"{field}.address": str(exc)}) from None
        return [await contacts.for_address(conn, spec.channel, address)]
    if isinstance(spec, SubmissionRecipient):
        found = await contacts.for_submissions(conn, submission_id=spec.submission_id)
        if not found:
            raise ValidationFailed({f"{field}.submission_id": "no such submission"})
        return found
    if isinstance(spec, OrderRecipient):
        if not await conn.fetchval("SELECT 1 FROM orders WHERE id = $1", spec.order_id):
            raise ValidationFailed({f"{field}.order_id": "no such order"})
        return await contacts.for_submissions(conn, order_id=spec.order_id)
    gom = await contacts.for_gom(conn, spec.gom_id)
    if gom is None:
        raise ValidationFailed({f"{field}.gom_id": "no such GOM profile"})
    return [gom]


def plan(
    recipient: Recipient,
    request: NotifyRequest,
    enabled: set[str],
    send_at: datetime | None,
) -> PlannedMessage:
    """Pick the first usable address; otherwise a skipped message that says why."""
    locale = request.locale or recipient.locale
    body = events.render(request.event, request.data, locale)
    order: list[str] = list(request.channels or CHANNEL_NAMES)
    candidates = sorted(
        (a for a in recipient.addresses if a.channel in order),
        key=lambda a: order.index(a.channel),
    )
    usable = [a for a in candidates if a.channel in enabled and a.reachable]

    def message(channel: str, address: str, skip_reason: str | None = None) -> PlannedMessage:
        return outbox.PlannedMessage(
            channel,
            address,
            request.event,
            body,
            locale=locale,
            contact_id=recipient.contact_id,
            next_attempt_at=send_at,
            status="skipped" if skip_reason else "queued",
            status_reason=skip_reason,
        )

    if usable:
        target = usable[0]
        return message(target.channel, target.address, "opted_out" if recipient.opted_out else None)
    if not candidates:
        return message("none", "", "no_address")
    first = candidates[0]
    return message(
        first.channel,
        first.address,
        "unreachable" if first.channel in enabled else "channel_disabled",
    )


async def notify(
    services: Services,
    body: Any,
    *,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    source: str = "api",
) -> NotifyResult:
    """Validate, resolve, render and commit; the caller enqueues ``to_enqueue`` afterwards."""
    request = parse_request(body)
    enabled = set(services.channels)
    body_hash = idempotency.request_hash(body)
    now = datetime.now(UTC)
    send_at = request.send_at if request.send_at and request.send_at > now else None
    async with services.pool.acquire() as conn, conn.transaction():
        if idempotency_key is not None:
            replay = await idempotency.begin(conn, "notify", idempotency_key, body_hash)
            if replay is not None:
                return NotifyResult(replay[0], replay[1], [])
        recipients: list[tuple[int, Recipient]] = []
        for index, spec in enumerate(request.recipients):
            found = await _resolve(conn, spec, index, services.channels)
            recipients += [(index, r) for r in found]
        if len(recipients) > MAX_RECIPIENTS:
            raise ValidationFailed(
                {"recipients": f"resolve to {len(recipients)} people; at most {MAX_RECIPIENTS}"}
            )
        try:
            planned = [plan(r, request, enabled, send_at) for _, r in recipients]
        except events.MissingData as exc:
            raise ValidationFailed({exc.field: exc.message}) from None
        notification_id = await outbox.create_notification(
            conn,
            event=request.event,
            data=request.data,
            locale=request.locale,
            send_at=request.send_at,
            source=source,
            request_id=request_id,
        )
        rows = await outbox.insert_messages(conn, notification_id, planned)
        entries = []
        for (index, recipient), row in zip(recipients, rows, strict=True):
            entry: dict[str, Any] = {
                "id": str(row["id"]),
                "channel": row["channel"],
                "address": row["address"],
                "status": row["status"],
                "recipient": index,
                **recipient.ref,
            }
            if row["status_reason"]:
                entry["reason"] = row["status_reason"]
            entries.append(entry)
        response: dict[str, Any] = {
            "notification_id": str(notification_id),
            "event": request.event,
            "send_at": send_at.isoformat() if send_at else None,
            "messages": entries,
        }
        await conn.execute(
            """
            INSERT INTO audit_log (direction, actor, action, subject, result, detail)
            VALUES ('admin', $1, 'notify', $2, 'accepted', $3::jsonb)
            """,
            source,
            str(notification_id),
            {
                "event": request.event,
                "messages": len(rows),
                "request_id": request_id,
                "queued": sum(1 for r in rows if r["status"] == "queued"),
            },
        )
        if idempotency_key is not None:
            await idempotency.store(conn, "notify", idempotency_key, body_hash, 202, response)
    to_enqueue = [(row["id"], 0, send_at) for row in rows if row["status"] == "queued"]
    return NotifyResult(202, response, to_enqueue)


async def enqueue(services: Services, result: NotifyResult) -> None:
    """After commit: enqueue; if Redis is down the sweeper picks the rows up later."""
    if result.to_enqueue:
        _, deferred = await services.queue.enqueue_many(result.to_enqueue)
        if deferred:
            log.warning("Redis unavailable: %d message(s) left to the sweeper", deferred)
