"""A fake Graph API (Messenger Send API, Messenger Profile, Meta's CDN) on a loopback socket.

It speaks Graph's wire format: JSON ``POST /v23.0/me/messages`` with the Page token (Bearer
header or ``access_token`` parameter), answers ``{"recipient_id", "message_id"}`` or Graph's
error envelope ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``, and
checks what Meta checks: 2,000 characters of text, 13 quick replies (titles of 20), 3 buttons
per template, 10 carousel elements, the window (a person marked outside it takes only a
MESSAGE_TAG). A test can make the next answers a rate limit (80006, the Page's business
limit, or 613; a wait named only in X-Business-Use-Case-Usage, in whole minutes: Graph sends
no Retry-After), a 5xx, a hang, a send accepted whose answer never comes
(``accepted_lost``), or fix an answer per person (551 unavailable). Everything received is
recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from gomflow_messaging.channels.base import Channel
from gomflow_messaging.channels.messenger.channel import MessengerChannel
from gomflow_messaging.channels.messenger.settings import MessengerSettings
from tests.contract import Fault, Received, recent_contacts

PAGE_TOKEN = "EAAtest" + "x" * 40
APP_SECRET = "test-app-secret-0123456789abcdef"
VERIFY_TOKEN = "test-verify-token"
PAGE_ID = "100000000000001"
VERSION = "v23.0"

FakeFault = Literal[
    "rate_limited", "server_error", "hang", "unavailable", "outside_window", "accepted_lost"
]
MESSAGING_TYPES = {"RESPONSE", "UPDATE", "MESSAGE_TAG"}
TAGS = {"POST_PURCHASE_UPDATE", "CONFIRMED_EVENT_UPDATE", "ACCOUNT_UPDATE", "HUMAN_AGENT"}
# What each fault answers: HTTP status, code, subcode, type, message (as Graph words them).
_ERRORS: dict[str, tuple[int, int, int, str, str]] = {
    # The business (Page) rate limit of the Send API, what a busy Page meets.
    "rate_limited": (
        400,
        80006,
        0,
        "OAuthException",
        "(#80006) There have been too many messages sent to this Page in a short time.",
    ),
    # The older app-level call limit.
    "app_rate_limited": (
        400,
        613,
        0,
        "OAuthException",
        "(#613) Calls to this api have exceeded the rate limit.",
    ),
    "server_error": (500, 2, 0, "OAuthException", "An unexpected error has occurred."),
    "unavailable": (
        400,
        551,
        1545041,
        "OAuthException",
        "(#551) This person isn't available right now.",
    ),
    "outside_window": (
        400,
        10,
        2018278,
        "OAuthException",
        "(#10) This message is sent outside of allowed window.",
    ),
    "bad_token": (401, 190, 0, "OAuthException", "Invalid OAuth access token."),
}


class Invalid(Exception):
    """A request Graph refuses with code 100 (invalid parameter)."""


@dataclass
class Sent:
    """One Send API request as Graph got it."""

    psid: str
    body: dict[str, Any]
    message_id: str

    @property
    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = self.body["message"]
        return message

    @property
    def text(self) -> str:
        if "text" in self.message:
            return str(self.message["text"])
        return str(self.payload.get("text", ""))

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = self.message.get("attachment", {}).get("payload", {})
        return payload

    @property
    def template(self) -> str:
        return str(self.payload.get("template_type", ""))

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """A template's buttons (a carousel's, card after card), then the quick replies."""
        found: list[dict[str, Any]] = list(self.payload.get("buttons", []))
        for element in self.payload.get("elements", []):
            found += element.get("buttons", [])
        return found + list(self.message.get("quick_replies", []))


@dataclass
class FakeGraph:
    token: str = PAGE_TOKEN
    sent: list[Sent] = field(default_factory=list)
    #: Faults for the next Send API requests, in order: (kind, retry_after or None).
    faults: list[tuple[str, float | None]] = field(default_factory=list)
    #: PSID -> the fault answered for every send to that person.
    errors_for: dict[str, str] = field(default_factory=dict)
    #: People whose 24-hour window is closed: only MESSAGE_TAG reaches them.
    outside_window: set[str] = field(default_factory=set)
    #: CDN path -> (content type, bytes); path -> where it redirects.
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    media_redirects: dict[str, str] = field(default_factory=dict)
    #: CDN paths requested, in order.
    media_fetches: list[str] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    unauthorized: int = 0
    me_calls: int = 0
    base_url: str = ""
    origin: str = ""

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    async def start(self) -> FakeGraph:
        app = web.Application()
        app.router.add_post(f"/{VERSION}/me/messages", self._messages)
        app.router.add_get(f"/{VERSION}/me", self._me)
        app.router.add_post(f"/{VERSION}/me/messenger_profile", self._profile_set)
        app.router.add_get(f"/{VERSION}/me/messenger_profile", self._profile_get)
        app.router.add_delete(f"/{VERSION}/me/messenger_profile", self._profile_delete)
        app.router.add_get("/cdn/{name}", self._media)
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
        """This server as MESSENGER_ATTACHMENT_HOSTS names it (host:port)."""
        return self.origin.removeprefix("http://")

    def to(self, psid: str) -> list[Sent]:
        return [s for s in self.sent if s.psid == psid]

    # -- answers -------------------------------------------------------------------------

    @staticmethod
    def error(kind: str, retry_after: float | None = None) -> web.Response:
        status, code, subcode, type_, message = _ERRORS[kind]
        body: dict[str, Any] = {
            "message": message,
            "type": type_,
            "code": code,
            "fbtrace_id": "A" + secrets.token_hex(10),
        }
        if subcode:
            body["error_subcode"] = subcode
        if kind == "server_error":
            body["is_transient"] = True
        response = web.json_response({"error": body}, status=status)
        if kind.endswith("rate_limited") and retry_after is not None:
            # Meta names its wait only here, in whole minutes; Graph sends no Retry-After.
            usage = {
                PAGE_ID: [
                    {
                        "type": "messenger",
                        "call_count": 100,
                        "total_cputime": 10,
                        "total_time": 10,
                        "estimated_time_to_regain_access": math.ceil(retry_after / 60),
                    }
                ]
            }
            response.headers["X-Business-Use-Case-Usage"] = json.dumps(usage)
        return response

    @staticmethod
    def invalid(message: str) -> web.Response:
        return web.json_response(
            {
                "error": {
                    "message": f"(#100) {message}",
                    "type": "OAuthException",
                    "code": 100,
                    "fbtrace_id": "A" + secrets.token_hex(10),
                }
            },
            status=400,
        )

    def _authorized(self, request: web.Request) -> bool:
        bearer = request.headers.get("Authorization", "")
        ok = bearer == f"Bearer {self.token}" or request.query.get("access_token") == self.token
        if not ok:
            self.unauthorized += 1
        return ok

    # -- the Send API --------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self.error("bad_token")
        lost = False
        if self.faults:
            kind, retry_after = self.faults.pop(0)
            if kind == "hang":
                await self._release.wait()
                return self.error("server_error")
            lost = kind == "accepted_lost"
            if not lost:
                return self.error(kind, retry_after)
        try:
            body = await request.json()
            psid = self._check(body)
        except Invalid as exc:
            return self.invalid(str(exc))
        except ValueError:
            return self.invalid("Invalid JSON")
        if psid in self.errors_for:
            return self.error(self.errors_for[psid])
        if psid in self.outside_window and body.get("messaging_type") != "MESSAGE_TAG":
            return self.error("outside_window")
        message_id = "m_" + uuid.uuid4().hex
        self.sent.append(Sent(psid, body, message_id))
        if lost:  # accepted, and the answer never comes back
            await self._release.wait()
        return web.json_response({"recipient_id": psid, "message_id": message_id})

    def _check(self, body: Any) -> str:
        """What Graph refuses with code 100; the recipient's PSID otherwise."""
        if not isinstance(body, dict):
            raise Invalid("param recipient must be non-empty.")
        psid = str((body.get("recipient") or {}).get("id") or "")
        if not psid.isdigit():
            raise Invalid("param recipient must be non-empty.")
        kind = body.get("messaging_type")
        if kind not in MESSAGING_TYPES:
            raise Invalid("param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}")
        if kind == "MESSAGE_TAG" and body.get("tag") not in TAGS:
            raise Invalid("param tag must be a valid message tag")
        message = body.get("message")
        if not isinstance(message, dict) or ("text" in message) == ("attachment" in message):
            raise Invalid("param message must have exactly one of text or attachment")
        if "text" in message:
            text = message["text"]
            if not isinstance(text, str) or not text:
                raise Invalid("param message[text] must be a non-empty UTF-8 encoded string")
            if len(text) > 2000:
                raise Invalid("Length of param message[text] must be less than or equal to 2000")
        else:
            self._check_attachment(message["attachment"])
        quick = message.get("quick_replies", [])
        if len(quick) > 13:
            raise Invalid("param message[quick_replies] must have at most 13 elements")
        for reply in quick:
            self._check_title(reply.get("title", ""), "quick_replies[title]")
            if len(reply.get("payload", "")) > 1000:
                raise Invalid("param quick_replies[payload] must be at most 1000 characters")
        return psid

    def _check_attachment(self, attachment: dict[str, Any]) -> None:
        payload = attachment.get("payload") or {}
        if attachment.get("type") == "image":
            if not str(payload.get("url", "")).startswith(("http://", "https://")):
                raise Invalid("param message[attachment][payload][url] must be a URL")
            return
        if attachment.get("type") != "template":
            raise Invalid("param message[attachment][type] is not supported")
        template = payload.get("template_type")
        if template == "button":
            text = payload.get("text", "")
            if not text or len(text) > 640:
                raise Invalid("param payload[text] must be 1 to 640 characters")
            self._check_buttons(payload.get("buttons", []), at_least=1)
        elif template == "generic":
            elements = payload.get("elements", [])
            if not 1 <= len(elements) <= 10:
                raise Invalid("param payload[elements] must have 1 to 10 elements")
            for element in elements:
                if not element.get("title") or len(element["title"]) > 80:
                    raise Invalid("param elements[title] must be 1 to 80 characters")
                if len(element.get("subtitle", "")) > 80:
                    raise Invalid("param elements[subtitle] must be at most 80 characters")
                self._check_buttons(element.get("buttons", []), at_least=0)
        else:
            raise Invalid("param payload[template_type] is not supported")

    def _check_buttons(self, buttons: list[dict[str, Any]], *, at_least: int) -> None:
        if not at_least <= len(buttons) <= 3:
            raise Invalid("param buttons must have 1 to 3 elements")
        for button in buttons:
            self._check_title(button.get("title", ""), "buttons[title]")
            if button.get("type") == "postback" and not 0 < len(button.get("payload", "")) <= 1000:
                raise Invalid("param buttons[payload] must be 1 to 1000 characters")
            if button.get("type") == "web_url" and not button.get("url"):
                raise Invalid("param buttons[url] must be a URL")

    @staticmethod
    def _check_title(title: str, name: str) -> None:
        if not title or len(title) > 20:
            raise Invalid(f"param {name} must be 1 to 20 characters")

    # -- the Page, its profile, the CDN --------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error("bad_token")
        self.me_calls += 1
        return web.json_response({"id": PAGE_ID, "name": "GOMFLOW Test Page"})

    async def _profile_set(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error("bad_token")
        body = await request.json()
        for greeting in body.get("greeting", []):
            if len(greeting.get("text", "")) > 160:
                return self.invalid("param greeting[text] must be at most 160 characters")
        if body.get("greeting") and not any(g.get("locale") == "default" for g in body["greeting"]):
            return self.invalid("param greeting must include the default locale")
        menus = body.get("persistent_menu", [])
        if menus and "get_started" not in {**self.profile, **body}:
            return self.invalid("Persistent menu requires the get started button to be set")
        if menus and not any(m.get("locale") == "default" for m in menus):
            return self.invalid("param persistent_menu must include the default locale")
        for menu in menus:
            actions = menu.get("call_to_actions", [])
            if not 1 <= len(actions) <= 20:
                return self.invalid("param call_to_actions must have 1 to 20 elements")
            for action in actions:
                if not action.get("title") or len(action["title"]) > 30:
                    return self.invalid("param call_to_actions[title] must be 1 to 30 characters")
        self.profile.update(body)
        return web.json_response({"result": "success"})

    async def _profile_get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error("bad_token")
        fields = [f for f in request.query.get("fields", "").split(",") if f]
        if not fields:
            return self.invalid("param fields is required")
        found = {f: self.profile[f] for f in fields if f in self.profile}
        return web.json_response({"data": [found] if found else []})

    async def _profile_delete(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error("bad_token")
        body = await request.json()
        for name in body.get("fields", []):
            self.profile.pop(name, None)
        return web.json_response({"result": "success"})

    async def _media(self, request: web.Request) -> web.Response:
        self.media_fetches.append(request.path)
        if request.path in self.media_redirects:
            raise web.HTTPFound(self.media_redirects[request.path])
        found = self.media.get(request.path)
        if found is None:
            return web.Response(status=404, text="Not Found")
        content_type, data = found
        return web.Response(body=data, content_type=content_type)


def messenger_env(base_url: str, **overrides: Any) -> dict[str, Any]:
    """The MESSENGER_* settings of a deployment pointed at the fake, quick to time out."""
    values: dict[str, Any] = {
        "enable_messenger": True,
        "messenger_page_access_token": PAGE_TOKEN,
        "messenger_app_secret": APP_SECRET,
        "messenger_verify_token": VERIFY_TOKEN,
        "messenger_api_base_url": base_url,
        "messenger_timeout_seconds": 1.0,
    }
    return {**values, **overrides}


def messenger_settings(base_url: str, **overrides: Any) -> MessengerSettings:
    """Messenger's settings alone, for a channel without an app."""
    return MessengerSettings(**messenger_env(base_url, **overrides))


def sign(raw: bytes, secret: str = APP_SECRET) -> str:
    """``X-Hub-Signature-256`` as Meta computes it over the raw body."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def page_event(*messaging: dict[str, Any]) -> dict[str, Any]:
    """A webhook body: one Page entry holding these ``messaging`` events."""
    now = int(time.time() * 1000)
    return {
        "object": "page",
        "entry": [{"id": PAGE_ID, "time": now, "messaging": list(messaging)}],
    }


def run_psid(run: int, n: int) -> str:
    """A PSID, distinct per run and n."""
    return f"2{run:06d}{n:09d}"


def received(sent: Sent) -> Received:
    """One request reduced to what every platform shares."""
    if sent.payload.get("url"):
        return Received(sent.psid, "", [], str(sent.payload["url"]))
    return Received(sent.psid, sent.text, [str(b["title"]) for b in sent.buttons])


class MessengerHarness:
    #: Graph names a rate limit's wait in whole minutes, never in seconds.
    retry_after_unit = 60.0
    """The contract harness: addresses are people who wrote in the last 24 hours."""

    name = "messenger"
    garbage = ("12ab5", "1234", "-12345")  # not an address on this platform
    duplicates_after_lost_answer = 1  # no idempotency key in the Send API
    max_text = 2000

    def __init__(self, pool: Any, redis: Any) -> None:
        self._pool = pool
        self._redis = redis
        self._run = secrets.randbelow(1_000_000)
        self.fake = FakeGraph()
        self._contacts: list[uuid.UUID] = []

    async def start(self) -> Channel:
        await self.fake.start()
        addresses = [self.address(n) for n in [*range(1, 10), 999]]
        self._contacts += await recent_contacts(self._pool, "messenger", addresses)
        self.fake.errors_for[self.blocked_address()] = "unavailable"
        channel = MessengerChannel(
            messenger_settings(self.fake.base_url),
            self._pool,
            self._redis,
            # Its own pacing keys: a rate limit in one test must not slow the next.
            queue_name=f"gomflow-test-fb-{secrets.token_hex(4)}",
            max_file_size=1_000_000,
        )
        await channel.start()
        return channel

    def address(self, n: int) -> str:
        return run_psid(self._run, n)

    def blocked_address(self) -> str:
        return run_psid(self._run, 999)

    async def received(self, address: str) -> list[Received]:
        return [received(s) for s in self.fake.to(address)]

    async def fail_next(self, fault: Fault, retry_after: float = 2.0) -> None:
        # Graph names a wait only in whole minutes (X-Business-Use-Case-Usage).
        self.fake.faults.append((fault, retry_after if fault == "rate_limited" else None))

    async def close(self) -> None:
        await self.fake.close()
        await self._pool.execute("DELETE FROM contacts WHERE id = ANY($1::uuid[])", self._contacts)
