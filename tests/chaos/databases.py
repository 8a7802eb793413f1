"""The chaos suite's databases: a fresh one per seed, copied from the migrated template, and
the seed's ledger dumped as text next to its logs before it is dropped."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy.engine import URL

from tests.chaos import invariants


async def _admin(server: URL, sql: str) -> None:
    conn = await invariants.connect(server)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def seed_database(server: URL, template: str, seed: int) -> AsyncIterator[URL]:
    """A fresh database at the migrations' head for one seed (copied from the template)."""
    name = f"tradectl_chaos_{seed}_{uuid.uuid4().hex[:6]}"
    await _admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield server.set(database=name)
    finally:
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def dump_ledger(url: URL, target: Path) -> None:
    """The seed's ledger as text, kept with the logs (the database itself is dropped)."""
    queries = {
        "orders": "SELECT client_order_id, strategy_id, symbol, side, type, time_in_force, "
        "requested_qty, limit_price, state, venue_order_id, last_error FROM orders "
        "ORDER BY created_at",
        "order_events": "SELECT client_order_id, from_state, to_state, cause, recorded_at "
        "FROM order_events ORDER BY id",
        "fills": "SELECT symbol, trade_id, client_order_id, venue_order_id, side, qty, price, fee "
        "FROM fills ORDER BY id",
        "decisions": "SELECT strategy_id, symbol, intent, side, quantity, limit_price, outcome, "
        "reason, decided_at FROM decisions ORDER BY decided_at",
        "incidents": "SELECT kind, scope, message FROM incidents ORDER BY id",
        "controls": "SELECT scope, target, kind, active, reason FROM controls ORDER BY id",
        "settlements": "SELECT symbol, result, payout, settled_at, recorded_at FROM settlements "
        "ORDER BY id",
    }
    conn = await invariants.connect(url)
    try:
        parts = []
        for name, sql in queries.items():
            rows = await conn.fetch(sql)
            parts.append(f"== {name} ({len(rows)})")
            parts.extend(" | ".join(str(v) for v in row.values()) for row in rows)
    finally:
        await conn.close()
    _write(target, "\n".join(parts) + "\n")


def _write(target: Path, text: str) -> None:
    target.write_text(text, "utf-8")
