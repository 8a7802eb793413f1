"""The status snapshot read from a real ledger, its renderers, and `tradectl status --watch`
piped and at a terminal."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import re
import select
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.holds import RepeatCount
from engine.domain.types import ControlKind, ControlScope, DecisionId, DecisionOutcome
from engine.ledger.ledger import Ledger
from engine.status_snapshot import gather_status
from engine.status_view import render_plain, render_rich
from tests.helpers import ROOT, tradectl
from tests.integration.test_ledger import ACCOUNT, HOLDER, T0, VENUE, decision, reservation


@pytest.fixture
def ledger(db_engine: AsyncEngine) -> Ledger:
    return Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=lambda: T0)


STRATEGIES = {"momo": ("BTCUSDT",), "warm": ("ETHUSDT",), "idle": ("SOLUSDT",)}


async def seed(ledger: Ledger) -> None:
    epoch = await ledger.leases.acquire(HOLDER, timedelta(seconds=30))
    assert epoch is not None
    await ledger.orders.reserve([reservation(1)], holder=HOLDER, epoch=epoch)  # an open order
    hold = replace(
        decision(2, strategy="warm", symbol="ETHUSDT", side=None, intent="hold",
                 outcome=DecisionOutcome.HOLD),
        reason="warming up: 3/9 closed bars",
        decided_at=T0 + timedelta(seconds=1),
    )  # fmt: skip
    await ledger.decisions.record(hold)
    await ledger.decisions.count_repeats(
        [RepeatCount(DecisionId(hold.decision_id), 4, T0 + timedelta(seconds=5))]
    )
    await ledger.controls.set(
        ControlScope.STRATEGY, "momo", ControlKind.PAUSE, reason="checking", set_by="test"
    )
    await ledger.incidents.open(
        kind="balance_drift", scope="account", severity="high", message="USDT drifted by 5",
        details={}, dedupe_key="drift-usdt",
    )  # fmt: skip


async def test_the_snapshot_has_each_strategy_state_decision_order_control_and_incident(
    ledger: Ledger, db_engine: AsyncEngine
) -> None:
    await seed(ledger)
    snap = await gather_status(db_engine, ACCOUNT, strategies=STRATEGIES, now=T0)
    by_id = {s.strategy_id: s for s in snap.strategies}
    assert {sid: s.state for sid, s in by_id.items()} == {
        "momo": "paused", "warm": "warming up", "idle": "starting",
    }  # fmt: skip
    warm = by_id["warm"].last_decision
    assert warm is not None
    assert (warm.repeats, warm.last_at) == (4, T0 + timedelta(seconds=5))
    assert snap.orders_by_state == {"PENDING_SUBMIT": 1}
    assert [o.client_order_id for o in snap.open_orders] == ["tc-momo-BTCUSDT-1"]
    assert snap.open_order_count == 1
    assert [(c.scope, c.target, c.kind) for c in snap.controls] == [("strategy", "momo", "pause")]
    assert snap.open_incident_count == 1
    # the incident raised its alert in the same transaction (the outbox)
    assert snap.alerts is not None
    assert [(a.level, a.kind, a.delivered) for a in snap.alerts] == [
        ("CRITICAL", "balance_drift", False)
    ]
    # no market data in a second process: the age of the data a strategy last decided on
    md = {m.symbol: m.age_s for m in snap.market_data}
    assert md["SOLUSDT"] is None
    assert md["ETHUSDT"] is not None

    plain = render_plain(snap)
    assert "strategy momo: paused" in plain
    assert "last decision: 10:00:01 hold: warming up: 3/9 closed bars (x5, last 10:00:05)" in plain
    assert "controls: pause strategy:momo" in plain
    assert "incident" in plain
    assert "USDT drifted by 5" in plain

    console = Console(record=True, width=160, file=io.StringIO())
    console.print(render_rich(snap))
    screen = console.export_text()
    for expected in ("momo", "paused", "warming up", "starting", "tc-momo-BTCUSDT-1",
                     "pause strategy:momo", "1 open", "USDT drifted by 5"):  # fmt: skip
        assert expected in screen, expected


async def test_marks_turn_positions_into_pnl_and_quote_ages_are_shown(
    ledger: Ledger, db_engine: AsyncEngine
) -> None:
    snap = await gather_status(
        db_engine, ACCOUNT, strategies=STRATEGIES, marks={"BTCUSDT": Decimal(1)},
        quote_ages={"BTCUSDT": 0.25, "ETHUSDT": None},
    )  # fmt: skip
    assert [(m.symbol, m.age_s, m.source) for m in snap.market_data] == [
        ("BTCUSDT", 0.25, "quote"), ("ETHUSDT", None, "quote"),
    ]  # fmt: skip


async def test_the_accounts_recent_alerts_are_listed_with_their_delivery_state(
    ledger: Ledger, db_engine: AsyncEngine
) -> None:
    async with db_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO alerts (account, level, kind, scope, message, details, created_at,"
                " next_attempt_at) VALUES"
                " (:a, 'HIGH', 'balance_drift', 'account', 'check the USDT balance', '{}', :t, :t),"
                " ('other', 'LOW', 'x', 'account', 'not ours', '{}', :t, :t)"
            ),
            {"a": ACCOUNT, "t": T0},
        )
    snap = await gather_status(db_engine, ACCOUNT)
    assert snap.alerts is not None
    assert [(a.level, a.message, a.delivered) for a in snap.alerts] == [
        ("HIGH", "check the USDT balance", False)
    ]
    assert "alert 10:00:00 HIGH balance_drift (pending): check the USDT balance" in render_plain(
        snap
    )


def _env(database_url: URL) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": ACCOUNT,
    }


async def test_status_watch_piped_prints_plain_blocks(ledger: Ledger, database_url: URL) -> None:
    await seed(ledger)
    done = await tradectl(_env(database_url), "status", "--watch", "--count", "2",
                          "--interval", "0.1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(f"account {ACCOUNT} ---") == 2
    assert "strategy momo: paused" in done.stdout
    assert "\x1b[" not in done.stdout  # no terminal control codes in a pipe


def _run_in_terminal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run tradectl with a pseudo-terminal as stdout, as a person at a terminal would."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", *args],
        stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=ROOT,
        env={**os.environ, **env, "COLUMNS": "150", "LINES": "50", "TERM": "xterm"},
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:  # silent for a minute: never hang the suite on it
            proc.kill()
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


async def test_status_watch_at_a_terminal_draws_the_live_view(
    ledger: Ledger, database_url: URL
) -> None:
    await seed(ledger)
    code, screen = await asyncio.to_thread(
        _run_in_terminal, _env(database_url), "status", "--watch", "--count", "2",
        "--interval", "0.1",
    )  # fmt: skip
    assert code == 0, screen
    assert "\x1b[?25l" in screen  # rich's live display hides the cursor while it draws
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "┃ strategy" in screen  # the rich table, not the plain lines
    assert "warming up" in screen
    assert "strategy momo: paused" not in screen
