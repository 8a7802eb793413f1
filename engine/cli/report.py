"""P&L and execution quality, from the ledger's views (``pnl``, ``execution_quality``)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Annotated

import typer
from rich.table import Table

from engine.cli._app import StrategyOpt, app, console, run_async, settings
from engine.cli.targets import check_since, check_target
from engine.database import open_database
from engine.domain import formatting as fmt
from engine.domain.types import utc_now

SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only what happened since then: a time (2026-11-30T09:00, UTC unless it has an "
        "offset) or a duration back from now (90s, 15m, 4h, 2d).",
    ),
]


def _numbers(*headers: str) -> Table:
    table = Table(*headers)
    for column in table.columns[2:]:
        column.justify = "right"
        column.overflow = "fold"  # a number is never cut short
    return table


@app.command()
def pnl(since: SinceOpt = None) -> None:
    """P&L per strategy and symbol in the quote asset: position, average cost, realized,
    unrealized at the latest mark, fees (the ``pnl`` view). With ``--since``, realized P&L and
    fees of the fills since then."""
    config = settings()
    start = check_since(since, utc_now())

    async def go() -> None:
        from engine.ledger.pnl import pnl_rows

        async with open_database(config) as db:
            rows = await pnl_rows(db.engine, config.account, since=start)
        if not rows:
            console.print(f"no fills in account {config.account}")
            return
        table = _numbers(
            "strategy", "symbol", "position", "avg cost", "realized", "unrealized", "total",
            "fees", "mark", "fills",
        )  # fmt: skip
        totals: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 4)
        for r in rows:
            quote = r.quote_asset or "?"
            mark = f"{fmt.plain(r.mark)} {r.mark_source}" if r.mark is not None else fmt.MISSING
            table.add_row(
                r.strategy_id, r.symbol,
                "settled" if r.settled_at else fmt.quantity(r.position, r.step_size),
                fmt.money(r.avg_cost), fmt.money(r.realized), fmt.money(r.unrealized),
                f"{fmt.money(r.total)} {quote}",
                fmt.money(r.fees) + "".join(
                    f" +{fmt.plain(v)} {a}" for a, v in sorted(r.other_fees.items())
                ),
                mark, str(r.fill_count),
            )  # fmt: skip
            for i, value in enumerate((r.realized, r.unrealized, r.total, r.fees)):
                totals[quote][i] += value or 0
        heading = f"P&L of account {config.account}"
        if start is not None:
            heading += f": realized and fees since {start.isoformat(timespec='seconds')}"
        console.print(heading)
        console.print(table)
        for quote, (realized, unrealized, total, fees) in sorted(totals.items()):
            console.print(
                f"total {quote}: realized {fmt.money(realized)} unrealized "
                f"{fmt.money(unrealized)} total {fmt.money(total)} fees {fmt.money(fees)}"
            )

    run_async(go)


@app.command()
def quality(strategy: StrategyOpt = None, since: SinceOpt = None) -> None:
    """Execution quality per strategy against the price at decision time: fill rate, slippage,
    latency decision -> acknowledgement and -> first fill (p50 / p95) and implementation
    shortfall (the ``execution_quality`` view)."""
    config = settings()
    strategy = check_target("--strategy", strategy)
    start = check_since(since, utc_now())

    async def go() -> None:
        from engine.ledger.pnl import quality_rows

        async with open_database(config) as db:
            rows = await quality_rows(db.engine, config.account, strategy=strategy, since=start)
        if not rows:
            console.print(f"no orders in account {config.account}")
            return
        table = _numbers(
            "strategy", "orders", "filled", "fill rate", "slippage bps", "slippage",
            "ack p50", "ack p95", "fill p50", "fill p95", "shortfall", "shortfall bps",
        )  # fmt: skip
        table.columns[1].justify = "right"
        for r in rows:
            table.add_row(
                r["strategy_id"], str(r["orders"]), str(r["filled_orders"]),
                fmt.percent(r["fill_rate"]), fmt.plain(r["slippage_bps"], places=2),
                fmt.money(r["slippage_cost"]),
                fmt.seconds(r["decide_to_ack_p50_s"]), fmt.seconds(r["decide_to_ack_p95_s"]),
                fmt.seconds(r["decide_to_fill_p50_s"]), fmt.seconds(r["decide_to_fill_p95_s"]),
                fmt.money(r["implementation_shortfall"]), fmt.plain(r["shortfall_bps"], places=2),
            )  # fmt: skip
        heading = f"execution quality of account {config.account}"
        if start is not None:
            heading += f", decisions since {start.isoformat(timespec='seconds')}"
        console.print(heading)
        console.print(table)
        console.print(
            "slippage and shortfall are costs (positive: worse than the decision price), in "
            "the quote asset; latencies from the decision"
        )

    run_async(go)
