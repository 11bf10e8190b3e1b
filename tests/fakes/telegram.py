"""A fake Telegram Bot API on a real loopback socket, and the contract harness that uses it.

It speaks the Bot API envelope (``{"ok": true, "result": ...}`` or ``{"ok": false,
"error_code", "description", "parameters"}``), reads aiogram's form-encoded, multipart or
JSON requests, checks what Telegram checks (token, HTML entities, 4096 UTF-16 units,
64-byte callback data, caption length) and records every request. A test can make the
next answers a 429 with retry_after (and, as Telegram does, every send to that chat within
the wait gets another 429, so a retry that comes early shows as one more refusal), a 403
(blocked), a 5xx, an unreadable body, a group migration, or a hang; it can also enforce a
cap of N accepted sends in any one-second sliding window (not per calendar second: that is
what Telegram counts), for pacing.

A reply carried in the webhook's own response (``{"method": "sendMessage", ...}``) meets the
same rules through `webhook_answer`: Telegram drops an invalid one silently, so the fake
records it in ``dropped_answers``, and the ``fake_telegram`` fixture fails a test that left
one there (``running_app`` hands every answer of /webhook/telegram to the fake it targets).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import math
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from gomflow_messaging.channels.base import Channel
from tests.contract import Fault, Received

FakeFault = Literal[
    "rate_limited",
    "server_error",
    "hang",
    "late",
    "accepted_lost",
    "blocked",
    "chat_not_found",
    "migrated",
    "garbage",
]

# Fields aiogram sends as JSON text inside a form.
_JSON_FIELDS = {
    "reply_markup",
    "commands",
    "scope",
    "results",
    "allowed_updates",
    "entities",
    "caption_entities",
    "link_preview_options",
    "reply_parameters",
    "button",
    "media",
}
# BotCommandScope types and the fields each takes.
_SCOPE_FIELDS: dict[str, set[str]] = {
    "default": set(),
    "all_private_chats": set(),
    "all_group_chats": set(),
    "all_chat_administrators": set(),
    "chat": {"chat_id"},
    "chat_administrators": {"chat_id"},
    "chat_member": {"chat_id", "user_id"},
}
_SENDS = {"sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup"}
_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
}
_TAG = re.compile(r"</?([a-zA-Z-]+)(?:\s[^<>]*)?>")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


#: Fakes started in this process, by base URL (see `FakeTelegram.at`).
_RUNNING: dict[str, FakeTelegram] = {}


def new_token() -> str:
    """A token shaped like Telegram's, clearly not real; a distinct bot id per call."""
    return f"{secrets.randbelow(10**9) + 10**9}:TEST-token-not-real"


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class ApiFailure(Exception):
    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def visible_text(text: str, parse_mode: str | None) -> str:
    """What the user sees; raises ApiFailure where Telegram cannot parse the entities."""
    if (parse_mode or "").upper() != "HTML":
        return text
    position = 0
    open_tags: list[str] = []
    for match in _TAG.finditer(text):
        _check_plain(text[position : match.start()], position)
        name = match.group(1).lower()
        if name not in _TAGS:
            raise ApiFailure(
                400,
                f"Bad Request: can't parse entities: Unsupported start tag "
                f'"{match.group(1)}" at byte offset {match.start()}',
            )
        if not match.group(0).startswith("</"):
            open_tags.append(name)
        else:
            expected = open_tags.pop() if open_tags else ""
            if expected != name:
                raise ApiFailure(
                    400,
                    "Bad Request: can't parse entities: Unmatched end tag at byte offset "
                    f'{match.start()}, expected "</{expected}>", found "</{name}>"',
                )
        position = match.end()
    _check_plain(text[position:], position)
    if open_tags:
        raise ApiFailure(
            400,
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag "
            f'"{open_tags[-1]}"',
        )
    return html.unescape(_TAG.sub("", text))


def _check_plain(segment: str, offset: int) -> None:
    stripped = _ENTITY.sub("", segment)
    for char in "<>&":
        if char in stripped:
            raise ApiFailure(
                400,
                "Bad Request: can't parse entities: Unexpected "
                f'"{char}" at byte offset {offset + segment.find(char)}',
            )


@dataclass
class ApiCall:
    """One request the fake received, and how it answered."""

    method: str
    token: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    content_type: str = ""
    status: int = 0
    result: Any = None
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> str:
        return str(self.params.get("chat_id", ""))

    @property
    def text(self) -> str:
        """The text as the user sees it (entities parsed)."""
        raw = self.params.get("text", self.params.get("caption", "")) or ""
        try:
            return visible_text(str(raw), self.params.get("parse_mode"))
        except ApiFailure:
            return str(raw)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        markup = self.params.get("reply_markup") or {}
        return [b for row in markup.get("inline_keyboard", []) for b in row]


@dataclass
class _Planned:
    kind: FakeFault
    retry_after: int = 2
    method: str | None = None
    chat_id: str | None = None
    migrate_to: int = 0
    #: Matching requests still to let through before this fault applies.
    after: int = 0


class FakeTelegram:
    """The Bot API of one bot, on 127.0.0.1 and a free port."""

    def __init__(self, token: str | None = None, *, username: str = "gomflow_test_bot") -> None:
        self.token = token or new_token()
        self.bot_id = int(self.token.split(":")[0])
        self.username = username
        self.calls: list[ApiCall] = []
        self.blocked: set[str] = set()
        #: People who never pressed Start: a bot cannot write to them first.
        self.never_started: set[str] = set()
        self.unknown_chats: set[str] = set()
        self.migrated: dict[str, int] = {}
        self.files: dict[str, bytes] = {}
        #: File path -> where its download redirects (Telegram's file server never does).
        self.file_redirects: dict[str, str] = {}
        #: getFile names no file_size, and the download comes chunked, without a length.
        self.hide_file_sizes = False
        self.downloads: list[str] = []
        self.webhook: dict[str, Any] = {}
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        #: When set, a send that would make more than this many accepted sends within ANY
        #: one-second window (sliding, not per calendar second) is answered 429.
        self.cap_per_second: float | None = None
        #: Telegram's limits in one chat (PEERS.md): about one message a second in a private
        #: chat, a short burst tolerated; 20 a minute in a group. (window seconds, at most N
        #: accepted sends in any such sliding window); a send past one is answered 429.
        self.chat_windows: list[tuple[float, int]] = [(1.0, 3), (10.0, 12)]
        self.group_windows: list[tuple[float, int]] = [(60.0, 20)]
        self._chat_sends: dict[str, deque[float]] = {}
        self._faults: list[_Planned] = []
        self._outage: tuple[FakeFault, float] | None = None
        #: chat id -> when the flood wait of a planned 429 ends (monotonic clock).
        self._flood_until: dict[str, float] = {}
        self._recent_sends: deque[float] = deque()
        self._message_ids = itertools.count(1000)
        #: Replies carried in webhook responses, as the Bot API took them (status 200) or
        #: dropped them (anything else; Telegram tells nobody).
        self.webhook_answers: list[ApiCall] = []
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.changed = asyncio.Event()

    # -- control -------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        if self._runner is not None:
            return self
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        _RUNNING[self.url] = self
        return self

    @staticmethod
    def at(url: str) -> FakeTelegram | None:
        """The running fake whose base URL this is (a service's TELEGRAM_API_BASE_URL)."""
        return _RUNNING.get(url.rstrip("/"))

    def webhook_answer(self, body: dict[str, Any]) -> ApiCall:
        """Run a reply carried in a webhook response through the Bot API's rules, as Telegram
        does (the same checks as an API call: the method, text length, HTML entities,
        markup, callback data). An invalid one is dropped: status not 200, nothing sent."""
        params = {k: v for k, v in body.items() if k != "method"}
        call = ApiCall(str(body.get("method", "")), self.token, params, content_type="webhook")
        try:
            handler = getattr(self, f"_m_{call.method}", None)
            if handler is None:
                raise ApiFailure(404, "Not Found: method not found")
            call.result = handler(params, {})
            call.status = 200
        except ApiFailure as failure:
            call.status, call.result = failure.status, failure.description
        self.webhook_answers.append(call)
        self.changed.set()
        return call

    @property
    def dropped_answers(self) -> list[ApiCall]:
        return [c for c in self.webhook_answers if not c.ok]

    async def close(self) -> None:
        _RUNNING.pop(self.url, None)
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_next(
        self,
        kind: FakeFault,
        count: int = 1,
        *,
        retry_after: float = 2,
        method: str | None = None,
        chat_id: str | int | None = None,
        migrate_to: int = 0,
        after: int = 0,
    ) -> None:
        """Answer ``count`` matching requests with this fault, after letting ``after`` pass
        (``late``: the request is accepted, and answered ``retry_after`` seconds later;
        ``accepted_lost``: accepted, and the answer never comes back)."""
        for _ in range(count):
            self._faults.append(
                _Planned(
                    kind,
                    max(1, math.ceil(retry_after)),
                    method,
                    None if chat_id is None else str(chat_id),
                    migrate_to,
                    after,
                )
            )

    def outage(self, kind: FakeFault, seconds: float) -> None:
        """Answer every request with this fault for ``seconds`` (a hang lasts until then and
        ends in a 502: the request is never accepted; ``accepted_lost``: every send is
        accepted, and its answer held until then, so the sender times out)."""
        self._outage = (kind, time.monotonic() + seconds)

    def requests(self, method: str | None = None) -> list[ApiCall]:
        return [c for c in self.calls if method is None or c.method == method]

    def sent(self, chat_id: str | int | None = None) -> list[ApiCall]:
        """Messages the platform accepted (sendMessage, sendPhoto ...), in order."""
        return [
            c
            for c in self.calls
            if c.method in _SENDS and c.ok and (chat_id is None or c.chat_id == str(chat_id))
        ]

    def texts(self, chat_id: str | int | None = None) -> list[str]:
        return [c.text for c in self.sent(chat_id)]

    async def wait_for(self, check: Any, timeout: float = 10.0) -> Any:
        """Wait until ``check()`` is truthy, woken by each request (no fixed sleeps)."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"fake Telegram: condition not met; last {value!r}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    # -- HTTP ----------------------------------------------------------------------------

    async def _read(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        if request.content_type == "application/json":
            body = await request.json() if request.can_read_body else {}
            return dict(body), files
        if request.method == "GET":
            return dict(request.query), files
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
                continue
            text = str(value)
            if key in _JSON_FIELDS:
                params[key] = json.loads(text)
            else:
                params[key] = text
        return params, files

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        token = request.match_info["token"]
        params, files = await self._read(request)
        call = ApiCall(method, token, params, files, request.content_type)
        self.calls.append(call)
        lost_until = 0.0
        try:
            if token != self.token:
                raise ApiFailure(401, "Unauthorized")
            if self._outage is not None and time.monotonic() < self._outage[1]:
                kind, until = self._outage
                if kind == "accepted_lost":
                    lost_until = until if method in _SENDS else 0.0
                elif kind == "hang":
                    await asyncio.sleep(until - time.monotonic())
                    raise ApiFailure(502, "Bad Gateway")
                else:
                    self._raise_fault(_Planned(kind))
            flood = self._flood_until.get(call.chat_id, 0.0) - time.monotonic()
            if method in _SENDS and flood > 0:
                retry = math.ceil(flood)
                raise ApiFailure(
                    429, f"Too Many Requests: retry after {retry}", {"retry_after": retry}
                )
            fault = self._take_fault(method, call.chat_id)
            if fault is not None:
                if fault.kind == "rate_limited" and method in _SENDS:
                    self._flood_until[call.chat_id] = time.monotonic() + fault.retry_after
                if fault.kind == "hang":
                    await self._release.wait()
                    raise ApiFailure(502, "Bad Gateway")
                if fault.kind == "garbage":
                    call.status = 502
                    return web.Response(
                        status=502, text="<html>502 Bad Gateway</html>", content_type="text/html"
                    )
                if fault.kind not in ("late", "accepted_lost"):
                    self._raise_fault(fault)
            if method in _SENDS:
                self._check_chat(call.chat_id)
                self._check_cap()
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                raise ApiFailure(404, "Not Found: method not found")
            result = handler(params, files)
            if fault is not None and fault.kind == "late":
                # Accepted (the person sees it), but the answer is lost on the way back.
                call.status, call.result = 200, result
                await asyncio.sleep(fault.retry_after)
            elif (fault is not None and fault.kind == "accepted_lost") or lost_until:
                call.status, call.result = 200, result
                self.changed.set()
                if lost_until:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._release.wait(), lost_until - time.monotonic())
                else:
                    await self._release.wait()
        except ApiFailure as failure:
            call.status = failure.status
            call.result = {"description": failure.description, **(failure.parameters or {})}
            body: dict[str, Any] = {
                "ok": False,
                "error_code": failure.status,
                "description": failure.description,
            }
            if failure.parameters:
                body["parameters"] = failure.parameters
            return self._answer(failure.status, body)
        call.status = 200
        call.result = result
        return self._answer(200, {"ok": True, "result": result})

    def _answer(self, status: int, body: dict[str, Any]) -> web.Response:
        self.changed.set()
        return web.json_response(body, status=status)

    def _take_fault(self, method: str, chat_id: str) -> _Planned | None:
        for index, fault in enumerate(self._faults):
            if fault.method not in (None, method):
                continue
            if fault.chat_id not in (None, chat_id):
                continue
            if fault.after > 0:
                fault.after -= 1
                return None
            return self._faults.pop(index)
        return None

    def _raise_fault(self, fault: _Planned) -> None:
        if fault.kind == "rate_limited":
            raise ApiFailure(
                429,
                f"Too Many Requests: retry after {fault.retry_after}",
                {"retry_after": fault.retry_after},
            )
        if fault.kind == "server_error":
            raise ApiFailure(500, "Internal Server Error")
        if fault.kind == "blocked":
            raise ApiFailure(403, "Forbidden: bot was blocked by the user")
        if fault.kind == "chat_not_found":
            raise ApiFailure(400, "Bad Request: chat not found")
        if fault.kind == "migrated":
            raise ApiFailure(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": fault.migrate_to},
            )
        raise AssertionError(fault.kind)

    def _check_chat(self, chat_id: str) -> None:
        """Telegram's per-chat limits: a send past one is a 429 naming when a place frees."""
        group = chat_id.startswith("-")
        windows = self.group_windows if group else self.chat_windows
        if not windows or not chat_id:
            return
        now = time.monotonic()
        sends = self._chat_sends.setdefault(chat_id, deque())
        longest = max(w for w, _ in windows)
        while sends and now - sends[0] >= longest:
            sends.popleft()
        for window, most in windows:
            inside = [t for t in sends if now - t < window]
            if len(inside) >= most:
                retry = max(1, math.ceil(window - (now - inside[-most])))
                raise ApiFailure(
                    429, f"Too Many Requests: retry after {retry}", {"retry_after": retry}
                )
        sends.append(now)

    def _check_cap(self) -> None:
        if self.cap_per_second is None:
            return
        now = time.monotonic()
        while self._recent_sends and now - self._recent_sends[0] >= 1.0:
            self._recent_sends.popleft()
        if len(self._recent_sends) >= self.cap_per_second:
            # When the oldest send in the window leaves it, in whole seconds as Telegram says.
            retry = max(1, math.ceil(1.0 - (now - self._recent_sends[0])))
            raise ApiFailure(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})
        self._recent_sends.append(now)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        path = request.match_info["path"]
        self.downloads.append(path)
        if path in self.file_redirects:
            raise web.HTTPFound(self.file_redirects[path])
        data = self.files.get(path)
        if data is None:
            return web.Response(status=404, text="Not Found")
        if not self.hide_file_sizes:
            return web.Response(body=data, content_type="application/octet-stream")
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(data), 65536):
            await response.write(data[start : start + 65536])
        await response.write_eof()
        return response

    # -- methods -------------------------------------------------------------------------

    def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        raw = str(params.get("chat_id", ""))
        if not raw:
            raise ApiFailure(400, "Bad Request: chat_id is empty")
        if raw in self.blocked:
            raise ApiFailure(403, "Forbidden: bot was blocked by the user")
        if raw in self.never_started:
            raise ApiFailure(403, "Forbidden: bot can't initiate conversation with a user")
        if raw in self.unknown_chats:
            raise ApiFailure(400, "Bad Request: chat not found")
        if raw in self.migrated:
            raise ApiFailure(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self.migrated[raw]},
            )
        if raw.startswith("@"):
            return {"id": -1001000000001, "type": "channel", "title": raw[1:]}
        chat_id = int(raw)
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "Buyer"}
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": "A group"}

    def _markup(self, params: dict[str, Any]) -> None:
        markup = params.get("reply_markup")
        if not markup:
            return
        for row in markup.get("inline_keyboard", []):
            for b in row:
                if not b.get("text"):
                    raise ApiFailure(400, "Bad Request: text buttons are unallowed")
                data = b.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= 64:
                    raise ApiFailure(400, "Bad Request: BUTTON_DATA_INVALID")
                if data is None and not b.get("url") and "switch_inline_query" not in b:
                    raise ApiFailure(400, "Bad Request: can't parse inline keyboard button")

    def _message(self, chat: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": self.bot_id, "is_bot": True, "first_name": "GOMFLOW"},
            **extra,
        }

    def _m_sendMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat = self._chat(params)
        text = visible_text(str(params.get("text", "")), params.get("parse_mode"))
        if not text.strip():
            raise ApiFailure(400, "Bad Request: message text is empty")
        if utf16_len(text) > 4096:
            raise ApiFailure(400, "Bad Request: message is too long")
        self._markup(params)
        return self._message(chat, text=text)

    def _m_sendPhoto(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat = self._chat(params)
        caption = visible_text(str(params.get("caption", "") or ""), params.get("parse_mode"))
        if utf16_len(caption) > 1024:
            raise ApiFailure(400, "Bad Request: message caption is too long")
        if not params.get("photo") and "photo" not in files:
            raise ApiFailure(400, "Bad Request: there is no photo in the request")
        self._markup(params)
        photo = [{"file_id": "photo-1", "file_unique_id": "p1", "width": 640, "height": 480}]
        extra: dict[str, Any] = {"photo": photo}
        if caption:
            extra["caption"] = caption
        return self._message(chat, **extra)

    def _m_editMessageText(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        text = visible_text(str(params.get("text", "")), params.get("parse_mode"))
        if "inline_message_id" in params:
            return True
        chat = self._chat(params)
        self._markup(params)
        return self._message(chat, text=text)

    def _m_deleteMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self._chat(params)
        return True

    def _m_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if not params.get("callback_query_id"):
            raise ApiFailure(400, "Bad Request: query is too old or query ID is invalid")
        return True

    def _m_answerInlineQuery(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if not params.get("inline_query_id"):
            raise ApiFailure(400, "Bad Request: query is too old or query ID is invalid")
        results = params.get("results")
        if not isinstance(results, list) or len(results) > 50:
            raise ApiFailure(400, "Bad Request: RESULTS_TOO_MUCH")
        for result in results:
            if not 1 <= len(str(result.get("id", "")).encode()) <= 64:
                raise ApiFailure(400, "Bad Request: RESULT_ID_INVALID")
        return True

    def _m_setWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        url = str(params.get("url", ""))
        if url and not url.startswith("https://"):
            raise ApiFailure(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        secret = str(params.get("secret_token", ""))
        if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ApiFailure(400, "Bad Request: secret token contains unallowed characters")
        self.webhook = {
            "url": url,
            "secret_token": secret,
            "allowed_updates": params.get("allowed_updates"),
            "drop_pending_updates": params.get("drop_pending_updates"),
        }
        return True

    def _m_getWebhookInfo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        info: dict[str, Any] = {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }
        if self.webhook.get("allowed_updates"):
            info["allowed_updates"] = self.webhook["allowed_updates"]
            info["max_connections"] = 40
        return info

    def _m_deleteWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.webhook = {}
        return True

    def _m_getMe(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "GOMFLOW Test",
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": True,
        }

    def _m_setMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiFailure(400, "Bad Request: BOT_COMMANDS_TOO_MUCH")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise ApiFailure(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise ApiFailure(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(params)
        self.commands[key] = commands
        return True

    def _m_deleteMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.commands.pop(self._commands_key(params), None)
        return True

    def _m_getMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self.commands.get(self._commands_key(params), [])

    def _commands_key(self, params: dict[str, Any]) -> tuple[str, str]:
        """A command list's (scope, language), checked as the Bot API checks them."""
        language = str(params.get("language_code", "") or "")
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise ApiFailure(400, "Bad Request: LANG_CODE_INVALID")
        scope = params.get("scope") or {"type": "default"}
        if not isinstance(scope, dict) or scope.get("type") not in _SCOPE_FIELDS:
            raise ApiFailure(400, "Bad Request: unsupported bot command scope type")
        needed = _SCOPE_FIELDS[scope["type"]]
        if set(scope) - needed - {"type"}:
            raise ApiFailure(400, "Bad Request: can't parse BotCommandScope JSON object")
        if "chat_id" in needed:
            chat = self._chat(scope)  # an unknown chat: "chat not found", as for a send
            scope = {**scope, "chat_id": chat["id"]}
            if scope["type"] == "chat_member" and not str(scope.get("user_id", "")).isdigit():
                raise ApiFailure(400, "Bad Request: user not found")
        return json.dumps(scope, sort_keys=True), language

    def commands_for(
        self, scope: dict[str, Any], language: str = ""
    ) -> list[dict[str, Any]] | None:
        """The command list set for a scope and language, or None when there is none."""
        return self.commands.get((json.dumps(scope, sort_keys=True), language))

    def _m_getFile(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        file_id = str(params.get("file_id", ""))
        # A stored file is found by its name without extension: photos/<id>.jpg, docs/<id>.pdf
        path = next(
            (p for p in self.files if p.rsplit("/", 1)[-1].rsplit(".", 1)[0] == file_id),
            f"photos/{file_id}.jpg",
        )
        if path not in self.files and path not in self.file_redirects:
            raise ApiFailure(400, "Bad Request: invalid file_id")
        found = {"file_id": file_id, "file_unique_id": f"u-{file_id}", "file_path": path}
        if not self.hide_file_sizes and path in self.files:
            found["file_size"] = len(self.files[path])
        return found


class TelegramHarness:
    """The contract suite's view of Telegram: the adapter against FakeTelegram."""

    name = "telegram"
    garbage = ("abc", "12ab", "@", "1.5")  # not an address on this platform
    duplicates_after_lost_answer = 1  # the Bot API has no idempotency key
    max_text = 4096

    def __init__(self, pool: Any, redis: Any) -> None:
        self._pool = pool
        self._redis = redis
        self.fake = FakeTelegram()

    async def start(self) -> Channel:
        from gomflow_messaging.channels.telegram.channel import TelegramChannel

        await self.fake.start()
        channel = TelegramChannel(
            token=self.fake.token,
            api_base_url=self.fake.url,
            pool=self._pool,
            redis=self._redis,
            request_timeout=1.0,
            pace_max_wait=5.0,
        )
        await channel.start()
        return channel

    def address(self, n: int) -> str:
        return str(700_000_000 + n)

    def blocked_address(self) -> str:
        self.fake.blocked.add("700000666")
        return "700000666"

    async def received(self, address: str) -> list[Received]:
        return [
            Received(
                address=call.chat_id,
                text=call.text,
                buttons=[b["text"] for b in call.buttons],
                image_url=str(call.params.get("photo", "")),
            )
            for call in self.fake.sent(address)
        ]

    async def fail_next(self, fault: Fault, retry_after: float = 2.0) -> None:
        self.fake.fail_next(fault, retry_after=retry_after)

    async def close(self) -> None:
        await self.fake.close()
