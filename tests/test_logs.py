"""Logs: JSON lines with the request id, and never a credential."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from embedportal.logs import _SECRETS, REDACTED, LogFormat, configure_logging, request_id_var, scrub

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


def _scrub_every_time(text: str) -> str:
    """scrub without its shortcut: every pattern, every time."""
    text = _SECRETS[0].sub(REDACTED, text)
    text = _SECRETS[1].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _SECRETS[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


SECRETISH = st.sampled_from(
    ["eyJ", "ep_", ".", ":", "=", " ", "bearer", "BeArEr", "token", "Cookie", "_", '"', "abc12345"]
)


@given(st.lists(st.one_of(SECRETISH, st.text(max_size=6)), max_size=12).map("".join))
def test_the_shortcut_never_changes_what_is_scrubbed(text: str) -> None:
    assert scrub(text) == _scrub_every_time(text)


def test_json_extras_are_scrubbed_and_secret_named_ones_dropped(json_log: io.StringIO) -> None:
    logging.getLogger("embedportal.test").info(
        "called",
        extra={"client_secret": "s3cr3t-value", "detail": f"with {JWT}", "session_count": 3},
    )
    entry = json.loads(json_log.getvalue().strip().splitlines()[-1])
    assert entry["client_secret"] == REDACTED
    assert JWT not in entry["detail"] and REDACTED in entry["detail"]
    assert entry["session_count"] == REDACTED  # named for a secret: dropped whatever its type


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_tracebacks_are_scrubbed_in_both_formats(log_format: LogFormat) -> None:
    stream = io.StringIO()
    handler = configure_logging(log_format=log_format, level="info", stream=stream)
    try:
        try:
            raise RuntimeError(f"refused Authorization: Bearer {JWT}")
        except RuntimeError:
            logging.getLogger("embedportal.test").exception("failed for password=hunter2hunter2")
    finally:
        logging.getLogger().removeHandler(handler)
    written = stream.getvalue()
    assert "RuntimeError" in written and "failed for password=" in written
    assert JWT not in written and "hunter2hunter2" not in written
