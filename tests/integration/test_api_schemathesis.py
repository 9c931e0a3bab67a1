"""Schemathesis against a real API process: every operation of its OpenAPI document, fed
generated (and broken) input, answers without a 5xx — as a viewer, and as a moderator for
everything but creating events (those would stay in the compacted events.settings): the
moderation endpoints (held comments, reviews, timeouts, bans, hiding) included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from support import ApiProcess, bearer, start_api

from deploy.settings import Settings


@pytest.fixture(scope="module")
def fuzzed_api(stack: Settings) -> Iterator[ApiProcess]:
    api = start_api(stack)
    yield api
    api.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_api: ApiProcess) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed_api.url}/openapi.json")


FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


def fuzz(schema: Any, base_url: str, headers: dict[str, str], *, skip: tuple[str, ...] = ()) -> int:
    """Every operation but ``skip``, ``max_examples`` generated cases each (valid and
    invalid data); fails on the first 5xx. Returns how many operations ran.

    Driven by hand rather than schemathesis' pytest plugin, whose ``from_fixture`` does
    not run on this pytest (``'Function' object has no attribute '_nodeid'``)."""
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in skip:
            continue

        @given(case=operation.as_strategy())
        @FUZZ
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url=base_url, headers=headers, checks=[not_a_server_error], timeout=40
            )

        check()
        ran += 1
    return ran


def test_no_input_from_a_viewer_makes_the_api_fail(
    api_schema: Any, fuzzed_api: ApiProcess, settings: Settings
) -> None:
    assert fuzz(api_schema, fuzzed_api.url, bearer(settings, "fuzzer")) >= 20


def test_no_input_from_a_moderator_makes_the_api_fail(
    api_schema: Any, fuzzed_api: ApiProcess, settings: Settings
) -> None:
    headers = bearer(settings, "fuzz-mod", "moderator")
    ran = fuzz(api_schema, fuzzed_api.url, headers, skip=("POST /v1/events",))
    assert ran >= 20
