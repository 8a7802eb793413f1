"""Checks of what an operator types, before anything reaches the ledger.

A control is keyed by its target text: a typo (``--strategy sma-bct``) would be stored, shown as
active, and protect nothing; an empty ``--strategy ''`` used to fall through to the *account*
scope, so ``unhalt --strategy ''`` lifted the account halt. Every target is therefore non-blank,
bounded, and (unless ``--force``) one the engine trades: a strategy of
``TRADECTL_STRATEGIES_FILE`` or a symbol of one of its strategies.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.cli._app import fail
from engine.config import Settings
from engine.domain.types import ControlScope
from engine.exceptions import ConfigError

#: ids (strategy, symbol) are short tokens; anything longer is a paste accident
MAX_ID = 64
#: reasons and notes are stored with the control or incident and shown in tables
MAX_TEXT = 500
#: incidents.id is a BIGINT
MAX_BIGINT = 2**63 - 1


def check_target(flag: str, value: str | None) -> str | None:
    """``None`` (option not given) passes; anything given must be a usable id."""
    if value is None:
        return None
    if not value.strip():
        fail(f"{flag} is empty; give the {flag.lstrip('-')} to act on, or leave {flag} out")
    if value != value.strip() or not value.isprintable():
        fail(f"{flag} {value!r} has surrounding whitespace or control characters")
    if len(value) > MAX_ID:
        fail(f"{flag} is {len(value)} characters long; at most {MAX_ID}")
    return value


def check_text(flag: str, value: str, *, required: bool = False) -> str:
    """A free-text reason or note: bounded; ``required`` ones must say something."""
    if required and not value.strip():
        fail(f"{flag} is empty; say what was checked and done")
    if len(value) > MAX_TEXT:
        fail(f"{flag} is {len(value)} characters long; at most {MAX_TEXT}")
    return value.strip()


def check_incident_id(incident_id: int) -> None:
    if not 1 <= incident_id <= MAX_BIGINT:
        fail(f"incident id {incident_id} is out of range; ids run from 1 to {MAX_BIGINT}")


def check_known(settings: Settings, scope: ControlScope, target: str, *, force: bool) -> None:
    """Refuse a strategy or symbol the engine does not trade, unless ``--force``."""
    if force or scope not in (ControlScope.STRATEGY, ControlScope.SYMBOL):
        return
    from engine.strategy_config import load_strategy_config

    path = settings.strategies_file
    try:
        specs = load_strategy_config(path)
    except ConfigError as exc:
        fail(f"cannot check {scope.value} {target!r} against TRADECTL_STRATEGIES_FILE ({exc}); "
             "pass --force to act on it anyway")  # fmt: skip
    if scope is ControlScope.STRATEGY:
        known: tuple[str, ...] = tuple(spec.strategy_id for spec in specs)
    else:
        known = tuple(sorted({symbol for spec in specs for symbol in spec.symbols}))
    if target not in known:
        fail(
            f"{scope.value} {target!r} is not in {path} (known: {', '.join(known)}); "
            "pass --force if it is meant"
        )


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def check_since(value: str | None, now: datetime) -> datetime | None:
    """``--since``: an ISO 8601 time (UTC when it has no offset) or a duration back from
    ``now`` (``90s``, ``15m``, ``4h``, ``2d``)."""
    if value is None:
        return None
    text = value.strip()
    unit = _UNITS.get(text[-1:].lower())
    if unit is not None and text[:-1].isdigit():
        return now - timedelta(**{unit: int(text[:-1])})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        fail(
            f"--since {value!r} is neither a time (2026-11-30T09:00, UTC unless it has an offset) "
            "nor a duration back from now (90s, 15m, 4h, 2d)"
        )
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
