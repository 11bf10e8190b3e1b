"""A fake Discord REST API on loopback, driven by the real hikari client; signed interactions.

It speaks Discord's wire format for what the service uses: the bot user and application,
slash command bulk overwrite (global and per guild), DM channels, channel messages,
interaction callbacks and follow-up webhooks. It checks what Discord checks (the bot
token, 2000-character content, 4096-character embed descriptions, unique custom ids of at
most 100 characters, at most 5 rows of 5) and can answer 429 with retry-after, 5xx,
hang, 401, and 50007 for a user who takes no DMs, or accept a message and lose its answer
(``accepted_lost``). A create-message with a ``nonce`` and ``enforce_nonce: true`` is
recognised as Discord does: the same nonce in the same channel within ``NONCE_WINDOW``
seconds returns the message first created, and creates none.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from nacl.signing import SigningKey

from gomflow_messaging.channels.base import Channel
from gomflow_messaging.channels.discord.channel import DiscordChannel, DiscordRest
from gomflow_messaging.channels.pacing import Pacer
from tests.contract import Fault, Received

APP_ID = "100000000000000001"
#: How long Discord remembers a message's nonce ("the past few minutes"; taken as 2).
NONCE_WINDOW = 120.0
TOKEN = "fake-discord-bot-token"

FakeFault = Fault | Literal["global_rate_limited", "unauthorized"]


@dataclass
class Call:
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    query: dict[str, str]


@dataclass
class _Pending:
    fault: FakeFault
    retry_after: float
    path: str
    after: int = 0


@dataclass
class FakeDiscord:
    token: str = TOKEN
    application_id: str = APP_ID
    public_key: str = ""
    calls: list[Call] = field(default_factory=list)
    #: user id -> DM channel id, and back
    dm_channels: dict[str, str] = field(default_factory=dict)
    channel_users: dict[str, str] = field(default_factory=dict)
    #: channel id -> message payloads as stored (what a user would see)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: "global" or a guild id -> registered commands
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: (method, interaction token, payload) for follow-ups and edits of the original answer
    webhook_messages: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    callbacks: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    cannot_dm: set[str] = field(default_factory=set)
    unknown_users: set[str] = field(default_factory=set)
    #: Users a DM cannot be opened with (a bot, a deleted account): 400, code 50033.
    invalid_recipients: set[str] = field(default_factory=set)
    #: Requests each route bucket allows per window, counted down in X-RateLimit-Remaining;
    #: one more in the window is answered 429, as Discord does.
    bucket_limit: int = 50
    bucket_window: float = 1.0
    #: Files users attached (their CDN path -> bytes), served at `attachment_url`.
    attachments: dict[str, bytes] = field(default_factory=dict)
    attachment_downloads: int = 0
    #: (path, problems) of every message, follow-up or edit refused as invalid (50035).
    refused: list[tuple[str, list[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(900_000_000_000_000_000)
        self._faults: list[_Pending] = []
        #: (channel id, nonce) -> (when, the message created with it)
        self._nonces: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        #: bucket -> (when its window resets, requests left in it)
        self._buckets: dict[str, tuple[float, int]] = {}
        #: Interactions already answered (one callback each, as Discord allows).
        self._acknowledged: set[str] = set()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- control -------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_route("*", "/api/v10/{tail:.*}", self._handle)
        app.router.add_get("/attachments/{path:.+}", self._attachment)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    def fail_next(
        self, fault: FakeFault, retry_after: float = 2.0, *, path: str = "", after: int = 0
    ) -> None:
        """The next request whose path contains ``path`` gets this fault instead.

        ``after``: let that many matching requests through first.
        """
        self._faults.append(_Pending(fault, retry_after, path, after))

    def attachment_url(self, path: str) -> str:
        """Where the CDN serves an attachment (signed query, like Discord's)."""
        return f"http://127.0.0.1:{self.port}/attachments/{path}?ex=1&is=2&hm=abc"

    async def _attachment(self, request: web.Request) -> web.StreamResponse:
        self.attachment_downloads += 1
        data = self.attachments.get(request.match_info["path"])
        if data is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, content_type="application/octet-stream")

    def dm_messages(self, user_id: str) -> list[dict[str, Any]]:
        channel = self.dm_channels.get(user_id)
        return list(self.messages.get(channel, [])) if channel else []

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.fullmatch(pattern, c.path)]

    def follow_ups(self, token: str) -> list[tuple[str, dict[str, Any]]]:
        return [(m, p) for m, t, p in self.webhook_messages if t == token]

    # -- serving -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.calls.append(
            Call(request.method, path, body, dict(request.headers), dict(request.query))
        )
        lost = False
        for pending in self._faults:
            if pending.path in path:
                if pending.after > 0:
                    pending.after -= 1
                    break
                self._faults.remove(pending)
                if pending.fault == "accepted_lost":
                    lost = True
                    break
                return await self._fault(pending)
        tokenless = path.startswith(("/webhooks/", "/interactions/"))
        if not tokenless and request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, 0, "401: Unauthorized")
        for method, pattern, handler in self._routes():
            match = re.fullmatch(pattern, path)
            if match and method == request.method:
                if path.startswith("/interactions/"):
                    response: web.StreamResponse = await handler(request, body, *match.groups())
                else:
                    # As Discord does: every answer names its route's bucket (per major
                    # parameter: the channel, the webhook) and what is left of it, so
                    # hikari knows the bucket (and checks the global limit) from then on.
                    major = match.group(1) if match.groups() else ""
                    bucket = hashlib.sha1(f"{method} {pattern} {major}".encode()).hexdigest()
                    now = time.monotonic()
                    resets, left = self._buckets.get(bucket[:16], (0.0, 0))
                    if now >= resets:
                        resets, left = now + self.bucket_window, self.bucket_limit
                    if left <= 0:
                        return self._limited(bucket[:16], resets - now)
                    self._buckets[bucket[:16]] = (resets, left - 1)
                    response = await handler(request, body, *match.groups())
                    response.headers.update(
                        {
                            "X-RateLimit-Bucket": bucket[:16],
                            "X-RateLimit-Limit": str(self.bucket_limit),
                            "X-RateLimit-Remaining": str(left - 1),
                            "X-RateLimit-Reset": f"{time.time() + resets - now:.3f}",
                            "X-RateLimit-Reset-After": f"{resets - now:.3f}",
                        }
                    )
                if lost:  # done, and the answer never comes back
                    await self._closing.wait()
                return response
        return _error(404, 0, "404: Not Found")

    def _routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return [
            ("GET", r"/users/@me", self._me),
            ("GET", r"/oauth2/applications/@me", self._application),
            ("PUT", r"/applications/(\d+)/commands", self._put_commands),
            ("GET", r"/applications/(\d+)/commands", self._get_commands),
            ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", self._put_commands),
            ("GET", r"/applications/(\d+)/guilds/(\d+)/commands", self._get_commands),
            ("POST", r"/users/@me/channels", self._create_dm),
            ("POST", r"/channels/(\d+)/messages", self._create_message),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._callback),
            ("POST", r"/webhooks/(\d+)/([^/]+)", self._follow_up),
            ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/@original", self._edit_original),
        ]

    def _limited(self, bucket: str, wait: float) -> web.StreamResponse:
        return web.json_response(
            {"message": "You are being rate limited.", "retry_after": wait, "global": False},
            status=429,
            headers={
                "Retry-After": str(max(1, round(wait))),
                "X-RateLimit-Bucket": bucket,
                "X-RateLimit-Limit": str(self.bucket_limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": f"{wait:.3f}",
                "X-RateLimit-Reset": f"{time.time() + wait:.3f}",
                "X-RateLimit-Scope": "user",
            },
        )

    async def _fault(self, pending: _Pending) -> web.StreamResponse:
        if pending.fault in ("rate_limited", "global_rate_limited"):
            is_global = pending.fault == "global_rate_limited"
            headers = {
                "Retry-After": str(max(1, round(pending.retry_after))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": str(pending.retry_after),
                "X-RateLimit-Reset": str(time.time() + pending.retry_after),
                "X-RateLimit-Scope": "global" if is_global else "shared",
            }
            if is_global:
                headers["X-RateLimit-Global"] = "true"
            else:
                headers["X-RateLimit-Bucket"] = f"fake-{secrets.token_hex(4)}"
            return web.json_response(
                {
                    "message": "You are being rate limited.",
                    "retry_after": pending.retry_after,
                    "global": is_global,
                },
                status=429,
                headers=headers,
            )
        if pending.fault == "server_error":
            return _error(502, 0, "502: Bad Gateway")
        if pending.fault == "unauthorized":
            return _error(401, 0, "401: Unauthorized")
        await self._closing.wait()  # hang until the fake closes
        return _error(504, 0, "gateway timeout")

    # -- entities ------------------------------------------------------------------------

    def _id(self) -> str:
        return str(next(self._ids))

    def _user(self, user_id: str, name: str = "") -> dict[str, Any]:
        return {
            "id": user_id,
            "username": name or f"user{user_id[-4:]}",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
        }

    def _bot_user(self) -> dict[str, Any]:
        return {**self._user(self.application_id, "GOMFLOW"), "bot": True}

    def _message(self, channel_id: str, data: dict[str, Any]) -> dict[str, Any]:
        counter = itertools.count(1)

        def with_ids(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out = []
            for component in components:
                component = {**component, "id": component.get("id") or next(counter)}
                if "components" in component:
                    component["components"] = with_ids(component["components"])
                out.append(component)
            return out

        return {
            "id": self._id(),
            "channel_id": channel_id,
            "author": self._bot_user(),
            "content": data.get("content") or "",
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": data.get("embeds") or [],
            "pinned": False,
            "type": 0,
            "flags": data.get("flags") or 0,
            "components": with_ids(data.get("components") or []),
        }

    # -- handlers ------------------------------------------------------------------------

    async def _me(self, request: web.Request, body: Any) -> web.StreamResponse:
        return web.json_response(
            {**self._bot_user(), "mfa_enabled": False, "flags": 0, "verified": True}
        )

    async def _application(self, request: web.Request, body: Any) -> web.StreamResponse:
        return web.json_response(
            {
                "id": self.application_id,
                "name": "GOMFLOW",
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self._user("100000000000000099", "owner"),
                "verify_key": self.public_key or "00" * 32,
                "flags": 0,
                "approximate_guild_count": 1,
                "approximate_user_install_count": 0,
            }
        )

    def _wrong_app(self, app_id: str) -> web.StreamResponse | None:
        if app_id != self.application_id:
            return _error(403, 50001, "Missing Access")
        return None

    async def _put_commands(
        self, request: web.Request, body: Any, app_id: str, guild: str = ""
    ) -> web.StreamResponse:
        if (refused := self._wrong_app(app_id)) is not None:
            return refused
        problems = _check_commands(body)
        if problems:
            self.refused.append((request.path, problems))
            return _error(400, 50035, "Invalid Form Body: " + "; ".join(problems))
        stored = [
            {
                **command,
                "id": self._id(),
                "application_id": app_id,
                "version": self._id(),
                "type": command.get("type", 1),
                "guild_id": guild or None,
                "default_member_permissions": command.get("default_member_permissions"),
            }
            for command in body
        ]
        self.commands[guild or "global"] = stored
        return web.json_response(stored)

    async def _get_commands(
        self, request: web.Request, body: Any, app_id: str, guild: str = ""
    ) -> web.StreamResponse:
        if (refused := self._wrong_app(app_id)) is not None:
            return refused
        return web.json_response(self.commands.get(guild or "global", []))

    async def _create_dm(self, request: web.Request, body: Any) -> web.StreamResponse:
        user_id = str((body or {}).get("recipient_id", ""))
        if not user_id.isdigit() or user_id in self.unknown_users:
            return _error(404, 10013, "Unknown User")
        if user_id in self.invalid_recipients:
            return _error(400, 50033, "Invalid Recipient(s)")
        channel_id = self.dm_channels.get(user_id) or self._id()
        self.dm_channels[user_id] = channel_id
        self.channel_users[channel_id] = user_id
        return web.json_response(
            {
                "id": channel_id,
                "type": 1,
                "last_message_id": None,
                "recipients": [self._user(user_id)],
            }
        )

    async def _create_message(
        self, request: web.Request, body: Any, channel_id: str
    ) -> web.StreamResponse:
        user_id = self.channel_users.get(channel_id)
        if user_id is None:
            return _error(404, 10003, "Unknown Channel")
        if user_id in self.cannot_dm:
            return _error(403, 50007, "Cannot send messages to this user")
        problems = check_message(body or {})
        nonce = (body or {}).get("nonce")
        if nonce is not None and len(str(nonce)) > 25:
            problems.append("nonce: must be 25 or fewer in length")
        if problems:
            self.refused.append((request.path, problems))
            return _error(400, 50035, "Invalid Form Body: " + "; ".join(problems))
        now = time.monotonic()
        if nonce is not None and body.get("enforce_nonce"):
            seen = self._nonces.get((channel_id, str(nonce)))
            if seen is not None and now - seen[0] < NONCE_WINDOW:
                return web.json_response(seen[1])  # the same message, none created
        message = self._message(channel_id, body)
        if nonce is not None:
            message["nonce"] = nonce
            self._nonces[(channel_id, str(nonce))] = (now, message)
        self.messages.setdefault(channel_id, []).append(message)
        return web.json_response(message)

    async def _callback(
        self, request: web.Request, body: Any, interaction_id: str, token: str
    ) -> web.StreamResponse:
        if interaction_id in self._acknowledged:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        self._acknowledged.add(interaction_id)
        self.callbacks.append((interaction_id, token, body or {}))
        if request.query.get("with_response") == "true":
            return web.json_response(
                {"interaction": {"id": interaction_id, "type": (body or {}).get("type")}}
            )
        return web.Response(status=204)

    async def _follow_up(
        self, request: web.Request, body: Any, app_id: str, token: str
    ) -> web.StreamResponse:
        problems = check_message(body or {})
        if problems:
            self.refused.append((request.path, problems))
            return _error(400, 50035, "Invalid Form Body: " + "; ".join(problems))
        self.webhook_messages.append(("POST", token, body or {}))
        return web.json_response(self._message(self._id(), body or {}))

    async def _edit_original(
        self, request: web.Request, body: Any, app_id: str, token: str
    ) -> web.StreamResponse:
        problems = check_message(body or {})
        if problems:
            self.refused.append((request.path, problems))
            return _error(400, 50035, "Invalid Form Body: " + "; ".join(problems))
        self.webhook_messages.append(("PATCH", token, body or {}))
        return web.json_response(self._message(self._id(), body or {}))


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"message": message, "code": code}, status=status)


def check_components(rows: list[dict[str, Any]]) -> list[str]:
    """Discord's rules for message components: rows of buttons, unique short custom ids."""
    problems = []
    if len(rows) > 5:
        problems.append("components: at most 5 action rows")
    seen: set[str] = set()
    for row in rows:
        if row.get("type") != 1:
            problems.append("components: top level must be action rows")
            continue
        if not 1 <= len(row.get("components", [])) <= 5:
            problems.append("components: 1 to 5 buttons per row")
        for item in row.get("components", []):
            if len(item.get("label", "")) > 80:
                problems.append("label longer than 80")
            if item.get("style") == 5:
                if not str(item.get("url", "")).startswith(("http://", "https://")):
                    problems.append("link button without url")
                continue
            custom_id = str(item.get("custom_id", ""))
            if not 1 <= len(custom_id) <= 100:
                problems.append(f"custom_id must be 1-100 characters: {custom_id!r}")
            if custom_id in seen:
                problems.append(f"duplicate custom_id {custom_id!r}")
            seen.add(custom_id)
    return problems


def check_message(body: dict[str, Any]) -> list[str]:
    problems = []
    if len(body.get("content") or "") > 2000:
        problems.append("content: must be 2000 or fewer in length")
    embeds = body.get("embeds") or []
    if len(embeds) > 10:
        problems.append("embeds: at most 10")
    total = 0
    for embed in embeds:
        if len(embed.get("description") or "") > 4096:
            problems.append("embeds.description: must be 4096 or fewer in length")
        if len(embed.get("title") or "") > 256:
            problems.append("embeds.title: must be 256 or fewer in length")
        fields = embed.get("fields") or []
        if len(fields) > 25:
            problems.append("embeds.fields: at most 25")
        for item in fields:
            if not 1 <= len(item.get("name") or "") <= 256:
                problems.append("embeds.fields.name: must be 1-256 in length")
            if not 1 <= len(item.get("value") or "") <= 1024:
                problems.append("embeds.fields.value: must be 1-1024 in length")
        texts = [embed.get("title"), embed.get("description")]
        texts += [(embed.get("footer") or {}).get("text"), (embed.get("author") or {}).get("name")]
        texts += [t for item in fields for t in (item.get("name"), item.get("value"))]
        total += sum(len(t or "") for t in texts)
    if total > 6000:
        problems.append("embeds: the total of their text must be 6000 or fewer")
    if not (body.get("content") or embeds or body.get("components")):
        problems.append("Cannot send an empty message")
    problems += check_components(body.get("components") or [])
    return problems


def _check_commands(body: Any) -> list[str]:
    if not isinstance(body, list):
        return ["body must be an array"]
    problems = []
    names: set[str] = set()
    for command in body:
        name = command.get("name", "")
        if not re.fullmatch(r"[-_a-z0-9]{1,32}", name):
            problems.append(f"name {name!r} invalid")
        if name in names:
            problems.append(f"duplicate name {name!r}")
        names.add(name)
        if not 1 <= len(command.get("description", "")) <= 100:
            problems.append(f"{name}: description must be 1-100 characters")
        for option in command.get("options") or []:
            if not re.fullmatch(r"[-_a-z0-9]{1,32}", option.get("name", "")):
                problems.append(f"{name}: option name {option.get('name')!r} invalid")
            if not 1 <= len(option.get("description", "")) <= 100:
                problems.append(f"{name}: option description must be 1-100 characters")
            if option.get("autocomplete"):
                # Only string, integer and number options autocomplete, and not with choices.
                if option.get("type") not in (3, 4, 10):
                    problems.append(f"{name}: autocomplete on an option of type {option['type']}")
                if option.get("choices"):
                    problems.append(f"{name}: autocomplete and choices are exclusive")
    return problems


# -- signed interactions -----------------------------------------------------------------


class Signer:
    """Signs interactions as Discord does, with a test Ed25519 key."""

    def __init__(self) -> None:
        self.key = SigningKey.generate()
        self.public_key = self.key.verify_key.encode().hex()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.key.sign(stamp.encode() + body).signature.hex()
        return {
            "X-Signature-Ed25519": signature,
            "X-Signature-Timestamp": stamp,
            "Content-Type": "application/json",
        }


def new_user_id() -> str:
    return str(800_000_000_000_000_000 + secrets.randbelow(10**17))


def interaction(
    kind: int,
    data: dict[str, Any],
    *,
    user_id: str,
    guild_id: str = "200000000000000001",
    roles: tuple[str, ...] = (),
    locale: str = "en-US",
) -> dict[str, Any]:
    user = {"id": user_id, "username": f"buyer{user_id[-4:]}", "global_name": "Buyer"}
    payload: dict[str, Any] = {
        "id": new_user_id(),
        "application_id": APP_ID,
        "type": kind,
        "data": data,
        "token": "itok-" + secrets.token_urlsafe(24),
        "version": 1,
        "locale": locale,
        "channel_id": "300000000000000001",
        "app_permissions": "0",
    }
    if guild_id:
        payload["guild_id"] = guild_id
        payload["guild_locale"] = "en-US"
        payload["member"] = {"user": user, "roles": list(roles), "permissions": "0"}
    else:
        payload["user"] = user
    return payload


def slash(name: str, options: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    data = {
        "id": "400000000000000001",
        "name": name,
        "type": 1,
        "options": [{"name": k, "type": 3, "value": v} for k, v in (options or {}).items()],
    }
    return interaction(2, data, **kw)


def slash_with_file(
    name: str,
    option: str,
    attachment: dict[str, Any],
    options: dict[str, str] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """A slash command with an attachment option, resolved as Discord sends it."""
    payload = slash(name, options, **kw)
    attachment_id = str(attachment.setdefault("id", new_user_id()))
    payload["data"]["options"].append({"name": option, "type": 11, "value": attachment_id})
    payload["data"]["resolved"] = {"attachments": {attachment_id: attachment}}
    return payload


def autocomplete(
    name: str, focused: str, typed: str, others: dict[str, str] | None = None, **kw: Any
) -> dict[str, Any]:
    """What Discord sends while an autocomplete option is typed (type 4)."""
    options = [{"name": k, "type": 3, "value": v} for k, v in (others or {}).items()]
    options.append({"name": focused, "type": 3, "value": typed, "focused": True})
    data = {"id": "400000000000000001", "name": name, "type": 1, "options": options}
    return interaction(4, data, **kw)


def press(custom_id: str, **kw: Any) -> dict[str, Any]:
    return interaction(3, {"custom_id": custom_id, "component_type": 2}, **kw)


def modal_submit(custom_id: str, values: dict[str, str], **kw: Any) -> dict[str, Any]:
    rows = [
        {"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]}
        for k, v in values.items()
    ]
    return interaction(5, {"custom_id": custom_id, "components": rows}, **kw)


# -- contract harness --------------------------------------------------------------------


class DiscordHarness:
    name = "discord"
    garbage = ("123", "abc", "8" * 30)  # not an address on this platform
    duplicates_after_lost_answer = 0  # the nonce
    # An embed carries a title (up to 256) over a description of up to 4096 characters.
    max_text = 4096 + 1 + 256

    def __init__(self, redis: Any, run: str) -> None:
        self.fake = FakeDiscord()
        self._redis = redis
        self._run = run
        self._base = 810_000_000_000_000_000 + secrets.randbelow(10**15) * 1000

    async def start(self) -> Channel:
        if not self.fake.port:
            await self.fake.start()
        prefix = f"contract-{self._run}"
        rest = DiscordRest(
            token=TOKEN,
            application_id=APP_ID,
            api_base_url=self.fake.base_url,
            request_timeout=1.0,
            max_retries=0,
            max_rate_limit_wait=1.0,
            pacer=Pacer(self._redis, prefix),
        )
        channel = DiscordChannel(rest, self._redis, prefix)
        await channel.start()
        return channel

    def address(self, n: int) -> str:
        return str(self._base + n)

    def blocked_address(self) -> str:
        user = str(self._base + 999)
        self.fake.cannot_dm.add(user)
        return user

    async def received(self, address: str) -> list[Received]:
        return [received_of(address, m) for m in self.fake.dm_messages(address)]

    async def fail_next(self, fault: Fault, retry_after: float = 2.0) -> None:
        # A lost answer is a created message's (not the DM channel's, opened first).
        self.fake.fail_next(
            fault, retry_after, path="/messages" if fault == "accepted_lost" else ""
        )

    async def close(self) -> None:
        await self.fake.close()


def visible(text: str) -> str:
    """What Discord shows of escaped markdown: a backslash before punctuation is not shown."""
    return re.sub(r"\\([^0-9A-Za-z\s])", r"\1", text)


def received_of(address: str, message: dict[str, Any]) -> Received:
    texts = [visible(message.get("content") or "")]
    image = ""
    for embed in message.get("embeds") or []:
        parts = (embed.get("title"), embed.get("description"))
        texts.append("\n".join(visible(t) for t in parts if t))
        image = image or (embed.get("image") or {}).get("url", "")
    return Received(
        address=address,
        text="\n".join(t for t in texts if t),
        buttons=[
            b.get("label", "") for row in message.get("components") or [] for b in row["components"]
        ],
        image_url=image,
    )
