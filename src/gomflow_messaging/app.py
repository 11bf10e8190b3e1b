"""The Starlette application: routes, error handling, and the lifespan that wires services."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gomflow_messaging import console, metrics
from gomflow_messaging.api import monitoring
from gomflow_messaging.api.common import error_response
from gomflow_messaging.api.limits import BodyLimitMiddleware, BodyLimits
from gomflow_messaging.api.openapi import openapi_json
from gomflow_messaging.api.routes import routes
from gomflow_messaging.bootstrap import Services, build_services
from gomflow_messaging.channels import registry
from gomflow_messaging.doctor import where
from gomflow_messaging.errors import ApiError
from gomflow_messaging.logs import Outage, OutageFilter, request_id_var
from gomflow_messaging.worker import POSTGRES_AWAY, WorkerRunner, new_worker_id

if TYPE_CHECKING:
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

Mode = Literal["serve", "web"]


class RequestIdMiddleware:
    """Gives each request an id (or keeps the caller's X-Request-ID) and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming[:64] if incoming.isprintable() and incoming else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status_code in (401, 403):
        platform = request.app.state.webhook_platforms.get(request.url.path)
        if platform is not None:
            metrics.WEBHOOK_REJECTED.labels(platform).inc()
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return JSONResponse(
        {
            "error": {
                "code": codes.get(exc.status_code, "http_error"),
                "message": exc.detail,
                "fields": {},
            }
        },
        status_code=exc.status_code,
        headers=exc.headers,
    )


#: A dependency away, not a bug: Postgres refusing, restarting or out of connections (its
#: `max_connections` reached), Redis gone, a socket failing. The client should try again.
AWAY: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
    RedisConnectionError,
    RedisTimeoutError,
)
#: OSErrors about files on this machine (a template or static file missing) are bugs.
_LOCAL_FILES = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
#: One log line per this many seconds while requests meet a dependency away.
AWAY_LOG_SECONDS = 60.0
_away_logged = {"at": -AWAY_LOG_SECONDS, "since": 0}


async def _away(request: Request, exc: Exception) -> Response:
    """503 with Retry-After and one log line a minute, never a traceback per request."""
    if isinstance(exc, _LOCAL_FILES):
        return await _unexpected(request, exc)  # a file of ours, not a dependency: a bug
    now = time.monotonic()
    _away_logged["since"] += 1
    if now - _away_logged["at"] >= AWAY_LOG_SECONDS:
        log.warning(
            "%s %s: a dependency is away (%s); answered 503 to %d request(s) since the last line",
            request.method,
            request.url.path,
            type(exc).__name__,
            _away_logged["since"],
        )
        _away_logged["at"], _away_logged["since"] = now, 0
    return JSONResponse(
        {
            "error": {
                "code": "unavailable",
                "message": "A service this needs is away for a moment; try again shortly.",
                "fields": {},
            }
        },
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {
            "error": {
                "code": "internal_error",
                "message": "Something went wrong on our side; it has been logged.",
                "fields": {},
            }
        },
        status_code=500,
    )


async def _say_if_redis_is_away(svc: Services) -> None:
    """A `web` process without Redis still accepts; say so once at start, plainly."""
    if not await svc.queue.ping():
        log.warning(
            "Redis unreachable at %s: /api/notify still accepts, the messages wait in the "
            "outbox (a platform's until Redis, which holds its pacing, is back), and chat "
            "webhooks answer 503 until then",
            where(svc.settings.redis_url),
        )


def create_app(
    settings: Settings, *, mode: Mode = "serve", services: Services | None = None
) -> Starlette:
    """``serve`` runs the worker in the same process; ``web`` only answers HTTP.

    Tests may pass ready ``services``; otherwise the lifespan builds and closes them.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        own = services is None
        svc = services or await build_services(settings, worker_id=new_worker_id())
        app.state.services = svc
        runner: WorkerRunner | None = None
        # asyncpg's pool logs a traceback each time it fails to reconnect: while Postgres is
        # away those become one outage line a minute (the worker does the same in serve).
        postgres = Outage("Postgres", where(svc.settings.database_url), AWAY_LOG_SECONDS)
        pool_filter = OutageFilter(postgres, POSTGRES_AWAY)
        try:
            if mode == "serve":
                runner = WorkerRunner(svc)
                await runner.start()  # its heartbeat reports Redis missing
            else:
                logging.getLogger("asyncpg.pool").addFilter(pool_filter)
                await _say_if_redis_is_away(svc)
            log.info(
                "gomflow-messaging %s ready: %s",
                mode,
                f"channels {', '.join(svc.channels)}"
                if svc.channels
                else "no channel enabled (each has its ENABLE_* variable: "
                + ", ".join(f"ENABLE_{p.name.upper()}" for p in registry.plugins())
                + ")",
            )
            yield
        finally:
            logging.getLogger("asyncpg.pool").removeFilter(pool_filter)
            if runner is not None:
                await runner.stop()
            if own:
                await svc.close()

    app = Starlette(
        routes=[
            *routes,
            Route("/openapi.json", openapi_json, methods=["GET"]),
            *monitoring.routes(),
            *console.routes(),
            *registry.routes(settings),
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(BodyLimitMiddleware, limits=BodyLimits.from_settings(settings)),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            **dict.fromkeys(AWAY, _away),
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.mode = mode
    app.state.webhook_platforms = registry.webhook_platforms(settings)
    return app
