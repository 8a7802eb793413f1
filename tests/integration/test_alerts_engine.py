"""Alerts end to end: the engine on the built-in simulator delivers to a real local HTTP channel
(apprise ``json://``), and an alert written while the channel is down survives a restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

import engine.venues.simulator as simulator
from engine import runtime
from engine.config import load_settings
from engine.domain.alerts import AlertDraft, AlertLevel
from engine.domain.types import AccountId, VenueName
from engine.ledger.ledger import Ledger
from engine.venues.simulator import SimulatorHandle
from tests.helpers import ROOT, eventually, tradectl
from tests.integration.alert_receiver import Receiver

ACCOUNT = "alerting"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
def engine_env(
    database_url: URL, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": ACCOUNT,
        "TRADECTL_VENUE": "simulator",
        "TRADECTL_STRATEGIES_FILE": str(ROOT / "strategies" / "example.toml"),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
        "TRADECTL_BALANCE_SETTLE_S": "1",
        "TRADECTL_RECONCILE_INTERVAL_S": "1",
        "TRADECTL_ALERT_URLS": receiver.url,
        "TRADECTL_ALERT_RETRY_S": "0.2",
        "TRADECTL_ALERT_RETRY_MAX_S": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def sims(monkeypatch: pytest.MonkeyPatch) -> list[SimulatorHandle]:
    """The handle of each simulator the engine starts (its admin endpoints inject facts)."""
    handles: list[SimulatorHandle] = []
    start = simulator.run_simulator

    @contextlib.asynccontextmanager
    async def recorded(*args: Any, **kwargs: Any) -> AsyncIterator[SimulatorHandle]:
        async with start(*args, **kwargs) as handle:
            handles.append(handle)
            yield handle

    monkeypatch.setattr(simulator, "run_simulator", recorded)
    return handles


async def scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


@contextlib.asynccontextmanager
async def running(until: Callable[[], Awaitable[Any]], what: str) -> AsyncIterator[None]:
    """The engine (``runtime.run``, as ``tradectl run``) until ``until`` holds, then stopped."""
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name="engine-under-test")

    async def ready() -> Any:
        if task.done():
            task.result()
        return await until()

    try:
        await eventually(ready, timeout=60, message=what)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def test_a_deposit_delivers_one_critical_balance_drift_alert(
    engine_env: dict[str, str],
    db_engine: AsyncEngine,
    sims: list[SimulatorHandle],
    receiver: Receiver,
) -> None:
    async def traded() -> bool:
        return bool(await scalar(db_engine, "SELECT count(*) FROM fills"))

    def drift_alerts() -> list[dict[str, Any]]:
        return [m for m in receiver.received if "balance_drift" in m["title"]]

    async with running(traded, "the engine never traded"):
        [sim] = sims
        async with httpx.AsyncClient(base_url=sim.admin_url, timeout=10) as admin:
            response = await admin.post("/deposit", json={"asset": "USDT", "amount": "250"})
            response.raise_for_status()
        await eventually(drift_alerts, timeout=30, message="no drift alert arrived")
    [alert] = drift_alerts()
    assert alert["title"].startswith(f"[CRITICAL] tradectl {ACCOUNT}: balance_drift")
    assert "USDT" in alert["message"]
    assert "tradectl reconcile --accept-balances" in alert["message"]
    assert "Reconciliation incident" in alert["message"]
    assert alert["type"] == "failure"
    rows = await scalar(db_engine, "SELECT count(*) FROM alerts WHERE kind = 'balance_drift'")
    assert rows == 1


async def test_an_alert_written_while_the_channel_is_down_is_delivered_after_a_restart(
    engine_env: dict[str, str], db_engine: AsyncEngine, receiver: Receiver
) -> None:
    await receiver.stop()  # the channel is down; its port stays the configured one
    written: list[tuple[Ledger, int]] = []

    async def tried() -> bool:
        if not written:
            # the account the engine trades as (the demo exchange may pick a fresh one)
            account = await scalar(db_engine, "SELECT coalesce(max(account), '') FROM leases")
            if not account:
                return False
            ledger = Ledger(db_engine, account=AccountId(account), venue=VenueName("simulator"))
            draft = AlertDraft(
                level=AlertLevel.HIGH, kind="daily_loss", scope="account:x", message="survive me"
            )
            written.append((ledger, await ledger.alerts.add(draft)))
        ledger, alert_id = written[0]
        row = await ledger.alerts.get(alert_id)
        return row is not None and row.attempts >= 2

    async with running(tried, "the engine never tried to deliver the alert"):
        pass
    [(ledger, alert_id)] = written
    row = await ledger.alerts.get(alert_id)
    assert row is not None
    assert row.delivered_at is None
    assert row.last_error is not None

    await receiver.start()

    async def delivered() -> bool:
        row = await ledger.alerts.get(alert_id)
        return row is not None and row.delivered_at is not None

    async with running(delivered, "the alert was not delivered after the restart"):
        pass
    assert [m["message"].split("\n\n")[0] for m in receiver.received] == ["survive me"]


# -- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(database_url: URL, receiver: Receiver) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": ACCOUNT,
        "TRADECTL_VENUE": "paper",
        "TRADECTL_ALERT_URLS": receiver.url,
    }


async def test_alerts_test_sends_through_the_outbox_and_alerts_lists_it_delivered(
    cli_env: dict[str, str], receiver: Receiver, db_engine: AsyncEngine
) -> None:
    proc = await tradectl(cli_env, "alerts", "test")
    assert proc.returncode == 0, proc.stderr
    assert "delivered to 1 channel(s)" in proc.stdout
    [sent] = receiver.received
    assert sent["title"] == f"[LOW] tradectl {ACCOUNT}: test (account:{ACCOUNT})"
    assert "the channel works" in sent["message"]
    assert await scalar(db_engine, "SELECT count(*) FROM alerts WHERE delivered_at IS NOT NULL")

    listed = await tradectl(cli_env, "alerts")
    assert listed.returncode == 0, listed.stderr
    assert "delivered" in listed.stdout
    assert "undelivered in account alerting: 0" in listed.stdout
    assert "channel #1: JSON json://127.0.0.1" in listed.stdout


async def test_alerts_test_exits_1_and_keeps_the_alert_when_the_channel_is_down(
    cli_env: dict[str, str], receiver: Receiver, db_engine: AsyncEngine
) -> None:
    await receiver.stop()
    proc = await tradectl(cli_env, "alerts", "test")
    assert proc.returncode == 1
    assert "not delivered" in proc.stderr
    assert "the engine retries it" in proc.stderr
    undelivered = await scalar(
        db_engine, "SELECT count(*) FROM alerts WHERE delivered_at IS NULL AND attempts = 1"
    )
    assert undelivered == 1


async def test_a_bad_alert_url_is_a_one_line_error_that_hides_the_url(
    cli_env: dict[str, str],
) -> None:
    proc = await tradectl({**cli_env, "TRADECTL_ALERT_URLS": "nope://tok3n@x"}, "alerts", "test")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: TRADECTL_ALERT_URLS: entry #1 (nope://…)")
    assert "tok3n" not in proc.stderr
