"""A fake WhatsApp Cloud API (Meta's Graph API for one phone number) on a loopback socket.

It speaks Meta's wire format (see ../shared/PEERS.md, WhatsApp Cloud API): JSON ``POST
/v23.0/{phone number id}/messages`` with the access token as a Bearer header, answering
``{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid…"}]}``
or Graph's error envelope ``{"error": {"message", "type", "code", "error_data": {"details"},
"fbtrace_id"}}`` (HTTP 400 whatever the cause, as Meta does). It checks what Meta checks:
text of 4,096 characters, reply buttons (at most 3, titles of 20, unique, ids of 256), lists
(at most 10 rows, titles of 24, ids of 200, descriptions of 72, the button of 20), interactive
bodies of 1,024, a template's name and language; a person marked outside the 24-hour window
takes only a template (131047). It serves media (``GET /{media id}`` then the URL, which
needs the bearer token), can answer 130429 / 131056 / 131026 / any code, a 5xx, a hang, and
with ``strict_rate`` refuses (130429) whatever goes past that many messages in any second.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gomflow_messaging.channels.base import Channel
from gomflow_messaging.channels.whatsapp.cloud.channel import CloudChannel
from gomflow_messaging.settings import Settings
from tests.contract import Fault, Received, recent_contacts
from tests.helpers import SECRET

ACCESS_TOKEN = "EAAcloud" + "y" * 40
APP_SECRET = "cloud-app-secret-0123456789abcdef"
VERIFY_TOKEN = "cloud-verify-token"
PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "102290129340398"
DISPLAY_NUMBER = "+63 917 000 0000"
VERSION = "v23.0"

# Meta's words for the codes a test can ask for: (HTTP status, title).
_ERRORS: dict[int, tuple[int, str]] = {
    130429: (400, "Rate limit hit"),
    131056: (400, "(Business Account, Consumer Account) pair rate limit hit"),
    131047: (400, "Re-engagement message"),
    131026: (400, "Message undeliverable"),
    131000: (500, "Something went wrong"),
    80007: (400, "Rate limit issues"),
    190: (401, "Error validating access token: Session has expired"),
    100: (400, "Invalid parameter"),
    132001: (400, "Template name does not exist in the translation"),
}


class Invalid(Exception):
    """A request Graph refuses with code 100 (invalid parameter)."""


@dataclass
class Sent:
    """One message as the Cloud API got it."""

    to: str
    body: dict[str, Any]
    wamid: str
    at: float

    @property
    def address(self) -> str:
        return "+" + self.to

    @property
    def kind(self) -> str:
        return str(self.body.get("type", ""))

    @property
    def interactive(self) -> dict[str, Any]:
        found: dict[str, Any] = self.body.get("interactive") or {}
        return found

    @property
    def text(self) -> str:
        if self.kind == "text":
            return str(self.body["text"]["body"])
        if self.kind == "interactive":
            return str(self.interactive["body"]["text"])
        if self.kind == "image":
            return str(self.body["image"].get("caption", ""))
        return ""

    @property
    def buttons(self) -> list[tuple[str, str]]:
        """(title, id) of its reply buttons or list rows."""
        action = self.interactive.get("action") or {}
        if self.interactive.get("type") == "button":
            return [(b["reply"]["title"], b["reply"]["id"]) for b in action["buttons"]]
        return [(r["title"], r["id"]) for s in action.get("sections", []) for r in s["rows"]]


@dataclass
class FakeCloud:
    token: str = ACCESS_TOKEN
    sent: list[Sent] = field(default_factory=list)
    #: Codes (or "hang") for the next sends, in order, each with a Retry-After or None.
    faults: list[tuple[int | str, float | None]] = field(default_factory=list)
    #: Digits -> the code answered for every send to that person.
    errors_for: dict[str, int] = field(default_factory=dict)
    #: People (digits) whose 24-hour window Meta counts as closed: only templates pass.
    outside_window: set[str] = field(default_factory=set)
    #: Media id -> (mime type, bytes).
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    #: Media URLs fetched, and those refused for want of the token.
    media_fetches: list[str] = field(default_factory=list)
    media_refused: int = 0
    #: Refuse with 130429 what passes this many messages in any second (0: no cap).
    strict_rate: int = 0
    rejected: int = 0
    unauthorized: int = 0
    quality_rating: str = "GREEN"
    base_url: str = ""
    origin: str = ""

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    async def start(self) -> FakeCloud:
        app = web.Application()
        app.router.add_post(f"/{VERSION}/{PHONE_NUMBER_ID}/messages", self._messages)
        app.router.add_get(f"/{VERSION}/{PHONE_NUMBER_ID}", self._number)
        app.router.add_get(f"/{VERSION}/{{media_id}}", self._media_info)
        app.router.add_get("/lookaside/{media_id}", self._media)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.origin = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.origin}/{VERSION}"
        return self

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def host(self) -> str:
        """This server as WHATSAPP_CLOUD_MEDIA_HOSTS names it (host:port)."""
        return self.origin.removeprefix("http://")

    def to(self, address: str) -> list[Sent]:
        return [s for s in self.sent if s.to == address.lstrip("+")]

    # -- answers -------------------------------------------------------------------------

    @staticmethod
    def error(code: int, retry_after: float | None = None, message: str = "") -> web.Response:
        status, title = _ERRORS.get(code, (400, "Error"))
        body = {
            "message": f"({'#' + str(code)}) {message or title}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": message or title},
            "fbtrace_id": "A" + secrets.token_hex(10),
        }
        response = web.json_response({"error": body}, status=status)
        if retry_after is not None:
            # Meta names no wait; a proxy in front of it may.
            response.headers["Retry-After"] = str(int(retry_after))
        return response

    def _authorized(self, request: web.Request) -> bool:
        ok = request.headers.get("Authorization", "") == f"Bearer {self.token}"
        if not ok:
            self.unauthorized += 1
        return ok

    # -- sending -------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self.error(190)
        lost = False
        if self.faults:
            fault, retry_after = self.faults.pop(0)
            if fault == "hang":
                await self._release.wait()
                return self.error(131000)
            lost = fault == "accepted_lost"
            if not lost:
                assert isinstance(fault, int)
                return self.error(fault, retry_after)
        try:
            body = await request.json()
            to = self._check(body)
        except Invalid as exc:
            return self.error(100, message=str(exc))
        except ValueError:
            return self.error(100, message="Invalid JSON")
        if to in self.errors_for:
            return self.error(self.errors_for[to])
        if to in self.outside_window and body["type"] != "template":
            return self.error(131047)
        now = time.monotonic()
        if self.strict_rate and len([s for s in self.sent if now - s.at < 1.0]) >= self.strict_rate:
            self.rejected += 1
            return self.error(130429)
        wamid = "wamid.HBgM" + uuid.uuid4().hex.upper()
        self.sent.append(Sent(to, body, wamid, now))
        if lost:  # accepted (the person sees it), and the answer never comes back
            await self._release.wait()
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": wamid}],
            }
        )

    def _check(self, body: Any) -> str:
        """What Meta refuses with code 100; the recipient's digits otherwise."""
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            raise Invalid("messaging_product must be whatsapp")
        to = str(body.get("to") or "")
        recipient = str(body.get("recipient") or "")
        if recipient and not to:
            # A business-scoped user id (2026), for a person who shows no number.
            if not re.fullmatch(r"[A-Z]{2}\.[0-9A-Za-z]{4,64}", recipient):
                raise Invalid("recipient must be a business-scoped user id")
            to = recipient
        elif not to.isdigit():
            raise Invalid("to must be a phone number (digits)")
        kind = body.get("type")
        content = body.get(kind) if isinstance(kind, str) else None
        if not isinstance(content, dict):
            raise Invalid(f"param {kind} is required")
        if kind == "text":
            text = content.get("body")
            if not isinstance(text, str) or not 1 <= len(text) <= 4096:
                raise Invalid("text.body must be 1 to 4096 characters")
        elif kind == "interactive":
            self._check_interactive(content)
        elif kind == "image":
            if not str(content.get("link", "")).startswith(("http://", "https://")):
                raise Invalid("image.link must be a URL")
            if len(content.get("caption", "")) > 1024:
                raise Invalid("image.caption must be at most 1024 characters")
        elif kind == "template":
            if not content.get("name") or not (content.get("language") or {}).get("code"):
                raise Invalid("template.name and template.language.code are required")
        else:
            raise Invalid(f"type {kind} is not supported here")
        return to

    @staticmethod
    def _check_interactive(content: dict[str, Any]) -> None:
        body = (content.get("body") or {}).get("text")
        if not isinstance(body, str) or not 1 <= len(body) <= 1024:
            raise Invalid("interactive.body.text must be 1 to 1024 characters")
        action = content.get("action") or {}
        if content.get("type") == "button":
            buttons = action.get("buttons") or []
            if not 1 <= len(buttons) <= 3:
                raise Invalid("interactive.action.buttons must have 1 to 3 buttons")
            titles = [b["reply"]["title"] for b in buttons]
            if len(set(titles)) != len(titles):
                raise Invalid("button titles must be unique")
            for b in buttons:
                if b.get("type") != "reply" or not 1 <= len(b["reply"]["title"]) <= 20:
                    raise Invalid("button title must be 1 to 20 characters")
                if not 1 <= len(b["reply"]["id"]) <= 256:
                    raise Invalid("button id must be 1 to 256 characters")
        elif content.get("type") == "list":
            if not 1 <= len(action.get("button", "")) <= 20:
                raise Invalid("list button must be 1 to 20 characters")
            rows = [r for s in action.get("sections") or [] for r in s.get("rows") or []]
            if not 1 <= len(rows) <= 10:
                raise Invalid("a list must have 1 to 10 rows in all")
            for section in action.get("sections") or []:
                if len(section.get("title", "")) > 24:
                    raise Invalid("section title must be at most 24 characters")
            for r in rows:
                if not 1 <= len(r.get("title", "")) <= 24 or not 1 <= len(r.get("id", "")) <= 200:
                    raise Invalid("row title must be 1 to 24 characters, id 1 to 200")
                if len(r.get("description", "")) > 72:
                    raise Invalid("row description must be at most 72 characters")
        else:
            raise Invalid("interactive.type must be button or list here")

    # -- the number, media ---------------------------------------------------------------

    async def _number(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error(190)
        return web.json_response(
            {
                "display_phone_number": DISPLAY_NUMBER,
                "verified_name": "GOMFLOW Test",
                "quality_rating": self.quality_rating,
                "id": PHONE_NUMBER_ID,
            }
        )

    async def _media_info(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error(190)
        media_id = request.match_info["media_id"]
        if media_id not in self.media:
            return self.error(100, message="Media not found")
        mime, data = self.media[media_id]
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "url": f"{self.origin}/lookaside/{media_id}?ext=1&hash=abc",
                "mime_type": mime,
                "sha256": hashlib.sha256(data).hexdigest(),
                "file_size": str(len(data)),  # Meta sends a string here
                "id": media_id,
            }
        )

    async def _media(self, request: web.Request) -> web.Response:
        self.media_fetches.append(request.path)
        if request.headers.get("Authorization", "") != f"Bearer {self.token}":
            self.media_refused += 1
            return web.Response(status=401, text="Unauthorized")
        mime, data = self.media[request.match_info["media_id"]]
        return web.Response(body=data, content_type=mime)


def cloud_env(fake: FakeCloud, **overrides: Any) -> dict[str, Any]:
    """The WHATSAPP_CLOUD_* settings of a deployment pointed at the fake."""
    values: dict[str, Any] = {
        "enable_whatsapp": True,
        "whatsapp_provider": "cloud",
        "whatsapp_cloud_access_token": ACCESS_TOKEN,
        "whatsapp_cloud_phone_number_id": PHONE_NUMBER_ID,
        "whatsapp_cloud_app_secret": APP_SECRET,
        "whatsapp_cloud_verify_token": VERIFY_TOKEN,
        "whatsapp_cloud_api_base_url": fake.base_url,
        "whatsapp_cloud_media_hosts": fake.host,
        "whatsapp_cloud_timeout_seconds": 1.0,
    }
    return {**values, **overrides}


def cloud_settings(fake: FakeCloud, **overrides: Any) -> Settings:
    """Settings for the adapter on its own (no app), with its own pacing keys."""
    values: dict[str, Any] = {
        "environment": "test",
        "service_secret": SECRET,
        "enable_sandbox": False,
        "queue_name": f"gomflow-test-wac-{secrets.token_hex(4)}",
        **cloud_env(fake),
    }
    return Settings(_env_file=None, **{**values, **overrides})  # type: ignore[call-arg]


def sign(raw: bytes, secret: str = APP_SECRET) -> str:
    """``X-Hub-Signature-256`` as Meta computes it over the raw body."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def run_phone(run: int, n: int) -> str:
    """A valid Philippine mobile number, distinct per run and n (not Twilio's harness's)."""
    return f"+63918{run:04d}{n:03d}"


class CloudHarness:
    """The contract harness: addresses are contacts who wrote in the last 24 hours."""

    name = "whatsapp-cloud"
    #: A send carries no idempotency key (biz_opaque_callback_data only comes back in statuses).
    duplicates_after_lost_answer = 1
    max_text = 4096

    def __init__(self, pool: Any, redis: Any) -> None:
        self._pool = pool
        self._redis = redis
        self._run = secrets.randbelow(10_000)
        self.fake = FakeCloud()
        self._contacts: list[uuid.UUID] = []

    async def start(self) -> Channel:
        await self.fake.start()
        addresses = [self.address(n) for n in [*range(1, 10), 999]]
        self._contacts += await recent_contacts(self._pool, "whatsapp", addresses)
        self.fake.errors_for[self.blocked_address().lstrip("+")] = 131026
        channel = CloudChannel(cloud_settings(self.fake), self._pool, self._redis)
        await channel.start()
        return channel

    def address(self, n: int) -> str:
        return run_phone(self._run, n)

    def blocked_address(self) -> str:
        return run_phone(self._run, 999)

    async def received(self, address: str) -> list[Received]:
        return [
            Received(
                s.address,
                s.text,
                [title for title, _id in s.buttons],
                str(s.body.get("image", {}).get("link", "")),
            )
            for s in self.fake.to(address)
        ]

    async def fail_next(self, fault: Fault, retry_after: float = 2.0) -> None:
        if fault == "rate_limited":
            self.fake.faults.append((130429, retry_after))
        elif fault == "server_error":
            self.fake.faults.append((131000, None))
        elif fault == "accepted_lost":
            self.fake.faults.append(("accepted_lost", None))
        else:
            self.fake.faults.append(("hang", None))

    async def close(self) -> None:
        await self.fake.close()
        await self._pool.execute("DELETE FROM contacts WHERE id = ANY($1::uuid[])", self._contacts)
