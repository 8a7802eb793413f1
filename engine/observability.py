"""Structured logs (structlog), the metrics endpoint, and the secret scrubber.

The metrics themselves are defined in :mod:`engine.metrics`."""

from __future__ import annotations

import functools
import json as jsonlib
import logging
import re
import sys
import time
from collections.abc import MutableMapping
from decimal import Decimal
from types import TracebackType
from typing import Any

import structlog

# Anything that looks like a credential is masked before a log line is rendered, whichever
# module logged it: a leaked key in a log aggregator is as bad as a leaked key in the code.
_SECRET_KEYS = re.compile(r"(secret|password|passwd|api[_-]?key|signature|token)", re.I)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")


def _scrub_value(value: Any) -> Any:
    # the substring test first: the pattern needs it, and most values are short ids and numbers
    if isinstance(value, str) and "://" in value:
        return _URL_PASSWORD.sub(r"\1***\3", value)
    return value


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    # Keys are the few names the code logs with: matched once each, not on every line (the
    # scrubber runs on every line, and a line per order step made it the costliest processor)
    return _SECRET_KEYS.search(key) is not None


def scrub_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if _is_secret_key(key):
            event_dict[key] = "***"
        elif isinstance(value, str) and "://" in value:
            event_dict[key] = _scrub_value(value)
    return event_dict


#: set by :func:`configure_logging`: whether every line the process writes is a JSON object
_json_output = False


def json_output() -> bool:
    """Whether logs are JSON lines (``TRADECTL_LOG_FORMAT=json``): then nothing else may be
    printed, and what a person would read (banners, the status block) is logged as events."""
    return _json_output


def for_humans(text: str, event: str, **fields: Any) -> None:
    """A line for a person at a terminal: printed on stdout in console mode; in json mode the
    same fact is logged as ``event`` with ``fields`` (a log shipper parses JSON lines only)."""
    if _json_output:
        structlog.get_logger("tradectl").info(event, **fields)
    else:
        print(text, flush=True)


class _UtcTimestamp:
    """``timestamp`` as ISO 8601 UTC with microseconds (``2026-11-30T08:01:59.181707Z``).

    structlog's TimeStamper builds a datetime per line; this formats the seconds once per
    second, which matters at a line per order step."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        return event_dict


def _stdlib_logger_name(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger"] = record.name
    return event_dict


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    # json mode's sys.excepthook: the traceback becomes a field of one line, not raw text
    log = structlog.get_logger("tradectl")
    if issubclass(kind, KeyboardInterrupt):  # Ctrl-C before the engine's own handler is set
        log.warning("process.interrupted")
        return
    log.critical("process.crashed", exc_info=(kind, exc, tb))


def _json_default(value: object) -> str:
    # Decimals in plain notation (a quantity of 1E+1 reads as a typo), datetimes and exceptions
    # as their text: a repr such as Decimal('10') is noise to a log query
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


# One encoder for every line: json.dumps with a ``default`` builds a new encoder per call
_ENCODER = jsonlib.JSONEncoder(default=_json_default)


def _render_json(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    return _ENCODER.encode(event_dict)


class _CurrentStderr:
    """``sys.stderr`` as it is at each write: while the live status view holds the terminal it
    is rich's proxy, which prints log lines above the view instead of through it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR: Any = _CurrentStderr()


def configure_logging(*, json: bool, level: str = "INFO") -> None:
    """structlog for the engine's own events, the standard library's loggers (alembic,
    asyncio, ...) and warnings routed to the same renderer: in json mode every line on stderr
    is one JSON object, tracebacks included (as a string field)."""
    global _json_output
    _json_output = json
    shared: list[Any] = [
        structlog.processors.add_log_level,
        _UtcTimestamp(),
    ]
    renderer: Any = (
        _render_json if json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    if json:
        handler = logging.StreamHandler(_STDERR)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[*shared, _stdlib_logger_name],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    scrub_secrets,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
            )
        )
        logging.basicConfig(handlers=[handler], level=level, force=True)
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
    else:
        logging.basicConfig(format="%(message)s", stream=_STDERR, level=level)
    # alembic narrates every migration step at INFO; only its problems matter to an operator
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request line, and a signed request's query string is a replayable
    # credential for its receive window: never log it
    for name in ("httpx", "httpcore", "websockets"):
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            scrub_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        # Filtered at the call: a line below the level costs a method call, nothing rendered
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=_STDERR),
        cache_logger_on_first_use=True,
    )
