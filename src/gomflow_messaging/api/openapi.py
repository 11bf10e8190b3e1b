"""`GET /openapi.json`: the HTTP contract as an OpenAPI 3.1 document.

The schemas are generated from the pydantic models the routes validate with and answer
(`api/models.py`, the notify workflow's request), so a limit or a locale is stated once; the
paths are written here, saying what callers may rely on (every error is
``{"error": {"code", "message", "fields"}}``), and each channel describes its own routes
(``ChannelPlugin.openapi_paths``, with the helpers below). `tests/test_openapi.py` runs
schemathesis against it so it cannot drift from what the routes answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic.json_schema import models_json_schema
from starlette.responses import JSONResponse

from gomflow_messaging import __version__
from gomflow_messaging.api.common import require_service_secret, services
from gomflow_messaging.api.models import REQUESTS, RESPONSES
from gomflow_messaging.channels import registry
from gomflow_messaging.workflows.notify import NotifyRequest

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic.json_schema import JsonSchemaMode
    from starlette.requests import Request
    from starlette.responses import Response

    from gomflow_messaging.settings import Settings

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref("Error")}}}


def ok(description: str, schema: dict[str, Any], media: str = JSON) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


_UUID = {"type": "string", "format": "uuid"}
_REF = "#/components/schemas/{model}"


def schemas() -> dict[str, Any]:
    """The components, generated from the models the routes validate with and answer."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (NotifyRequest, "validation"),
        *((model, "validation") for model in REQUESTS),
        *((model, "serialization") for model in RESPONSES),
    ]
    top, found = models_json_schema(models, ref_template=_REF)
    components: dict[str, Any] = found["$defs"]
    for (model, _mode), schema in top.items():
        if "$ref" not in schema:
            components[model.__name__] = schema
    return components


_CONTACT_ID = {"name": "contact_id", "in": "path", "required": True, "schema": _UUID}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
AUTH_ERRORS = {"401": error("Missing or wrong bearer token")}
BODY_ERRORS = {
    "413": error("Body too large"),
    "415": error("Not sent as application/json"),
    "422": error("Not valid: `fields` names each offending field"),
}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def webhook(summary: str, media: str, codes: dict[str, str]) -> dict[str, Any]:
    responses: dict[str, Any] = {
        code: {"description": text} if code in ("200", "204") else error(text)
        for code, text in codes.items()
    }
    responses["404"] = error("This channel is not enabled on this deployment")
    responses["413"] = error("Body too large")
    return {
        "post": {
            "summary": summary,
            "tags": ["webhooks"],
            "requestBody": {"required": True, "content": {media: {"schema": {"type": "object"}}}},
            "responses": responses,
        }
    }


def meta_handshake(summary: str) -> dict[str, Any]:
    """The GET half of a webhook of Meta's Graph API: the verify-token handshake."""
    return {
        "summary": summary,
        "tags": ["webhooks"],
        "parameters": [
            {"name": name, "in": "query", "required": True, "schema": {"type": "string"}}
            for name in ("hub.mode", "hub.verify_token", "hub.challenge")
        ],
        "responses": {
            "200": ok("hub.challenge, as sent", {"type": "string"}, "text/plain"),
            "403": error("Wrong hub.mode or hub.verify_token"),
            "404": error("This channel is not enabled on this deployment"),
        },
    }


def document(settings: Settings) -> dict[str, Any]:
    health = {
        "get": {
            "summary": "Can the service do its job: database, Redis, a worker, each channel, "
            "the Smart Agent; details (channels, bot, app, counts) only with the Bearer secret",
            "responses": {
                "200": ok("Healthy, or degraded (status says which)", ref("Health")),
                "503": ok("Something it needs is away", ref("Health")),
            },
        }
    }
    paths: dict[str, Any] = {
        "/api/health": health,
        # The path the original GOMFLOW services' monitoring polls.
        "/health": health,
        "/api/notify": {
            "post": {
                "summary": "An event for recipients: one outbox message per person, answered 202",
                "security": BEARER,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        "description": "Same key and body: the first answer again, nothing "
                        "sent twice; other body: 422; while the first runs: 409.",
                    }
                ],
                "requestBody": json_body(ref("NotifyRequest")),
                "responses": {
                    "202": ok("Accepted: one entry per message", ref("NotifyResponse")),
                    **AUTH_ERRORS,
                    "409": error("A request with this Idempotency-Key is still running"),
                    **BODY_ERRORS,
                },
            }
        },
        "/api/messages/{message_id}": {
            "get": {
                "summary": "A message's status, attempts and last error",
                "security": BEARER,
                "parameters": [
                    {"name": "message_id", "in": "path", "required": True, "schema": _UUID}
                ],
                "responses": {
                    "200": ok("The message", ref("Message")),
                    **AUTH_ERRORS,
                    "404": error("No message with this id"),
                    "422": error("Not a UUID"),
                },
            }
        },
        "/api/notifications/test": {
            "post": {
                "summary": "A test message on each channel named, to check a deployment",
                "security": BEARER,
                "requestBody": json_body(ref("TestNotificationRequest")),
                "responses": {
                    "200": ok(
                        '{"test_message": true} without addresses: the deployment checked, '
                        "nobody messaged",
                        ref("DeploymentCheck"),
                    ),
                    "202": ok("Accepted", ref("NotifyResponse")),
                    **AUTH_ERRORS,
                    **BODY_ERRORS,
                },
            }
        },
        "/api/link-tokens": {
            "post": {
                "summary": "A one-use code linking a chat to a submission's buyer or a GOM",
                "security": BEARER,
                "requestBody": json_body(ref("LinkTokenRequest")),
                "responses": {
                    "201": ok("The code and how to send it on each platform", ref("LinkToken")),
                    **AUTH_ERRORS,
                    **BODY_ERRORS,
                },
            }
        },
        "/api/contacts/{contact_id}/export": {
            "get": {
                "summary": "Everything kept about a contact (data rights: access)",
                "security": BEARER,
                "parameters": [_CONTACT_ID],
                "responses": {
                    "200": ok("The contact's data", {"type": "object"}),
                    **AUTH_ERRORS,
                    "404": error("No contact with this id"),
                    "422": error("Not a UUID"),
                },
            }
        },
        "/api/contacts/{contact_id}": {
            "delete": {
                "summary": "Erase a contact and what is kept about them (data rights: erasure)",
                "security": BEARER,
                "parameters": [_CONTACT_ID],
                "responses": {
                    "200": ok("What was erased", {"type": "object"}),
                    **AUTH_ERRORS,
                    "404": error("No contact with this id"),
                    "422": error("Not a UUID"),
                },
            }
        },
        "/api/proofs/{proof_id}/image": {
            "get": {
                "summary": "A payment receipt at a signed, short-lived URL (for the GOM's chat)",
                "parameters": [
                    {"name": "proof_id", "in": "path", "required": True, "schema": _UUID},
                    {"name": "exp", "in": "query", "required": True, "schema": {"type": "integer"}},
                    {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "The image or PDF",
                        "content": {
                            "image/*": {"schema": {"type": "string", "format": "binary"}},
                            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    "403": error("The signature is wrong or the link has expired"),
                    "404": error("No such receipt"),
                    "410": error("The receipt is no longer kept"),
                },
            }
        },
        "/api/commands/status": {
            "get": {
                "summary": "The bot commands; with the Bearer secret, what each platform has "
                "registered",
                "security": [{}, *BEARER],
                "responses": {
                    "200": ok(
                        "Without the secret: the public command list (no platform named); "
                        "with it: per platform",
                        ref("CommandsStatus"),
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "security": BEARER,
                "responses": {
                    "200": ok("Metrics", {"type": "string"}, "text/plain"),
                    **AUTH_ERRORS,
                },
            }
        },
    }
    for plugin in registry.plugins():
        if plugin.openapi_paths is not None:
            paths.update(plugin.openapi_paths(settings))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gomflow-messaging",
            "version": __version__,
            "description": "GOMFLOW's messaging service: notifications and chat bots on "
            + ", ".join(p.title for p in registry.plugins() if not p.local)
            + ". Errors are always "
            '`{"error": {"code", "message", "fields"}}`.',
        },
        "servers": [{"url": settings.public_base_url}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SERVICE_SECRET (or SERVICE_SECRET_PREVIOUS while rotating)",
                }
            },
        },
    }


async def openapi_json(request: Request) -> Response:
    # The document names every route, webhook path (WEBHOOK_PATH) and setting-shaped limit:
    # a map for whoever probes the service, so it is for holders of the secret only.
    require_service_secret(request)
    return JSONResponse(document(services(request).settings))
