"""For operators: `GET /metrics` (Prometheus) and SAQ's web UI at `/saq`, both behind the secret.

Prometheus sends the secret as a bearer token (``authorization: credentials``). A browser
opening `/saq` is asked for a password: any user name, the service secret as password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from gomflow_messaging import metrics
from gomflow_messaging.api.common import require_service_secret, services
from gomflow_messaging.api.operators import authorized, same_origin

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import ASGIApp, Receive, Scope, Send

    from gomflow_messaging.bootstrap import Services

SAQ_PATH = "/saq"


async def metrics_endpoint(request: Request) -> Response:
    require_service_secret(request)
    body, content_type = await metrics.render(services(request))
    return Response(body, media_type=content_type)


def _refuse(status: int, code: str, message: str, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "fields": {}}},
        status_code=status,
        headers=headers,
    )


class SaqUi:
    """SAQ's Starlette UI for this app's queue, built on first use (the queue exists only
    once the lifespan has run), answering nobody without the secret."""

    def __init__(self) -> None:
        self._ui: ASGIApp | None = None
        self._for: Services | None = None

    def _app(self, svc: Services) -> ASGIApp:
        if self._ui is None or self._for is not svc:
            from saq.web.starlette import saq_web

            self._ui = saq_web(SAQ_PATH, queues=[svc.queue.saq])
            self._for = svc
        return self._ui

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        svc: Services = scope["app"].state.services
        headers = dict(scope["headers"])
        header = headers.get(b"authorization", b"").decode("latin-1")
        scheme = authorized(header, svc.settings.service_secrets())
        if not scheme:
            response = _refuse(
                401,
                "unauthorized",
                "The SAQ dashboard needs the service secret "
                "(Bearer, or as the password of Basic auth).",
                {"WWW-Authenticate": 'Basic realm="gomflow-messaging", charset="UTF-8"'},
            )
            await response(scope, receive, send)
            return
        if (
            scheme == "basic"
            and scope["method"] not in ("GET", "HEAD", "OPTIONS")
            and not same_origin(headers)
        ):
            # Retry and abort change jobs: with a browser's Basic credentials, only from here.
            response = _refuse(
                403,
                "cross_site",
                "Changes through the SAQ dashboard must come from its own page "
                "(or carry the secret as a Bearer token).",
                {},
            )
            await response(scope, receive, send)
            return
        await self._app(svc)(scope, receive, send)


def routes() -> list[Route | Mount]:
    return [
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Mount(SAQ_PATH, app=SaqUi()),
    ]
