"""The risk snapshot's refresh (exposure + P&L) against the length of the account's history.
Prints one JSON line::

    {"history": [1000, 50000], "refresh_ms": {"1000": …, "50000": …}, "rows_read": {…}, …}

For each history length: a fresh database holding that many fills of one account (4 symbols,
2 strategies, every order terminal but a few resting ones), a Portfolio loaded once, then
``--rounds`` refreshes (``refresh`` + ``refresh_pnl``, what the risk gate runs when the portfolio
is dirty) each after ``--new`` more fills: the median time of one. ``rows_read`` is the median of
the fill rows a refresh read (``Portfolio.fills_read``).

Uses ``DATABASE_URL`` when set (a server where it may create databases), else an embedded
Postgres in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from bench.execution import drop_database, fresh_database, server  # noqa: E402
from engine.ledger.db import make_engine  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402

ACCOUNT = "bench"

# Orders of two fills each (the first order of a pair is a buy, the second a sell), over four
# symbols and two strategies; fees in the quote asset but every tenth in the base asset.
_SEED = """
INSERT INTO instruments (venue, symbol, base_asset, quote_asset, tick_size, step_size,
                         min_notional, updated_at)
SELECT 'simulator', s, left(s, 3), 'USDT', 0.01, 0.0001, 0, now()
FROM unnest(ARRAY['BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'XRPUSDT']) AS s
ON CONFLICT DO NOTHING;
INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, reason, md_ts,
                       decided_at, interval_key, sequence, verdicts, outcome)
SELECT 'd' || (:start + n), 's' || (n % 2), :account, 'X', 'buy', 'r', now(), now(),
       'k' || (:start + n), 0, '[]', 'reserved'
FROM generate_series(1, :orders) AS n;
INSERT INTO orders (client_order_id, decision_id, strategy_id, account, venue, symbol, side,
                    type, time_in_force, requested_qty, state, created_at, expires_at, updated_at)
SELECT 'c' || (:start + n), 'd' || (:start + n), 's' || (n % 2), :account, 'simulator',
       (ARRAY['BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'XRPUSDT'])[1 + (n / 2) % 4],
       CASE WHEN n % 4 < 2 THEN 'BUY' ELSE 'SELL' END, 'LIMIT', 'GTC', 2, 'FILLED',
       now(), now(), now()
FROM generate_series(1, :orders) AS n;
INSERT INTO fills (venue, symbol, trade_id, client_order_id, account, side, qty, price, fee,
                   fee_asset, venue_ts, received_at, recorded_at)
SELECT 'simulator', o.symbol, o.client_order_id || '-' || k, o.client_order_id, :account,
       o.side, 1, 100 + (:start + n) % 17, 0.001,
       CASE WHEN n % 10 = 0 THEN left(o.symbol, 3) ELSE 'USDT' END,
       timestamptz '2026-11-30 00:00:00+00' + (:start + n) * interval '1 second',
       now(), now()
FROM generate_series(1, :orders) AS n
JOIN orders o ON o.client_order_id = 'c' || (:start + n) AND o.account = :account
CROSS JOIN generate_series(1, 2) AS k;
"""

_RESTING = """
INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, reason, md_ts,
                       decided_at, interval_key, sequence, verdicts, outcome)
SELECT 'r' || n, 's0', :account, 'X', 'buy', 'r', now(), now(), 'r' || n, 0, '[]', 'reserved'
FROM generate_series(1, 5) AS n;
INSERT INTO orders (client_order_id, decision_id, strategy_id, account, venue, symbol, side,
                    type, time_in_force, requested_qty, state, created_at, expires_at, updated_at)
SELECT 'r' || n, 'r' || n, 's0', :account, 'simulator', 'BTCUSDT', 'BUY', 'LIMIT', 'GTC', 3,
       'OPEN', now(), now(), now()
FROM generate_series(1, 5) AS n;
"""


async def _execute(engine: AsyncEngine, script: str, **params: object) -> None:
    async with engine.begin() as conn:
        for statement in script.split(";"):
            if statement.strip():
                names = {k: v for k, v in params.items() if f":{k}" in statement}
                await conn.execute(text(statement), names)


async def _measure(admin: object, history: int, rounds: int, new: int) -> dict[str, float]:
    url = await fresh_database(admin)  # type: ignore[arg-type]
    engine = make_engine(url)
    try:
        await _execute(engine, _SEED, account=ACCOUNT, start=0, orders=history // 2)
        await _execute(engine, _RESTING, account=ACCOUNT)
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
        portfolio = Portfolio(engine, ACCOUNT)
        now = datetime(2026, 12, 1, 12, tzinfo=UTC)
        await portfolio.refresh()
        await portfolio.refresh_pnl(now)
        times: list[float] = []
        rows: list[int] = []
        start = history // 2
        for _ in range(rounds):
            await _execute(engine, _SEED, account=ACCOUNT, start=start, orders=new // 2)
            start += new // 2
            portfolio.mark_dirty()
            read_before = getattr(portfolio, "fills_read", 0)
            began = time.perf_counter()
            await portfolio.refresh()
            await portfolio.refresh_pnl(now)
            times.append((time.perf_counter() - began) * 1000)
            rows.append(getattr(portfolio, "fills_read", 0) - read_before)
        return {"ms": round(statistics.median(times), 2), "rows": statistics.median(rows)}
    finally:
        await engine.dispose()
        await drop_database(admin, url)  # type: ignore[arg-type]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, nargs="+", default=[1000, 50000])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--new", type=int, default=4, help="fills added before each refresh")
    args = parser.parse_args()
    out: dict[str, object] = {"history": args.history, "new_fills_per_refresh": args.new}
    ms: dict[str, float] = {}
    rows: dict[str, float] = {}
    async with server() as admin:
        for history in args.history:
            result = await _measure(admin, history, args.rounds, args.new)
            ms[str(history)], rows[str(history)] = result["ms"], result["rows"]
    out["refresh_ms"] = ms
    out["rows_read"] = rows
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
