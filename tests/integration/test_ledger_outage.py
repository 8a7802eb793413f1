"""A database outage, end to end: the engine on the paper venue against a Postgres of its own,
which the test stops and starts again.

The engine must keep running through it (no task dies), reserve nothing while the ledger is
away, report itself not ready, and trade again only after a reconcile that recorded every fill
the venue made meanwhile (by trade id).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import ops_http, runtime
from engine.config import load_settings
from engine.database import open_database
from engine.domain.types import utc_now
from engine.ledger.db import make_engine, normalize_url, upgrade_head
from engine.ledger.embedded import embedded_postgres
from engine.strategy_config import load_trading_config
from engine.venues.paper import PaperVenue
from tests.helpers import ROOT, eventually

#: long enough for several lease renewals (TTL 3 s) to fail and the lease to expire
OUTAGE_S = float(os.environ.get("TRADECTL_TEST_OUTAGE_S", "8"))


@dataclass
class Postgres:
    """An embedded server the test can stop and start on the same data directory."""

    data_dir: Path
    socket_dir: Path
    user: str | None
    url: URL

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.data_dir, user=self.user, timeout=30)

    async def stop(self) -> None:
        # fast: terminate every session at once, as a crashed or restarted server would
        await asyncio.to_thread(self._pg_ctl, "-w", "-m", "fast", "stop")

    async def start(self) -> None:
        # the same options the embedded_postgres package starts it with (socket only)
        await asyncio.to_thread(
            self._pg_ctl,
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            "-l",
            str(self.data_dir / "log"),
            "start",
        )


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    # /tmp, not tmp_path: a Unix socket path must stay short
    base = Path(tempfile.mkdtemp(prefix="tradectl-outage-", dir="/tmp"))
    try:
        with embedded_postgres(base / "pg", delete=True) as raw:
            url = normalize_url(raw)
            yield Postgres(
                data_dir=(base / "pg").resolve(),
                socket_dir=Path(str(url.query["host"])),
                # the package runs the server as this user when the tests run as root
                user="embedded_postgres" if os.geteuid() == 0 else None,
                url=url,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def outage_env(postgres: Postgres, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    await upgrade_head(postgres.url)
    env = {
        "DATABASE_URL": postgres.url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": "outage",
        "TRADECTL_VENUE": "paper",
        "TRADECTL_STRATEGIES_FILE": str(ROOT / "strategies" / "example.toml"),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
        "TRADECTL_LEASE_TTL_S": "3",
        "TRADECTL_RECONCILE_INTERVAL_S": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
async def observer(postgres: Postgres) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(postgres.url, pool_size=1)
    yield engine
    await engine.dispose()


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def ledger_trade_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT trade_id FROM fills WHERE account = 'outage'"))
        return {row[0] for row in rows}


async def test_the_engine_rides_out_a_database_outage_and_reconciles_before_trading(
    postgres: Postgres, outage_env: dict[str, str], observer: AsyncEngine
) -> None:
    settings = load_settings()
    strategies = load_trading_config(settings.strategies_file).strategies
    stop = asyncio.Event()
    async with (
        open_database(settings) as db,
        runtime.open_venue(settings, runtime.symbols_of(strategies), utc_now) as session,
        contextlib.AsyncExitStack() as stack,
    ):
        assert isinstance(session.venue, PaperVenue)
        venue = session.venue
        engine = runtime.Engine(settings, db, session, strategies)
        assert not engine.ready  # not before the startup reconcile
        ops = await stack.enter_async_context(ops_http.serving("127.0.0.1", 0, engine.readiness))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=ops.url, timeout=5))
        task = asyncio.create_task(engine.run(stop), name="engine-under-test")

        async def readyz() -> tuple[int, dict[str, str]]:
            response = await client.get("/readyz")
            return response.status_code, response.json()["parts"]

        async def alive_and(condition: Any) -> Any:
            if task.done():
                task.result()  # the engine's own error, not a timeout
            result = condition()
            return await result if inspect.isawaitable(result) else result

        async def traded() -> bool:
            return bool(await scalar(observer, "SELECT count(*) FROM fills")) and engine.ready

        try:
            await eventually(lambda: alive_and(traded), timeout=60, message="never traded")
            assert await readyz() == (
                200,
                dict.fromkeys(["lease", "startup", "ledger", "streams"], "ok"),
            )
            await observer.dispose()  # its pooled connection dies with the server anyway

            await postgres.stop()
            stopped_at = utc_now()
            down_since = time.monotonic()
            await eventually(
                lambda: alive_and(lambda: not engine.ready),
                timeout=10,
                message="the engine never noticed the outage",
            )
            # The outage lasts OUTAGE_S (past the lease's TTL); the engine must live through it.
            await eventually(
                lambda: alive_and(lambda: time.monotonic() - down_since >= OUTAGE_S),
                timeout=OUTAGE_S + 10,
                interval=0.2,
            )
            assert not task.done()
            assert not engine.ready
            status, parts = await readyz()  # alive, not ready, and saying why
            assert status == 503
            assert parts["ledger"].startswith("unavailable")
            assert (await client.get("/healthz")).status_code == 200
            restarted_at = utc_now()
            await postgres.start()

            await eventually(
                lambda: alive_and(lambda: engine.ready),
                timeout=30,
                message="the engine never became ready after the outage",
            )
            assert engine.health.outages == 1
            assert (await readyz())[0] == 200

            # Nothing was reserved while the ledger was away.
            during = await scalar(
                observer,
                "SELECT count(*) FROM orders WHERE created_at > :a AND created_at < :b",
                a=stopped_at,
                b=restarted_at,
            )
            assert during == 0

            # Trading resumed: new reservations after the restart.
            async def reserved_again() -> bool:
                return bool(
                    await scalar(
                        observer,
                        "SELECT count(*) FROM orders WHERE created_at > :t",
                        t=restarted_at,
                    )
                )

            await eventually(
                lambda: alive_and(reserved_again), timeout=30, message="never reserved again"
            )

            # Every fill the venue made (during the outage included) is in the ledger.
            venue_ids = {str(f.trade_id) for f in venue.all_fills()}
            assert venue_ids

            async def recorded() -> set[str]:
                return venue_ids - await ledger_trade_ids(observer)

            missing = await recorded()
            if missing:
                await eventually(
                    lambda: alive_and(lambda: _empty(recorded)),
                    timeout=30,
                    message=f"fills missing from the ledger: {sorted(missing)[:5]}",
                )
            # the lease outlived its TTL with nobody to take it: the same epoch renewed
            epoch = await scalar(observer, "SELECT epoch FROM leases WHERE account = 'outage'")
            assert epoch == engine.lease.epoch
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)


async def _empty(missing: Any) -> bool:
    return not await missing()
