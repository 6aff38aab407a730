"""Where the processes' logs go: one JSON object per line (``LOG_FORMAT=json``, production's
default) or readable text (development), on standard error.

Every record carries the request id of the HTTP request it happened in (``REQUEST_ID``, set by
the API's request middleware and seen by the commands it runs in worker threads), so a
command's line and an exception's traceback are found from the request's line. Fields are
passed as ``extra={...}``: they become the JSON object's keys. No log line names a person
(rules §7): users appear by id, never by email, name, password, token or card.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

from application.ledger import CommandOutcome

LogFormat = Literal["json", "text"]

REQUEST_ID: ContextVar[str | None] = ContextVar("peerpush_request_id", default=None)

# The JSON keys of a record's standard attributes.
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s%(fields)s"
# What the text format shows besides the message (the JSON format shows every extra).
STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


class _Context(logging.Filter):
    """Adds the request id to every record, and drops the server's second report of an
    exception the app has already logged with its request id (``api.errors``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error" and str(record.msg).startswith("Exception in ASGI"):
            return False
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class _Text(logging.Formatter):
    """A line for a person: time, level, logger, request id, message, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in record.__dict__.items() if k not in STANDARD}
        record.fields = "".join(f" {k}={v}" for k, v in extras.items() if k != "fields")
        record.request_id = getattr(record, "request_id", None) or "-"
        return super().format(record)


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, so configuring again replaces it instead of adding a second one.

    Without a stream of its own it writes to whatever ``sys.stderr`` is at the time (as the
    logging module's last resort does), so a replaced standard error is never written to
    after it was closed.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._fixed = stream

    @property
    def stream(self) -> TextIO:
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, value: TextIO | None) -> None:
        self._fixed = value


def configure_logging(
    fmt: LogFormat = "text", level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Send every logger's records (the server's too) to ``stream`` (standard error).

    Returns the handler installed on the root logger; calling again replaces it.
    """
    handler = _Handler(stream)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter(
            "%(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields=RENAMED,
            timestamp="time",  # ISO 8601 in UTC
        )
    else:
        formatter = _Text(TEXT_FORMAT)
    handler.setFormatter(formatter)
    handler.addFilter(_Context())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The server's own loggers go through ours; requests are logged by the app (one line
    # each, with its route and user), so the server's access log is off.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    return handler


COMMANDS = logging.getLogger("peerpush.commands")


def log_command(ended: CommandOutcome) -> None:
    """One line per command: its outcome, the retries it took and its stream position (a
    ledger observer, added by the composition root)."""
    level = logging.INFO if ended.outcome in ("done", "refused") else logging.WARNING
    COMMANDS.log(
        level,
        "command",
        extra={
            "command": ended.command,
            "outcome": ended.outcome,
            "code": ended.code,
            "retries": ended.retries,
            "position": ended.position,
            "duration_ms": round(ended.seconds * 1000, 2),
        },
    )
