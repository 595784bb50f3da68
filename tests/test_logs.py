"""Logs: JSON lines with the request id, and never a credential."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from embedportal.logs import REDACTED, configure_logging, request_id_var, scrub

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXZhbHVl"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"token {JWT} issued", JWT),
        ("Authorization: Bearer abcdefgh12345678", "abcdefgh12345678"),
        ("cookie embedportal_session=Zm9vYmFyYmF6cXV4", "Zm9vYmFyYmF6cXV4"),
        ("password=hunter2hunter2", "hunter2hunter2"),
        ('{"client_secret": "s3cr3t-value"}', "s3cr3t-value"),
        ("csrf_token=abcd1234efgh", "abcd1234efgh"),
    ],
)
def test_scrub_removes_credentials(text: str, secret: str) -> None:
    cleaned = scrub(text)
    assert secret not in cleaned
    assert REDACTED in cleaned


def test_scrub_leaves_ordinary_text_alone() -> None:
    line = "POST /api/reports/{report_id}/token 200 3.2ms"
    assert scrub(line) == line


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging(log_format="json", level="info", stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def test_json_lines_carry_the_request_id_and_extras(json_log: io.StringIO) -> None:
    token = request_id_var.set("req-42")
    try:
        logging.getLogger("embedportal.test").info(
            "answered %s", "ok", extra={"status": 200, "route": "/x"}
        )
    finally:
        request_id_var.reset(token)
    entry = json.loads(json_log.getvalue().strip().splitlines()[-1])
    assert entry["message"] == "answered ok"
    assert entry["request_id"] == "req-42"
    assert entry["status"] == 200
    assert entry["route"] == "/x"
    assert entry["level"] == "info"


def test_json_lines_are_scrubbed_too(json_log: io.StringIO) -> None:
    logging.getLogger("embedportal.test").warning("leaked %s", JWT)
    assert JWT not in json_log.getvalue()


def test_scrub_leaves_tracebacks_readable() -> None:
    line = "    issued: IssuedToken = await token_service.issue("
    assert scrub(line) == line
