"""Renderers of a :class:`~engine.status_snapshot.StatusSnapshot`, and the loop that shows it.

At a terminal the status is a ``rich`` live view, redrawn in place; anywhere else (a pipe, a
file, a log collector) it is plain text blocks printed every interval, one fact per line, never
wrapped. A log event (json mode) renders the same snapshot its own way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from engine.exceptions import TradectlError
from engine.status_snapshot import DecisionLine, PositionLine, StatusSnapshot

Gather = Callable[[], Awaitable[StatusSnapshot]]

_STATE_STYLE = {
    "trading": "green",
    "warming up": "yellow",
    "starting": "yellow",
    "paused": "bold yellow",
    "halted": "bold red",
}


def _num(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.normalize():f}"


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%H:%M:%S")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "no data"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.0f}m"


def _position(p: PositionLine) -> str:
    return f"{p.symbol} {_num(p.net_qty)}"


def _pnl(p: PositionLine) -> str:
    if p.pnl is not None:
        return f"{_num(p.pnl)} @ {_num(p.mark)}"
    return f"cash {_num(p.cash_flow)}"


def _decision(d: DecisionLine | None) -> str:
    if d is None:
        return "none yet"
    what = d.intent if d.outcome in ("hold", "reserved") else f"{d.intent} {d.outcome}"
    repeats = f" (x{d.repeats + 1}, last {_time(d.last_repeat_at)})" if d.repeats else ""
    return f"{_time(d.decided_at)} {what}: {d.reason}{repeats}"


# -- plain text ----------------------------------------------------------------------------------


def render_plain(s: StatusSnapshot) -> str:
    """The snapshot as lines of text: for pipes and files."""
    lines = [f"--- {s.taken_at.isoformat(timespec='seconds')} account {s.account} ---"]
    lines.append(
        "orders: " + (", ".join(f"{k}={n}" for k, n in s.orders_by_state.items()) or "none")
    )
    for st in s.strategies:
        positions = "; ".join(f"{_position(p)} ({_pnl(p)})" for p in st.positions) or "flat"
        lines.append(f"strategy {st.strategy_id}: {st.state} | {positions}")
        lines.append(f"  last decision: {_decision(st.last_decision)}")
    for o in s.open_orders:
        price = "" if o.limit_price is None else f" @ {_num(o.limit_price)}"
        lines.append(
            f"open order {o.client_order_id}: {o.strategy_id} {o.side} {_num(o.requested_qty)} "
            f"{o.symbol}{price} {o.state} filled {_num(o.filled_qty)}"
        )
    if s.open_order_count > len(s.open_orders):
        lines.append(f"  ... {s.open_order_count - len(s.open_orders)} more open orders")
    lines.append(
        "controls: " + (", ".join(f"{c.kind} {c.scope}:{c.target}" for c in s.controls) or "none")
    )
    lines.append(f"open incidents: {s.open_incident_count}")
    for i in s.incidents:
        lines.append(f"  incident {i.id} [{i.severity}] {i.kind}: {i.message}")
    if s.alerts is not None:
        for a in s.alerts:
            sent = "sent" if a.delivered else "pending"
            lines.append(f"alert {_time(a.created_at)} {a.level} {a.kind} ({sent}): {a.message}")
    if s.market_data:
        what = "quote age" if s.market_data[0].source == "quote" else "data age of last decision"
        lines.append(
            f"market data ({what}): "
            + ", ".join(f"{m.symbol} {_age(m.age_s)}" for m in s.market_data)
        )
    return "\n".join(lines)


# -- rich ----------------------------------------------------------------------------------------


def render_rich(s: StatusSnapshot, *, controls_hint: bool = True) -> RenderableType:
    """The snapshot as a screen: strategies, orders, controls, incidents, alerts, market data."""
    parts: list[RenderableType] = [
        Text.assemble(
            ("tradectl ", "bold"),
            f"account {s.account}  ",
            (s.taken_at.strftime("%Y-%m-%d %H:%M:%S UTC"), "dim"),
        )
    ]

    strategies = Table(title="strategies", title_justify="left", expand=True)
    for column in ("strategy", "state", "position", "P&L", "last decision"):
        strategies.add_column(column, overflow="fold", ratio=4 if column == "last decision" else 1)
    for st in s.strategies:
        state = Text(st.state, style=_STATE_STYLE.get(st.state.split(" (")[0], ""))
        strategies.add_row(
            st.strategy_id,
            state,
            "\n".join(_position(p) for p in st.positions) or "flat",
            "\n".join(_pnl(p) for p in st.positions) or "-",
            _decision(st.last_decision),
        )
    parts.append(strategies)

    orders = " · ".join(f"{k} {n}" for k, n in s.orders_by_state.items()) or "none"
    parts.append(Text.assemble(("orders  ", "bold"), orders))
    if s.open_orders:
        table = Table(
            title=f"open orders ({s.open_order_count})", title_justify="left", expand=True
        )
        columns = ("created", "client order id", "strategy", "side", "qty", "symbol", "price",
                   "state", "filled")  # fmt: skip
        for column in columns:
            table.add_column(column, overflow="fold")
        for o in s.open_orders:
            table.add_row(
                _time(o.created_at), o.client_order_id, o.strategy_id, o.side,
                _num(o.requested_qty), o.symbol, _num(o.limit_price), o.state, _num(o.filled_qty),
            )  # fmt: skip
        parts.append(table)

    controls = ", ".join(f"{c.kind} {c.scope}:{c.target} ({c.reason})" for c in s.controls)
    parts.append(
        Text.assemble(("controls  ", "bold"), (controls or "none", "yellow" if controls else ""))
    )
    incidents = Text.assemble(
        ("incidents  ", "bold"),
        (f"{s.open_incident_count} open", "red" if s.open_incident_count else ""),
    )
    for i in s.incidents:
        incidents.append(f"\n  #{i.id} {_time(i.opened_at)} [{i.severity}] {i.kind}: {i.message}")
    parts.append(incidents)
    if s.alerts is not None:
        alerts = Text.assemble(("recent alerts  ", "bold"), "none" if not s.alerts else "")
        for a in s.alerts:
            sent = "sent" if a.delivered else "pending"
            alerts.append(f"\n  {_time(a.created_at)} {a.level} {a.kind} ({sent}): {a.message}")
        parts.append(alerts)
    if s.market_data:
        label = "market data  " if s.market_data[0].source == "quote" else "decided on data  "
        md = Text.assemble((label, "bold"))
        for m in s.market_data:
            stale = m.age_s is None or m.age_s > 5
            md.append(f"{m.symbol} {_age(m.age_s)}  ", style="red" if stale else "")
        parts.append(md)
    if controls_hint:
        parts.append(
            Text(
                "controls: tradectl halt | pause --strategy ID | resume | cancel-all | "
                "reconcile  (a second terminal)   Ctrl-C stops",
                style="dim",
            )
        )
    return Group(*parts)


# -- the loop ------------------------------------------------------------------------------------


async def show_status(
    gather: Gather,
    *,
    interval_s: float,
    live: bool,
    out: TextIO,
    controls_hint: bool = True,
    count: int | None = None,
) -> None:
    """Gather and show the status every ``interval_s`` until cancelled (or ``count`` times):
    redrawn in place with ``live``, else printed as plain blocks. A failed read is shown and
    retried at the next interval."""
    shown = 0
    if not live:
        while count is None or shown < count:
            try:
                block = render_plain(await gather())
            except TradectlError as exc:
                block = f"--- status unavailable: {exc} ---"
            print(block, file=out, flush=True)
            shown += 1
            if count is None or shown < count:
                await asyncio.sleep(interval_s)
        return
    console = Console(file=out)
    # Redirected, every print and log line goes above the view instead of through it.
    with Live(
        console=console, auto_refresh=False, redirect_stdout=True, redirect_stderr=True
    ) as view:
        while count is None or shown < count:
            try:
                view.update(render_rich(await gather(), controls_hint=controls_hint), refresh=True)
            except TradectlError as exc:
                view.update(Text(f"status unavailable: {exc}", style="red"), refresh=True)
            shown += 1
            if count is None or shown < count:
                await asyncio.sleep(interval_s)
