"""The registry client's requests and its error codes, over an in-process transport.

These pin down the mapping from HTTP answers to stable codes; talking to a real
registry is tests/integration/test_registry_compat.py's job.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from schemas.errors import RegistryError
from schemas.registry import RegistryClient

BASE = "http://registry.test/apis/ccompat/v7"
Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler) -> RegistryClient:
    return RegistryClient(BASE, timeout_s=1.0, transport=httpx.MockTransport(handler))


def _code(handler: Handler, call: Callable[[RegistryClient], object]) -> str:
    with _client(handler) as client, pytest.raises(RegistryError) as caught:
        call(client)
    return caught.value.code


def test_register_posts_the_schema_to_the_quoted_subject_and_returns_the_id() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": 12})

    with _client(handler) as client:
        assert client.register("a/b-value", '{"type":"string"}') == 12
    (request,) = seen
    assert request.method == "POST"
    assert request.url.raw_path == b"/apis/ccompat/v7/subjects/a%2Fb-value/versions"
    assert request.headers["content-type"] == "application/vnd.schemaregistry.v1+json"
    assert json.loads(request.content) == {"schema": '{"type":"string"}'}


def test_compatibility_check_reads_is_compatible_and_messages() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/compatibility/subjects/s-value/versions/latest")
        return httpx.Response(200, json={"is_compatible": False, "messages": ["field x"]})

    with _client(handler) as client:
        result = client.check_compatibility("s-value", "{}")
    assert not result.is_compatible
    assert result.messages == ("field x",)


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (404, {"error_code": 40401, "message": "Subject not found"}, "subject_not_found"),
        (404, {"error_code": 40402, "message": "Version not found"}, "version_not_found"),
        (404, {"error_code": 40403, "message": "Schema not found"}, "schema_not_found"),
        (409, {"error_code": 409, "message": "incompatible"}, "incompatible_schema"),
        (422, {"error_code": 42201, "message": "Invalid schema"}, "invalid_schema"),
        (500, {"error_code": 50001, "message": "boom"}, "registry_error"),
        (503, None, "registry_error"),
    ],
)
def test_error_answers_map_to_stable_codes(status: int, body: object, code: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if body else httpx.Response(status)

    assert _code(handler, lambda c: c.schema_by_id(1)) == code


def test_a_404_without_error_code_names_what_was_asked_for() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404)

    assert _code(handler, lambda c: c.schema_by_id(1)) == "schema_not_found"
    assert _code(handler, lambda c: c.latest("s")) == "subject_not_found"


def test_connection_failures_are_registry_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert _code(handler, lambda c: c.subjects()) == "registry_unreachable"


def test_a_success_without_json_is_a_registry_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>proxy login</html>")

    assert _code(handler, lambda c: c.subjects()) == "registry_error"
