"""Logging: text for people at a terminal, or one JSON object per line for a log collector.

Every record carries the id of the request it was written in (`request_id`), and every message
passes through a scrubber on its way out: an embed or Entra token, a bearer credential, a
cookie or a password that slipped into a message is replaced before it is written anywhere.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "embedportal_request_id", default=None
)

REDACTED = "[redacted]"
# JWTs (embed and Entra tokens), the integration API's keys (access/api_keys.py), bearer
# credentials, and key=value pairs whose key names a secret.
_SECRETS = (
    re.compile(
        r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*|\bep_[0-9a-f]{4,}_[A-Za-z0-9_-]{8,}"
    ),
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"),
    # Lower-case keys (settings, form fields, cookies) and the credential headers; not class names
    # such as `IssuedToken = await ...` in a traceback.
    re.compile(
        r"\b([a-z_]*(?:token|secret|password|cookie|session|csrf|api_key)[a-z_]*"
        r"|Authorization|Cookie|X-API-Key)"
        r"([\"']?\s*[:=]\s*[\"']?)([^\s\"',;&]{4,})"
    ),
)

# The standard attributes of a LogRecord; anything else was passed in `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "request_suffix",
    "color_message",  # uvicorn's copy of its message with terminal colours
}

LogFormat = Literal["text", "json"]


# Each pattern above needs one of these: text without any is returned as it is, at the cost of
# one search (a request's log line is written for every request, the token API's included).
_MAYBE_SECRET = re.compile(r"eyJ|ep_|[:=]|(?i:bearer)")
# An `extra=` field whose name says it holds a secret (as pattern 3 reads a key=value pair).
_SECRET_FIELD = re.compile(
    r"[a-z_]*(?:token|secret|password|cookie|session|csrf|api_key)[a-z_]*", re.IGNORECASE
)


def scrub(text: str) -> str:
    """``text`` without anything that looks like a credential."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    text = _SECRETS[0].sub(REDACTED, text)
    text = _SECRETS[1].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _SECRETS[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request_suffix)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # As logging.Formatter.format, scrubbing what the program wrote (the message, a
        # traceback) rather than the whole line, whose own colons would wake the scrubber.
        request_id = getattr(record, "request_id", None)
        record.request_suffix = f" [{request_id}]" if request_id else ""
        record.message = scrub(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if record.exc_info:
            line = f"{line}\n{scrub(self.formatException(record.exc_info))}"
        if record.stack_info:
            line = f"{line}\n{scrub(self.formatStack(record.stack_info))}"
        return line


def _extra_value(key: str, value: object) -> object:
    if _SECRET_FIELD.fullmatch(key):
        return REDACTED
    return value if isinstance(value, int | float | bool) else scrub(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Each field is scrubbed on its own: the JSON's own colons would wake the scrubber.
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = _extra_value(key, value)
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    *, log_format: LogFormat = "text", level: str = "info", stream: TextIO | None = None
) -> logging.Handler:
    """Send every logger (uvicorn's included) to one handler on ``stream`` (stderr)."""
    # Neither format writes where a call came from, nor the thread's or process's name, and
    # a line is written per request: skip gathering them (the logging HOWTO's "Optimization").
    logging._srcfile = None  # noqa: SLF001
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_embedportal", False):
            root.removeHandler(existing)
    handler._embedportal = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        # uvicorn's loggers write through ours, so its lines are formatted and scrubbed too.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Its access log carries raw paths (report ids); embedportal.request logs route templates.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    # One line per outgoing HTTP call, with its full URL, is noise at info.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # msal's debug lines carry authorization codes, PKCE verifiers and token answers.
    logging.getLogger("msal").setLevel(max(logging.WARNING, root.level))
    return handler
