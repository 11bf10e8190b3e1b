"""The web console at /console: a GOM's orders, buyers, reach and receipts; operators see all.

Server-rendered pages (templates/, named after their pages), a little static CSS and one
small script (static/), sign-in by one-time link (`sessions`), every read in `queries`,
every change through the workflows the chat commands use (`views`).
"""

from __future__ import annotations

from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gomflow_messaging.console import views
from gomflow_messaging.console.templating import PACKAGE


def routes() -> list[Route | Mount]:
    order = "/console/orders/{order_id}"
    hold = f"{order}/holds/{{submission_id}}"
    return [
        Route("/console", views.home, methods=["GET"]),
        Route("/console/sign-in/{token}", views.sign_in_link, methods=["GET"]),
        Route("/console/sign-in", views.sign_in, methods=["POST"]),
        Route("/console/sign-out", views.sign_out, methods=["POST"]),
        Route("/console/captions-{locale}.css", views.captions, methods=["GET"]),
        Route(order, views.order_page, methods=["GET"]),
        Route(f"{order}/data.json", views.order_json, methods=["GET"]),
        Route(f"{order}/buyers.csv", views.order_csv, methods=["GET"]),
        Route(f"{order}/update/preview", views.preview_update, methods=["POST"]),
        Route(f"{hold}/cancel", views.confirm_cancel_hold, methods=["GET"]),
        Route(f"{hold}/cancel", views.cancel_hold, methods=["POST"]),
        Route(f"{order}/{{action}}", views.confirm_action, methods=["GET"]),
        Route(f"{order}/{{action}}", views.do_action, methods=["POST"]),
        Route("/console/receipts", views.receipts, methods=["GET"]),
        Route("/console/receipts/{proof_id}/image", views.receipt_image, methods=["GET"]),
        Route(
            "/console/receipts/{proof_id}/{decision:str}",
            views.decide,
            methods=["POST"],
        ),
        Route("/console/messages/{message_id}", views.message_page, methods=["GET"]),
        Mount("/console/static", app=StaticFiles(directory=PACKAGE / "static"), name="static"),
    ]
