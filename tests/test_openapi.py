"""The HTTP API against its own OpenAPI document (schemathesis): every operation, generated
valid and invalid requests, and each answer checked against what the document promises.

Runs in-process on the fake backend. The API's one rule the document cannot express, "the
`image` part must be a real image", means schema-valid uploads are mostly refused with 400; so
`positive_data_acceptance` is left out and everything else schemathesis checks by default stays
on: no 5xx, documented status codes, content types, headers and response bodies.

schemathesis is driven as a library (`APIOperation.as_strategy` under hypothesis) rather than
through its pytest plugin: the plugin's `from_fixture` loader reads `request.node._nodeid`, which
pytest 9 removed (schemathesis 4.32), and a module-level schema would start the app at collection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.python.asgi import get_client, shutdown_lifespans

from camcap.config import Settings
from camcap.server.app import create_app
from tests.fakes import FakeCaptioner

EXAMPLES_PER_OPERATION = 100


@pytest.fixture
def api_schema() -> Iterator[schemathesis.BaseSchema]:
    # schemathesis sends `Host: testserver` and runs the app's lifespan itself (the model loads).
    app = create_app(Settings(model="fake", allow_hosts=["testserver"]), captioner=FakeCaptioner())
    # Loaded from the app object, not with `from_asgi`: that runs the app's lifespan once to fetch
    # the document and again for the calls, and a camcap app loads its model once per lifetime.
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app  # what from_asgi sets: calls go to the app in-process
    # Start the app as schemathesis will and wait for the model: a 503 `not_ready` is a 5xx.
    with get_client(app) as client:
        deadline = time.monotonic() + 10
        while client.get("/v1/info").json()["status"] == "loading":
            assert time.monotonic() < deadline, "the fake model did not load"
            time.sleep(0.01)
    yield schema
    # schemathesis's pytest plugin ends every app it started after each test; said here too, so the
    # model worker never outlives its test even without the plugin.
    shutdown_lifespans()


def operations(schema: schemathesis.BaseSchema) -> dict[str, schemathesis.APIOperation]:
    return {f"{op.method.upper()} {op.path}": op for op in (result.ok() for result in schema.get_all_operations())}


def test_the_document_describes_every_route(api_schema):
    assert set(operations(api_schema)) == {
        "GET /healthz", "GET /v1/info", "GET /metrics", "POST /v1/caption",
        "GET /v1/sources", "GET /v1/sources/{name}/snapshot.jpg",
        "GET /v1/models", "POST /v1/chat/completions",
        "GET /v1/rules", "PUT /v1/rules/{name}", "PATCH /v1/rules/{name}", "DELETE /v1/rules/{name}",
    }  # fmt: skip
    document = api_schema.raw_schema
    # The refusals camcap itself gives are documented with their body.
    documented = document["paths"]["/v1/caption"]["post"]["responses"]
    assert {"200", "400", "401", "403", "413", "422", "503"} <= set(documented)
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert {"200", "400", "401", "404", "413", "429", "503"} <= set(chat["responses"])
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert "messages" in chat["requestBody"]["content"]["application/json"]["schema"]["properties"]


POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE


# The GET routes take no input, so there is nothing to make invalid: only POST (and PUT) get negative cases.
@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("GET /healthz", POSITIVE),
        ("GET /v1/info", POSITIVE),
        ("GET /v1/sources", POSITIVE),
        ("GET /v1/sources/{name}/snapshot.jpg", POSITIVE),
        ("POST /v1/caption", POSITIVE),
        ("POST /v1/caption", NEGATIVE),
        ("GET /v1/models", POSITIVE),
        ("POST /v1/chat/completions", POSITIVE),
        ("POST /v1/chat/completions", NEGATIVE),
        ("GET /v1/rules", POSITIVE),
        ("PUT /v1/rules/{name}", POSITIVE),
        ("PUT /v1/rules/{name}", NEGATIVE),
        ("PATCH /v1/rules/{name}", POSITIVE),
        ("DELETE /v1/rules/{name}", POSITIVE),
    ],
)
def test_each_operation_keeps_the_promises_of_the_document(api_schema, name, mode):
    operation = operations(api_schema)[name]

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    check()
