"""A fake Twilio REST API on loopback, driven by the real twilio SDK, and the contract harness.

It speaks Twilio's wire format: form-encoded `POST /2010-04-01/Accounts/{sid}/Messages.json`
with HTTP Basic auth, JSON answers (`sid` "SM...", status "queued"), Twilio's error bodies
(`code`, `message`, `more_info`, `status`), 429 with Retry-After, 5xx, a hang, a send
accepted whose answer never comes (``accepted_lost``), and media downloads that need the
account's credentials. WhatsApp's own refusals (63016 outside the window, 63018 the daily
cap) come as WhatsApp sends them: the send is accepted ("queued") and the failure arrives
later in a signed status callback (`fails_later`, `due_callbacks`).
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from twilio.request_validator import RequestValidator

from gomflow_messaging.channels.base import Channel
from gomflow_messaging.channels.whatsapp.channel import WhatsAppChannel
from gomflow_messaging.settings import Settings
from tests.contract import Fault, Received, recent_contacts
from tests.helpers import SECRET

# Obviously fake credentials (the repository's hook refuses anything like a real SID).
ACCOUNT_SID = "ACtest" + "x" * 28
AUTH_TOKEN = "test-auth-token"
SENDER = "+14155238886"


@dataclass
class Sent:
    """One Messages.json request as Twilio got it."""

    sid: str
    fields: dict[str, list[str]]

    def get(self, name: str) -> str:
        return self.fields.get(name, [""])[0]

    @property
    def to(self) -> str:
        return self.get("To")

    @property
    def body(self) -> str:
        return self.get("Body")


@dataclass
class FakeTwilio:
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    sent: list[Sent] = field(default_factory=list)
    #: Faults for the next Messages.json requests, in order: (kind, retry_after).
    faults: list[tuple[str, float]] = field(default_factory=list)
    #: Recipient ("whatsapp:+63...") -> (HTTP status, Twilio code): answered for every send.
    errors_for: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Recipient -> (MessageStatus, WhatsApp's code): the send is accepted, and fails later,
    #: reported in a status callback (what 63016 and 63018 do).
    fails_later: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: Status callbacks owed: (StatusCallback URL, form), in order.
    callbacks: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: Media path -> (content type, bytes), served with auth.
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    #: Media path -> where Twilio redirects it (its CDN, with a short-lived URL), with auth.
    media_redirects: dict[str, str] = field(default_factory=dict)
    unauthorized: int = 0
    base_url: str = ""

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    async def start(self) -> FakeTwilio:
        app = web.Application()
        prefix = "/2010-04-01/Accounts/{sid}"
        app.router.add_post(prefix + "/Messages.json", self._create_message)
        app.router.add_get(prefix + ".json", self._account)
        app.router.add_get(prefix + "/Messages/{msg}/Media/{media}", self._media)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def due_callbacks(self) -> list[tuple[str, dict[str, str], str]]:
        """The status callbacks owed so far, each (URL, form, X-Twilio-Signature), taken."""
        validator = RequestValidator(self.auth_token)
        due = [(url, f, validator.compute_signature(url, f)) for url, f in self.callbacks]
        self.callbacks.clear()
        return due

    def to(self, address: str) -> list[Sent]:
        return [s for s in self.sent if s.to == "whatsapp:" + address]

    # -- handlers ------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        ok = (
            request.headers.get("Authorization") == f"Basic {expected}"
            and request.match_info["sid"] == self.account_sid
        )
        if not ok:
            self.unauthorized += 1
        return ok

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return web.json_response(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            status=status,
        )

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        lost = False
        if self.faults:
            kind, retry_after = self.faults.pop(0)
            lost = kind == "accepted_lost"
            if kind == "rate_limited":
                response = self._error(429, 20429, "Too Many Requests")
                response.headers["Retry-After"] = str(int(retry_after))
                return response
            if kind == "server_error":
                return self._error(503, 20500, "Service Unavailable")
            if kind == "hang":
                await self._release.wait()
                return self._error(503, 20500, "Service Unavailable")
        post = await request.post()
        fields: dict[str, list[str]] = {}
        for key, value in post.items():
            fields.setdefault(key, []).append(str(value))
        to = fields.get("To", [""])[0]
        if to in self.errors_for:
            status, code = self.errors_for[to]
            return self._error(status, code, f"Twilio error {code}")
        if not to.startswith("whatsapp:+") or not fields.get("From", [""])[0]:
            return self._error(400, 21211, "Invalid 'To' Phone Number")
        body = fields.get("Body", [""])[0]
        if len(body) > 1600:
            return self._error(400, 21617, "The concatenated message body exceeds 1600 characters")
        if not body and "ContentSid" not in fields and "MediaUrl" not in fields:
            return self._error(400, 21619, "A text message body or media urls must be specified")
        sid = "SM" + uuid.uuid4().hex
        self.sent.append(Sent(sid, fields))
        if to in self.fails_later and fields.get("StatusCallback"):
            status, code = self.fails_later[to]
            form = {
                "MessageSid": sid,
                "SmsSid": sid,
                "AccountSid": self.account_sid,
                "MessageStatus": status,
                "SmsStatus": status,
                "ErrorCode": str(code),
                "From": fields["From"][0],
                "To": to,
                "ChannelPrefix": "whatsapp",
            }
            self.callbacks.append((fields["StatusCallback"][0], form))
        if lost:  # accepted, and the answer never comes back
            await self._release.wait()
        return web.json_response(
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": to,
                "from": fields["From"][0],
                "body": body,
                "status": "queued",
                "num_segments": "1",
                "num_media": str(len(fields.get("MediaUrl", []))),
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "date_created": None,
                "error_code": None,
                "error_message": None,
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            },
            status=201,
        )

    async def _account(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        return web.json_response(
            {"sid": self.account_sid, "friendly_name": "fake", "status": "active", "type": "Full"}
        )

    async def _media(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        if request.path in self.media_redirects:
            raise web.HTTPTemporaryRedirect(self.media_redirects[request.path])
        found = self.media.get(request.path)
        if found is None:
            return self._error(404, 20404, "The requested resource was not found")
        content_type, data = found
        return web.Response(body=data, content_type=content_type)


def twilio_settings(base_url: str, **overrides: Any) -> Settings:
    """Settings for an adapter on its own (no app): WhatsApp on, pointed at the fake."""
    values: dict[str, Any] = {
        "environment": "test",
        "service_secret": SECRET,
        "enable_sandbox": False,
        "enable_whatsapp": True,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_whatsapp_number": "whatsapp:" + SENDER,
        "twilio_api_base_url": base_url,
        "twilio_timeout_seconds": 1.0,
        "public_base_url": "https://gomflow.example.com",
        # Its own pacing keys: a 429 in one test must not slow the next.
        "queue_name": f"gomflow-test-wa-{secrets.token_hex(4)}",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def run_phone(run: int, n: int) -> str:
    """A valid Philippine mobile number, distinct per run and n."""
    return f"+63917{run:04d}{n:03d}"


_BUTTON = re.compile(
    r"^(?:\d+\. (?P<choice>.+?)(?: \([^()]*\))?|(?P<label>.+): (?:reply \S.*|https?://\S+))$"
)


def parse_body(body: str) -> tuple[str, list[str]]:
    """Split a WhatsApp body into its text and the labels of the buttons rendered under it.

    Buttons are numbered choices ("1. Pay (PAY)", then a line asking for a number in the
    reader's language), reply lines ("Pay: reply PAY") or links ("Track: https://...").
    """
    head, sep, tail = body.rpartition("\n\n")
    lines = tail.split("\n") if sep else []
    if any(re.match(r"^\d+\. ", line) for line in lines[:-1]):
        lines = lines[:-1]
    if lines and all(_BUTTON.match(line) for line in lines):
        found = [_BUTTON.match(line) for line in lines]
        return head, [m["choice"] or m["label"] for m in found if m]
    return body, []


class TwilioHarness:
    """The contract harness: addresses are contacts who wrote in the last 24 hours."""

    name = "whatsapp"
    garbage = ("+1", "not-a-phone", "0917")  # not an address on this platform
    duplicates_after_lost_answer = 1  # Twilio's Messages API has no idempotency key
    max_text = 1600

    def __init__(self, pool: Any, redis: Any) -> None:
        self._pool = pool
        self._redis = redis
        self._run = secrets.randbelow(10_000)
        self.fake = FakeTwilio()
        self._contacts: list[uuid.UUID] = []

    async def start(self) -> Channel:
        await self.fake.start()
        addresses = [self.address(n) for n in [*range(1, 10), 999]]
        self._contacts += await recent_contacts(self._pool, "whatsapp", addresses)
        self.fake.errors_for["whatsapp:" + self.blocked_address()] = (400, 21610)
        channel = WhatsAppChannel(twilio_settings(self.fake.base_url), self._pool, self._redis)
        await channel.start()
        return channel

    def address(self, n: int) -> str:
        return run_phone(self._run, n)

    def blocked_address(self) -> str:
        return run_phone(self._run, 999)

    async def received(self, address: str) -> list[Received]:
        result = []
        for sent in self.fake.to(address):
            text, buttons = parse_body(sent.body)
            media = sent.fields.get("MediaUrl", [""])
            result.append(Received(address, text, buttons, media[0]))
        return result

    async def fail_next(self, fault: Fault, retry_after: float = 2.0) -> None:
        self.fake.faults.append((fault, retry_after))

    async def close(self) -> None:
        await self.fake.close()
        await self._pool.execute("DELETE FROM contacts WHERE id = ANY($1::uuid[])", self._contacts)
