"""Structured logs (structlog), Prometheus metrics, and the secret scrubber."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from engine.exceptions import ConfigError

# Anything that looks like a credential is masked before a log line is rendered, whichever
# module logged it: a leaked key in a log aggregator is as bad as a leaked key in the code.
_SECRET_KEYS = re.compile(r"(secret|password|passwd|api[_-]?key|signature|token)", re.I)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1***\3", value)
    return value


def scrub_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if _SECRET_KEYS.search(key):
            event_dict[key] = "***"
        else:
            event_dict[key] = _scrub_value(event_dict[key])
    return event_dict


class _CurrentStderr:
    """``sys.stderr`` as it is at each write: while the live status view holds the terminal it
    is rich's proxy, which prints log lines above the view instead of through it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR: Any = _CurrentStderr()


def configure_logging(*, json: bool, level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=_STDERR, level=level)
    # alembic narrates every migration step at INFO; only its problems matter to an operator
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request line, and a signed request's query string is a replayable
    # credential for its receive window: never log it
    for name in ("httpx", "httpcore", "websockets"):
        logging.getLogger(name).setLevel(logging.WARNING)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            scrub_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=_STDERR),
        cache_logger_on_first_use=True,
    )


def _metric(kind: type[Any], name: str, doc: str, labels: tuple[str, ...] = (), **kw: Any) -> Any:
    # Tests build several engines in one process: reuse a collector already registered.
    existing = REGISTRY._names_to_collectors.get(name)
    if existing is not None:
        return existing
    return kind(name, doc, labels, **kw)


ORDERS_SUBMITTED = _metric(
    Counter, "tradectl_orders_submitted", "Orders sent to a venue", ("account", "outcome")
)
FILLS_RECORDED = _metric(Counter, "tradectl_fills_recorded", "Fills appended", ("account",))
DECISIONS = _metric(Counter, "tradectl_decisions", "Decisions recorded", ("account", "outcome"))
INTENT_TO_ACK = _metric(
    Histogram,
    "tradectl_intent_to_ack_seconds",
    "Latency from intent to acknowledged order",
    ("account",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
UNRESOLVED_ORDERS = _metric(
    Gauge, "tradectl_unresolved_orders", "Orders in PENDING_SUBMIT/UNKNOWN", ("account",)
)
OPEN_INCIDENTS = _metric(Gauge, "tradectl_open_incidents", "Open incidents", ("account",))


def serve_metrics(port: int) -> None:
    """Serve /metrics on 127.0.0.1:PORT; a port that cannot be bound is a ConfigError that
    names TRADECTL_METRICS_PORT (the OSError alone says neither which setting nor which port)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"TRADECTL_METRICS_PORT: {port} is not a port (0-65535)")
    try:
        start_http_server(port, addr="127.0.0.1")
    except OSError as exc:
        raise ConfigError(
            f"TRADECTL_METRICS_PORT: cannot serve metrics on 127.0.0.1:{port}: {exc.strerror}"
        ) from None
