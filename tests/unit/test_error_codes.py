"""The one table of error codes agrees with the gateway, the API and both docs' tables."""

from __future__ import annotations

import re
from pathlib import Path

from gateways import protocol as P
from gateways.error_codes import ERRORS, MODERATION_CODES, http_status, sentence
from gateways.http.errors import ApiError
from gateways.moderation import CODES, ModerationError

DOCS = Path(__file__).resolve().parents[2] / "docs"
CODE = re.compile(r"`([a-z_]+)`")


def _section(doc: str, heading: str) -> list[str]:
    """The table rows (``|`` lines) of the section under ``heading``."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end >= 0 else len(text)]
    return [line for line in body.splitlines() if re.match(r"\| (`|\d)", line)]


def test_protocol_md_lists_every_websocket_code_with_its_close_code() -> None:
    documented: dict[str, int | None] = {}
    for row in _section("protocol.md", "## Error codes"):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        match = CODE.fullmatch(cells[0])
        if match:
            close = re.match(r"\d+", cells[-1])
            documented[match.group(1)] = int(close.group()) if close else None
    expected = {row.code: row.close_code for row in ERRORS.values() if row.websocket}
    assert documented == expected


def test_api_md_lists_every_http_code_under_its_status() -> None:
    documented: dict[str, int] = {}
    for row in _section("api.md", "## Errors"):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if cells[0].isdigit():
            # Only the code that opens each comma-separated item: "(... `x` ...)" explains.
            for item in re.split(r",\s*(?![^()]*\))", cells[1]):
                match = CODE.match(item.strip())
                if match:
                    documented[match.group(1)] = int(cells[0])
    expected = {row.code: row.http_status for row in ERRORS.values() if row.http_status}
    assert documented == expected


def test_the_gateway_the_api_and_moderation_use_the_tables_sentences() -> None:
    for code, message in P.ERROR_CODES.items():
        assert message == sentence(code)
    for code in MODERATION_CODES:
        assert CODES[code] == (http_status(code), sentence(code))
        assert ModerationError(code).status == ApiError(code).status
        assert ModerationError(code).message == ApiError(code).message


def test_close_codes_are_the_tables() -> None:
    assert ERRORS["slow_consumer"].close_code == P.CLOSE_SLOW_CONSUMER
    assert ERRORS["idle_timeout"].close_code == P.CLOSE_IDLE
    assert ERRORS["auth_timeout"].close_code == P.CLOSE_AUTH_TIMEOUT
