"""Schemathesis against Slipway's own OpenAPI document (GET /api/v1/openapi.json), in process (WSGI).

Every operation of the document gets generated requests (an admin key with a rate no run reaches, on
PostgreSQL, jobs recorded and not run). Checks: no server error, and the answers conform to the
document (status codes, content types, response schemas).

Schemathesis' own pytest plugin (`from_fixture`) does not run under pytest 9, so each operation's
strategy is driven by a plain hypothesis `@given` here.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from app.openapi import document
from tests.fuzz.test_receiver import Recorder

pytestmark = [pytest.mark.postgres]

EXAMPLES_PER_OPERATION = 25
METHODS = ("get", "post", "put", "patch", "delete")
OPERATIONS = [f"{method.upper()} {path}" for path, item in document()["paths"].items()
              for method in item if method in METHODS]


@pytest.fixture
def api(make_runtime) -> tuple[Any, str]:  # noqa: ANN001
    """(WSGI app, admin key) on PostgreSQL."""
    from app import create_app
    from app.apikeys import create_key

    rt = make_runtime("production", transport=Recorder())
    key = create_key(rt.engine, "schemathesis", "admin", rate="1000000/minute")[1]
    return create_app(rt=rt), key


def test_the_document_lists_operations() -> None:
    """The parametrization below is not empty."""
    assert len(OPERATIONS) >= 10, OPERATIONS


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_conforms_and_never_fails(api: tuple[Any, str], label: str) -> None:
    """Generated requests for one operation: no 5xx, answers as documented."""
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    app, key = api
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        headers = {} if (case.headers or {}).get("Authorization") else {"Authorization": f"Bearer {key}"}
        case.call_and_validate(headers=headers, checks=checks)

    run()


@pytest.mark.parametrize("record", ["2147483648", "72652203372089072", "999999999999999999"])
def test_deployment_ids_beyond_32_bits_are_404_not_500(api: tuple[Any, str], record: str) -> None:
    """Found by schemathesis: app/read_api.py record_id() lets up to 18 digits through, but deployment.id is a
    32-bit INTEGER, so PostgreSQL refuses the parameter ("integer out of range") and the API answered 500."""
    app, key = api
    resp = app.test_client().get(f"/api/v1/deployments/{record}", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 404, (resp.status_code, resp.get_json())
