"""Reading request parameters the way Binance does, and its wording when they are wrong."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from engine.venues.simulator.records import Rejection
from engine.venues.simulator.state import SimulatorState

CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")


def param_missing(name: str) -> Rejection:
    return Rejection(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def decimal_param(params: dict[str, str], name: str, *, required: bool) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise param_missing(name)
        return None
    if not _DECIMAL_RE.match(raw):
        raise Rejection(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is "
            f"'{_DECIMAL_RE.pattern}'.",
        )
    try:
        return Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the regex already refuses these
        raise Rejection(-1100, f"Illegal characters found in parameter '{name}'.") from None


def int_param(params: dict[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise Rejection(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^-?[0-9]{{1,20}}$'.",
        ) from None


def symbol_param(state: SimulatorState, params: dict[str, str]) -> str:
    """The ``symbol`` parameter, which must name a symbol the simulator trades."""
    symbol = params.get("symbol")
    if not symbol:
        raise param_missing("symbol")
    state.engine.symbol_rules(symbol)
    return symbol


def limit_param(params: dict[str, str]) -> int:
    limit = int_param(params, "limit", 500)
    assert limit is not None
    if limit < 1 or limit > 1000:
        raise Rejection(-1130, "Data sent for parameter 'limit' is not valid.")
    return limit
