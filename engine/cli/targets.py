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
from engine.ledger.records import Operator

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


def check_reason(value: str | None, flag: str = "--reason") -> str:
    """Every operator action says why: the reason goes to the operator journal."""
    if value is None:
        fail(f"{flag} is required: say why (it is recorded in the operator journal)")
    if not value.strip():
        fail(f"{flag} is empty; say why (it is recorded in the operator journal)")
    return check_text(flag, value)


def check_actor(value: str | None) -> str:
    """``--by``, else the OS user: who acts, for the operator journal."""
    if value is None:
        import getpass

        try:
            return getpass.getuser()
        except (KeyError, OSError):  # no login name (a container's bare uid)
            import os

            return f"uid:{os.getuid()}"
    if not value.strip() or value != value.strip() or not value.isprintable():
        fail(f"--by {value!r} is blank or has surrounding whitespace or control characters")
    if len(value) > MAX_ID:
        fail(f"--by is {len(value)} characters long; at most {MAX_ID}")
    return value


def check_id(value: int, what: str = "incident") -> None:
    """An id of a BIGSERIAL column (incidents, operator requests)."""
    if not 1 <= value <= MAX_BIGINT:
        fail(f"{what} id {value} is out of range; ids run from 1 to {MAX_BIGINT}")


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


def check_operator(reason: str | None, by: str | None, flag: str = "--reason") -> Operator:
    """Who acts and why, checked: the reason first (it is the one an operator forgets)."""
    reason = check_reason(reason, flag)
    return Operator(actor=check_actor(by), reason=reason)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def check_since(value: str | None, now: datetime) -> datetime | None:
    """``--since``: an age (``90m``, ``12h``, ``7d``) or an ISO date / time (UTC unless it
    says otherwise)."""
    if value is None:
        return None
    text = value.strip()
    unit = _UNITS.get(text[-1:].lower())
    if unit is not None and text[:-1].isdigit():
        amount = int(text[:-1])
        if amount * unit > 100 * 365 * 86400:
            fail(f"--since {value!r} reaches back more than 100 years")
        return now - timedelta(seconds=amount * unit)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        fail(
            f"--since {value!r} is neither an age (30m, 12h, 7d) nor an ISO date or time "
            "(2026-11-30, 2026-11-30T08:00)"
        )
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
