"""Shared plumbing of the ledger's concept modules: compiled-once statements, their rows, the
retry of deadlock victims, and JSON in and out of ``jsonb``."""

from __future__ import annotations

import asyncio
import functools
import json
import random
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

import asyncpg
import msgspec
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg

from engine.exceptions import LedgerError

_DIALECT = postgresql_asyncpg.dialect()  # type: ignore[no-untyped-call]


#: Postgres aborts one of two transactions that wait on each other (a fill path inserting a
#: trade while an ACK holds its order, say); the victim was rolled back whole, so it is retried.
_TRANSIENT = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_TRANSIENT_ATTEMPTS = 5

P = ParamSpec("P")
T = TypeVar("T")


def retry_transient(
    fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(fn)
    async def retrying(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, _TRANSIENT_ATTEMPTS + 1):
            try:
                return await fn(*args, **kwargs)
            except _TRANSIENT as exc:
                if attempt == _TRANSIENT_ATTEMPTS:
                    raise LedgerError(
                        f"{fn.__qualname__} was aborted by the database {attempt} times "
                        f"({type(exc).__name__}); nothing of it was written"
                    ) from exc
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    return retrying


class Rows(list[asyncpg.Record]):
    """A statement's result rows, with the few accessors the ledger needs."""

    def first(self) -> asyncpg.Record | None:
        return self[0] if self else None

    def one(self) -> asyncpg.Record:
        if len(self) != 1:
            raise LedgerError(f"expected exactly one row, got {len(self)}")
        return self[0]

    def scalar(self) -> Any:
        return self[0][0] if self else None


class Statement:
    """A statement compiled once: asyncpg's positional SQL and the order of its parameters.

    Written with ``:name`` parameters (SQLAlchemy ``text()``), compiled by SQLAlchemy's asyncpg
    dialect at import, and executed on the pooled connection's asyncpg driver: no per-call
    compilation, parameter or result processing, and asyncpg prepares it once per connection.
    Every value here is a plain asyncpg type (Decimal, datetime, str, bool, lists of them).
    A benchmark can run ``sql`` with ``args(params)`` on raw asyncpg to measure this layer.
    """

    __slots__ = ("names", "sql")

    def __init__(self, sql: str) -> None:
        compiled = text(sql).compile(dialect=_DIALECT)
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())

    def args(self, params: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
        if params is None:
            return ()
        return tuple(params[name] for name in self.names)

    async def run(self, db: asyncpg.Connection, params: Mapping[str, Any] | None = None) -> Rows:
        return Rows(await db.fetch(self.sql, *self.args(params)))


def require_finite(what: str, **values: Decimal | None) -> None:
    """Refuse NaN and ±Infinity before they reach SQL, naming the record and the field.

    The schema refuses them too (``ck_<table>_<column>_finite``), but only after a round trip
    and with a constraint name; and a NaN must never get as far as a comparison in Python
    (``Decimal('NaN') <= 0`` raises InvalidOperation) or in SQL (``'NaN' > 0`` is true there).
    One ``is_finite()`` per value: nothing measurable on the hot path.
    """
    for name, value in values.items():
        if value is not None and not value.is_finite():
            raise LedgerError(
                f"{what}: {name} is {value}; the ledger records only finite numbers, so "
                "nothing of this write was stored"
            )


# One encoder: json.dumps with options builds a new encoder per call, and the hot path dumps
# twice per order (the decision's verdicts, the ACK event's detail).
_COMPACT = json.JSONEncoder(default=str, separators=(",", ":"))


def dumps(value: Any) -> str:
    return _COMPACT.encode(value)


# The hot statements' JSON rows (below): their values are JSON's own types already, so msgspec
# encodes them, ten times faster than the json module (a decision row with six verdicts: 16 µs
# against 1.7 µs, measured). It writes text as UTF-8 where json escaped it (the same stored
# text: tests/integration/test_reservation_values.py).
_ROWS = msgspec.json.Encoder()


def dumps_rows(rows: list[dict[str, Any]]) -> str:
    """The one JSON parameter of a hot statement's rows (decisions, orders, reports, fills)."""
    return _ROWS.encode(rows).decode()


# Values of the JSON rows the hot statements read with json_to_recordset (decisions, orders,
# reports, fills): converted by the row builders, not by the encoder's ``default`` hook, which
# costs a third more per value. NUMERIC reads Decimal's ``str`` exactly, TIMESTAMPTZ the ISO text
# with its offset.


def json_number(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def json_instant(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def from_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
