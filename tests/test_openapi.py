"""The OpenAPI document at /openapi.json, and schemathesis against it: no 500, no schema drift.

A short run (a bounded number of generated requests per operation, in-process over ASGI,
with and without valid bodies) on an app with only the sandbox on; webhooks of disabled
channels answer their documented 404.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gomflow_messaging.api.models import REQUESTS
from gomflow_messaging.app import create_app
from gomflow_messaging.i18n import LOCALES
from gomflow_messaging.settings import Settings
from gomflow_messaging.workflows.notify import NotifyRequest
from tests.helpers import AUTH, running_app

EXAMPLES = 10
#: Operations whose input nothing can make invalid (schemathesis finds no negative example):
#: each named, so no other operation's negative run can silently make nothing.
NO_INVALID_INPUT = {
    "POST /webhooks/whatsapp": "Twilio's form: any fields of strings are a valid form",
    "POST /webhook/status": "Twilio's status form: the same",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def examples(strategy: Any, count: list[int]) -> Callable[[], None]:
    """Up to EXAMPLES cases of one operation, called and checked; ``count`` counts them."""

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case: Any) -> None:
        count[0] += 1
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    return run  # type: ignore[no-any-return]


def test_api_matches_its_openapi_document(make_settings: Callable[..., Settings]) -> None:
    """Every operation, bounded examples each; all failures are reported together."""
    # With its worker, so that health is 200 (a 503 counts as a server error).
    app = create_app(make_settings(), mode="serve")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)
    failures: list[str] = []
    operations = 0
    #: (operation, mode) -> examples run
    calls: dict[tuple[str, str], int] = {}
    try:
        # Its worker up first (a condition, not a sleep): health answers 503 until it is.
        client = asgi.get_client(app)
        deadline = time.monotonic() + 30
        while client.get("http://testserver/api/health", headers=AUTH).status_code != 200:
            assert time.monotonic() < deadline, "the worker never came up"
            time.sleep(0.05)
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            inputs = sum(
                len(part)
                for part in (
                    operation.body,
                    operation.query,
                    operation.path_parameters,
                    operation.headers,
                )
            )
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                count = [0]
                try:
                    examples(operation.as_strategy(generation_mode=mode), count)()
                except Unsatisfiable:
                    # Only an operation without input, or named above, has nothing invalid.
                    named = operation.label in NO_INVALID_INPUT
                    if mode is GenerationMode.POSITIVE or (inputs and not named):
                        failures.append(f"{operation.label} ({mode.value}): no example made")
                except BaseException as exc:  # hypothesis raises schemathesis' failure group
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    failures.append(f"{operation.label} ({mode.value}): {exc}")
                finally:
                    calls[(operation.label, mode.value)] = count[0]
    finally:
        asgi.shutdown_lifespans()
    assert operations >= 12
    # Every operation was called with valid input; each with input, with invalid input too.
    unexercised = [ran for ran, n in calls.items() if n == 0 and ran[1] == "positive"]
    assert not unexercised, unexercised
    assert not failures, "\n\n".join(failures)


async def test_document_describes_the_contract(settings: Settings) -> None:
    async with running_app(settings, mode="web") as client:
        anonymous = await client.get("/openapi.json")
        response = await client.get("/openapi.json", headers=AUTH)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/notify",
        "/api/messages/{message_id}",
        "/api/health",
        "/api/notifications/test",
        "/api/sandbox/messages",
        "/api/link-tokens",
        "/api/contacts/{contact_id}",
        "/api/proofs/{proof_id}/image",
        "/webhook/telegram",
        "/webhook/discord",
        settings.webhook_path,
        "/webhook/status",
        "/metrics",
    ):
        assert path in paths, path
    notify = paths["/api/notify"]["post"]
    assert {"202", "401", "409", "422"} <= set(notify["responses"])


async def test_nul_characters_are_refused_not_a_500(settings: Settings) -> None:
    """Postgres cannot store U+0000; found by fuzzing, answered 422 by name."""
    async with running_app(settings, mode="web") as client:
        notify = await client.post(
            "/api/notify",
            json={
                "event": "custom",
                "data": {"text": "a\x00b"},
                "recipients": [{"channel": "sandbox", "address": "nul"}],
            },
            headers=AUTH,
        )
        listing = await client.get(
            "/api/sandbox/messages", params={"address": "a\x00", "after": 2**70}, headers=AUTH
        )
    assert notify.status_code == 422 and "data.text" in notify.json()["error"]["fields"]
    assert listing.status_code == 422


async def test_components_are_the_models_schemas(settings: Settings) -> None:
    """The document repeats no rule: its schemas are generated from the models the routes
    validate with, so a limit or a locale changed in the model changes the document."""
    async with running_app(settings, mode="web") as client:
        document = (await client.get("/openapi.json", headers=AUTH)).json()
    components = document["components"]["schemas"]
    ref = "#/components/schemas/{model}"
    for model in (NotifyRequest, *REQUESTS):
        schema = model.model_json_schema(ref_template=ref)
        for name, nested in schema.pop("$defs", {}).items():
            assert components[name] == nested
        assert components[model.__name__] == schema
    locale = components["NotifyRequest"]["properties"]["locale"]["anyOf"][0]
    assert locale["enum"] == list(LOCALES)
    recipients = components["NotifyRequest"]["properties"]["recipients"]
    assert recipients["maxItems"] == 1000
    body = document["paths"]["/api/sandbox/inbound"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SandboxInboundRequest"
    }


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        # A malformed form was ignored and the text handled as if no form came.
        (
            "/api/sandbox/inbound",
            {"address": "a", "text": "hi", "form": {"id": "f", "values": "x"}},
            "form.values",
        ),
        # A non-text address reached the notify workflow and was named by its path there.
        ("/api/notifications/test", {"addresses": {"sandbox": 5}}, "addresses.sandbox"),
        ("/api/notifications/test", {"test_message": "yes", "locale": "xx"}, "locale"),
        ("/api/link-tokens", {"gom_id": 5}, "gom_id"),
        ("/api/sandbox/inbound", {"address": "a", "file": {"content_base64": "%"}}, "file"),
        ("/api/sandbox/inbound", ["a"], "body"),
    ],
)
async def test_every_json_route_names_the_bad_field(
    settings: Settings, path: str, body: Any, field: str
) -> None:
    """Every JSON route under /api validates with its model and names fields one way."""
    async with running_app(settings, mode="web") as client:
        response = await client.post(path, json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(name == field or name.startswith(f"{field}.") for name in error["fields"]), error
