"""Notify: an event for recipients becomes outbox messages, committed, then enqueued.

Used by `POST /api/notify` (with idempotency) and by the other workflows (reminders, GOM
alerts, summaries) through `send`. For each person it renders the event in their language
and time zone, honours STOP and their per-kind preferences, defers non-urgent messages out of
their quiet hours, and keeps their other addresses as fallbacks for a permanent failure.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from gomflow_messaging import contacts, idempotency, metrics, outbox
from gomflow_messaging.errors import ValidationFailed
from gomflow_messaging.i18n import Locale
from gomflow_messaging.outbox import PlannedMessage
from gomflow_messaging.settings import CHANNEL_NAMES
from gomflow_messaging.workflows import events

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from gomflow_messaging.channels.base import Channel
    from gomflow_messaging.contacts import Recipient
    from gomflow_messaging.db import Connection
    from gomflow_messaging.workflows.ports import Ports

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 10_000
if TYPE_CHECKING:
    ChannelName = str
else:
    # Every registered channel (channels/registry.py), checked like any other literal.
    ChannelName = Literal[CHANNEL_NAMES]


def _known_channel(value: Any) -> Any:
    """An unknown channel is named, with the channels there are (before the literal check)."""
    if isinstance(value, str) and value not in CHANNEL_NAMES:
        raise ValueError(f"unknown channel {value!r}; channels: {', '.join(CHANNEL_NAMES)}")
    return value


class DirectRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: ChannelName
    address: Annotated[str, Field(min_length=1, max_length=200)]

    _channel = field_validator("channel", mode="before")(_known_channel)


class SubmissionRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    submission_id: UUID


class OrderRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: UUID


class GomRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gom_id: UUID


_RECIPIENT_KINDS = {
    "channel": "direct",
    "submission_id": "submission",
    "order_id": "order",
    "gom_id": "gom",
}


def _recipient_kind(value: Any) -> str | None:
    """Which recipient shape a body item is, by its key, so that a mistake in one shape is
    reported once, not once per shape it is not."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, dict):
        return None
    return next((kind for key, kind in _RECIPIENT_KINDS.items() if key in value), None)


RecipientSpec = Annotated[
    Annotated[DirectRecipient, Tag("direct")]
    | Annotated[SubmissionRecipient, Tag("submission")]
    | Annotated[OrderRecipient, Tag("order")]
    | Annotated[GomRecipient, Tag("gom")],
    Discriminator(
        _recipient_kind,
        custom_error_type="recipient",
        custom_error_message=(
            'must be {"channel", "address"}, {"submission_id"}, {"order_id"} or {"gom_id"}'
        ),
    ),
]


class NotifyRequest(BaseModel):
    """The body of ``POST /api/notify``."""

    model_config = ConfigDict(extra="forbid")

    event: Annotated[
        str,
        Field(
            description="`custom` sends `data.text` as is; other events render a localised "
            "text from `data` (each names the fields it needs in a 422).",
            json_schema_extra={"enum": sorted(events.EVENTS)},
        ),
    ]
    data: dict[str, Any] = Field(default_factory=dict)
    recipients: Annotated[list[RecipientSpec], Field(min_length=1, max_length=1000)]
    #: Preferred channel order; a recipient's addresses on other channels are not used.
    channels: Annotated[
        list[ChannelName] | None, Field(json_schema_extra={"uniqueItems": True})
    ] = None
    send_at: datetime | None = None
    locale: Locale | None = None

    @field_validator("channels", mode="before")
    @classmethod
    def _known_channels(cls, value: Any) -> Any:
        if isinstance(value, list):
            for item in value:
                _known_channel(item)
        return value

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
        request = NotifyRequest.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(pydantic_fields(exc)) from None
    try:
        events.validate(request.event, request.data)
    except events.MissingData as exc:
        raise ValidationFailed({exc.field: exc.message}) from None
    return request


_RECIPIENT_TAGS = frozenset(_RECIPIENT_KINDS.values())


def pydantic_fields(exc: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        # Union members add their class name (or tag) to the path; a reader wants the JSON path.
        loc = [part for part in loc if not part[:1].isupper() and part not in _RECIPIENT_TAGS]
        name = ".".join(loc) or "body"
        fields.setdefault(name, error["msg"].removeprefix("Value error, "))
    return fields


class AddressesKnown(Exception):
    """A contact holds one of the addresses a notification was planned for as a stranger's."""


@dataclass
class NotifyResult:
    status_code: int
    body: dict[str, Any]
    #: The channels with a message due now: their workers' doorbells are rung after the commit.
    due_channels: frozenset[str]


def _direct_address(spec: DirectRecipient, index: int, channels: Mapping[str, Channel]) -> str:
    field = f"recipients.{index}"
    if spec.channel not in channels:
        raise ValidationFailed(
            {f"{field}.channel": f"channel {spec.channel} is not enabled on this deployment"}
        )
    # The channel's own form ("0917 123 4567" -> "+639171234567"), so the contact is found.
    try:
        return channels[spec.channel].validate_address(spec.address)
    except ValueError as exc:
        raise ValidationFailed({f"{field}.address": str(exc)}) from None


def _as_strangers(
    specs: list[RecipientSpec], channels: Mapping[str, Channel]
) -> list[tuple[int, Recipient]] | None:
    """Direct recipients as if no contact held their addresses (most direct sends), so that
    the insert can check that instead of a lookup first; None when a recipient is not direct."""
    if not all(isinstance(spec, DirectRecipient) for spec in specs):
        return None
    return [
        (index, contacts.stranger(spec.channel, _direct_address(spec, index, channels)))
        for index, spec in enumerate(specs)
        if isinstance(spec, DirectRecipient)
    ]


async def _resolve(
    conn: Connection, spec: RecipientSpec, index: int, channels: Mapping[str, Channel]
) -> list[Recipient]:
    field = f"recipients.{index}"
    if isinstance(spec, DirectRecipient):
        address = _direct_address(spec, index, channels)
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


async def _submission_context(
    conn: Connection, recipients: list[Recipient]
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Each recipient's own submission and order, loaded in one query, by submission id."""
    ids = [r.ref["submission_id"] for r in recipients if "submission_id" in r.ref]
    if not ids:
        return {}
    rows = await conn.fetch(
        """
        SELECT s.id::text AS sid, s.payment_reference, s.total_amount, s.currency,
               s.buyer_name, s.quantity, s.status, o.id AS order_id, o.title, o.deadline,
               o.slug, o.max_orders, o.user_id
          FROM submissions s JOIN orders o ON o.id = s.order_id
         WHERE s.id = ANY($1::uuid[])
        """,
        ids,
    )
    return {
        r["sid"]: (
            {
                k: r[k]
                for k in (
                    "payment_reference",
                    "total_amount",
                    "currency",
                    "buyer_name",
                    "quantity",
                    "status",
                )
            },
            {
                "id": r["order_id"],
                "title": r["title"],
                "deadline": r["deadline"],
                "slug": r["slug"],
                "max_orders": r["max_orders"],
                "user_id": r["user_id"],
            },
        )
        for r in rows
    }


def quiet_until(recipient: Recipient, at: datetime) -> datetime | None:
    """The end of the recipient's quiet hours if ``at`` falls inside them, else None."""
    start, end = recipient.quiet_start, recipient.quiet_end
    if start is None or end is None or start == end:
        return None
    try:
        zone = ZoneInfo(recipient.timezone)
    except (KeyError, ValueError):
        zone = ZoneInfo("Asia/Manila")
    local = at.astimezone(zone)
    now_t = local.timetz().replace(tzinfo=None)
    inside = start <= now_t < end if start < end else (now_t >= start or now_t < end)
    if not inside:
        return None
    end_local = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if end_local <= local:
        end_local += timedelta(days=1)
    return end_local.astimezone(UTC)


def plan(
    recipient: Recipient,
    spec: events.EventSpec,
    body: dict[str, Any],
    locale: str,
    enabled: set[str],
    channel_order: list[str] | None,
    send_at: datetime | None,
    now: datetime,
) -> PlannedMessage:
    """Pick the first usable address (the rest are fallbacks), or skip and say why.

    Without a channel order the recipient's own order holds: the chat their submission
    came from, then their addresses by priority (PRODUCT.md: messages go back there).
    """
    order: list[str] = list(channel_order or CHANNEL_NAMES)
    candidates = [a for a in recipient.addresses if a.channel in order]
    if channel_order:
        candidates.sort(key=lambda a: order.index(a.channel))
    usable = [a for a in candidates if a.channel in enabled and a.reachable]

    def message(
        channel: str, address: str, skip: str | None = None, at: datetime | None = send_at
    ) -> PlannedMessage:
        return PlannedMessage(
            channel,
            address,
            spec.name,
            body,
            locale=locale,
            contact_id=recipient.contact_id,
            next_attempt_at=at,
            status="skipped" if skip else "queued",
            status_reason=skip,
            routes=[{"channel": a.channel, "address": a.address} for a in usable[1:]],
        )

    if not usable:
        if not candidates:
            return message("none", "", "no_address")
        first = candidates[0]
        return message(
            first.channel,
            first.address,
            "unreachable" if first.channel in enabled else "channel_disabled",
        )
    target = usable[0]
    if recipient.opted_out and spec.name != "test":
        return message(target.channel, target.address, "opted_out")
    if not spec.transactional and recipient.preferences.get(spec.kind) is False:
        return message(target.channel, target.address, "preference_off")
    if not spec.urgent:
        deferred = quiet_until(recipient, send_at or now)
        if deferred is not None:
            return message(target.channel, target.address, at=deferred)
    return message(target.channel, target.address)


async def deliver_event(
    conn: Connection,
    ports: Ports,
    *,
    event: str,
    data: dict[str, Any],
    recipients: list[tuple[int, Recipient]],
    channels: list[str] | None = None,
    send_at: datetime | None = None,
    locale: str | None = None,
    source: str = "api",
    request_id: str | None = None,
    now: datetime | None = None,
    unless_known: list[tuple[str, str]] | None = None,
) -> NotifyResult:
    """Render, plan and store one notification inside the caller's transaction.

    With ``unless_known`` (channel, address) pairs, raises AddressesKnown, having written
    nothing, when one of them belongs to a contact.
    """
    now = now or datetime.now(UTC)
    if len(recipients) > MAX_RECIPIENTS:
        raise ValidationFailed(
            {"recipients": f"resolve to {len(recipients)} people; at most {MAX_RECIPIENTS}"}
        )
    spec = events.EVENTS[event]
    enabled = set(ports.channels)
    when = send_at if send_at and send_at > now else None
    context = await _submission_context(conn, [r for _, r in recipients])
    planned: list[PlannedMessage] = []
    for _, recipient in recipients:
        chosen = locale or recipient.locale
        submission, order = context.get(recipient.ref.get("submission_id", ""), (None, None))
        ctx = events.RenderContext(chosen, recipient.timezone, now, submission, order)
        try:
            body = events.render(event, data, ctx)
        except events.MissingData as exc:
            raise ValidationFailed({exc.field: exc.message}) from None
        planned.append(plan(recipient, spec, body, chosen, enabled, channels, when, now))
        # What the console shows a GOM: only the messages about their own orders.
        planned[-1].order_id = order["id"] if order else None
    stored = await outbox.insert_notification(
        conn,
        event=event,
        data=data,
        locale=locale,
        send_at=send_at,
        source=source,
        request_id=request_id,
        audit={
            "event": event,
            "messages": len(planned),
            "request_id": request_id,
            "queued": sum(1 for p in planned if p.status == "queued"),
        },
        planned=planned,
        unless_known=unless_known,
    )
    if stored is None:
        raise AddressesKnown
    notification_id, rows = stored
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
        if row["status"] == "queued" and row["next_attempt_at"] > now + timedelta(seconds=1):
            entry["send_at"] = row["next_attempt_at"].isoformat()
        entries.append(entry)
    accepted: dict[tuple[str, str], int] = {}
    for row in rows:
        accepted[(row["channel"], row["status"])] = (
            accepted.get((row["channel"], row["status"]), 0) + 1
        )
    for (channel, status), count in accepted.items():
        metrics.ACCEPTED.labels(channel, status).inc(count)
    log.info(
        "notification %s (%s, %s): %d message(s), %d queued",
        notification_id,
        event,
        source,
        len(rows),
        sum(n for (_, status), n in accepted.items() if status == "queued"),
    )
    response: dict[str, Any] = {
        "notification_id": str(notification_id),
        "event": event,
        "send_at": when.isoformat() if when else None,
        "messages": entries,
    }
    # A message for later needs nothing more: the workers' poll claims it once it is due.
    soon = datetime.now(UTC) + timedelta(seconds=1)
    due = frozenset(
        row["channel"]
        for row in rows
        if row["status"] == "queued" and row["next_attempt_at"] <= soon
    )
    return NotifyResult(202, response, due)


async def resolve_all(
    conn: Connection, specs: list[RecipientSpec], channels: Mapping[str, Channel]
) -> list[tuple[int, Recipient]]:
    recipients: list[tuple[int, Recipient]] = []
    for index, spec in enumerate(specs):
        recipients += [(index, r) for r in await _resolve(conn, spec, index, channels)]
    return recipients


async def notify(
    ports: Ports,
    body: Any,
    *,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    source: str = "api",
) -> NotifyResult:
    """The API's notify: validate, replay or resolve, and commit; then call `enqueue`."""
    request = parse_request(body)
    # Hashing a large body costs: only a request with a key needs it.
    body_hash = idempotency.request_hash(body) if idempotency_key is not None else ""

    async def run(conn: Connection) -> NotifyResult:
        options: dict[str, Any] = {
            "event": request.event,
            "data": request.data,
            "channels": list(request.channels) if request.channels else None,
            "send_at": request.send_at,
            "locale": request.locale,
            "source": source,
            "request_id": request_id,
            "now": None,
        }
        strangers = _as_strangers(request.recipients, ports.channels)
        if strangers is not None:
            # One round trip when no contact holds these addresses; else resolve them below.
            known = [(r.addresses[0].channel, r.addresses[0].address) for _, r in strangers]
            with suppress(AddressesKnown):
                return await deliver_event(
                    conn, ports, recipients=strangers, unless_known=known, **options
                )
        recipients = await resolve_all(conn, request.recipients, ports.channels)
        return await deliver_event(conn, ports, recipients=recipients, **options)

    async with ports.pool.acquire() as conn:
        if idempotency_key is None:
            # Reads, then one INSERT statement (atomic by itself): no BEGIN and COMMIT
            # round trips on the hot path.
            return await run(conn)
        async with conn.transaction():
            replay = await idempotency.begin(conn, "notify", idempotency_key, body_hash)
            if replay is not None:
                return NotifyResult(replay[0], replay[1], frozenset())
            result = await run(conn)
            await idempotency.store(conn, "notify", idempotency_key, body_hash, 202, result.body)
    return result


class Batch:
    """Notifications written inside one transaction (`transaction`), enqueued once it commits."""

    def __init__(self, ports: Ports, conn: Connection) -> None:
        #: The transaction's connection: the caller's own statements go through it too.
        self.conn = conn
        self._ports = ports
        self._results: list[NotifyResult] = []

    async def send(
        self,
        event: str,
        data: dict[str, Any],
        recipients: list[dict[str, Any]],
        *,
        source: str,
        now: datetime | None = None,
    ) -> NotifyResult:
        """The notify path without HTTP: rows written now, enqueued after the commit."""
        specs = NotifyRequest.model_validate({"event": event, "recipients": recipients}).recipients
        found = await resolve_all(self.conn, specs, self._ports.channels)
        result = await deliver_event(
            self.conn, self._ports, event=event, data=data, recipients=found, source=source, now=now
        )
        self._results.append(result)
        return result


@asynccontextmanager
async def transaction(ports: Ports) -> AsyncIterator[Batch]:
    """One transaction whose notifications are enqueued once it commits: never before (a
    worker would find no row) and never forgotten. On an error nothing is kept or queued."""
    async with ports.pool.acquire() as conn:
        async with conn.transaction():
            batch = Batch(ports, conn)
            yield batch
        for result in batch._results:
            await enqueue(ports, result)


async def send(
    ports: Ports,
    event: str,
    data: dict[str, Any],
    recipients: list[dict[str, Any]],
    *,
    source: str,
    now: datetime | None = None,
) -> NotifyResult:
    """For workflows: one notification in its own transaction, committed, then enqueued."""
    async with transaction(ports) as batch:
        return await batch.send(event, data, recipients, source=source, now=now)


async def enqueue(ports: Ports, result: NotifyResult) -> None:
    """After commit: ring the doorbell of each channel with a message due now (one Redis round
    trip, whatever the number of messages). If Redis is down, the workers' poll finds them."""
    if result.due_channels and not await ports.queue.ring(result.due_channels):
        log.warning(
            "Redis unavailable: the workers' poll will find the messages for %s",
            ", ".join(sorted(result.due_channels)),
        )
