"""The ops endpoints of a running engine, over HTTP: ``/healthz``, ``/readyz``, the venue
metrics on ``/metrics`` while the engine trades against the built-in simulator, and every
metric the Grafana dashboard queries.

The engine is ``runtime.run`` on the simulator with ``TRADECTL_METRICS_PORT=0``; the test learns
the port from the ops server the runtime starts, and the simulator's handle (for its fault
plan) from the simulator the runtime starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

import engine.venues.simulator as simulator
from engine import ops_http, runtime
from engine.config import load_settings
from engine.domain.types import AccountId, VenueName
from engine.ledger.ledger import Ledger
from engine.venues.binance.stream import SUBSCRIBE
from engine.venues.simulator import FaultPlan, SimulatorHandle
from tests.helpers import ROOT, eventually
from tests.unit.test_deployment import dashboard_exprs

ACCOUNT = "ops"


@pytest.fixture
def engine_env(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": ACCOUNT,
        "TRADECTL_VENUE": "simulator",
        "TRADECTL_STRATEGIES_FILE": str(ROOT / "strategies" / "example.toml"),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
        # a standby polls for the lease every ttl/3
        "TRADECTL_LEASE_TTL_S": "3",
        "TRADECTL_METRICS_PORT": "0",
        "TRADECTL_METRICS_HOST": "127.0.0.1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> list[ops_http.OpsServer]:
    """The ops server the runtime starts (it listens on an ephemeral port)."""
    started: list[ops_http.OpsServer] = []
    serving = ops_http.serving

    @contextlib.asynccontextmanager
    async def recorded(*args: Any, **kwargs: Any) -> AsyncIterator[ops_http.OpsServer]:
        async with serving(*args, **kwargs) as server:
            started.append(server)
            yield server

    monkeypatch.setattr(ops_http, "serving", recorded)
    return started


@pytest.fixture
def sims(monkeypatch: pytest.MonkeyPatch) -> list[SimulatorHandle]:
    handles: list[SimulatorHandle] = []
    start = simulator.run_simulator

    @contextlib.asynccontextmanager
    async def recorded(*args: Any, **kwargs: Any) -> AsyncIterator[SimulatorHandle]:
        async with start(*args, **kwargs) as handle:
            handles.append(handle)
            yield handle

    monkeypatch.setattr(simulator, "run_simulator", recorded)
    return handles


@contextlib.asynccontextmanager
async def running_engine(
    servers: list[ops_http.OpsServer],
) -> AsyncIterator[tuple[asyncio.Task[None], httpx.AsyncClient]]:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name="engine-under-test")

    def serving() -> bool:
        if task.done():
            task.result()  # the engine's own error, not a timeout
        return bool(servers)

    try:
        await eventually(serving, timeout=30, message="the ops server never started")
        async with httpx.AsyncClient(base_url=servers[0].url, timeout=5) as client:
            yield task, client
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def readyz(client: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    response = await client.get("/readyz")
    return response.status_code, response.json()["parts"]


async def test_healthz_answers_ok_and_readyz_names_what_is_not_ready_until_the_engine_is(
    engine_env: dict[str, str],
    servers: list[ops_http.OpsServer],
    db_engine: AsyncEngine,
) -> None:
    # Another engine holds the account: this one waits as a standby, before its startup
    # reconciliation, until that lease is released.
    other = Ledger(db_engine, account=AccountId(ACCOUNT), venue=VenueName("simulator"))
    epoch = await other.leases.acquire("other-engine", timedelta(seconds=60))
    assert epoch is not None
    async with running_engine(servers) as (_, client):
        health = await client.get("/healthz")
        assert (health.status_code, health.text) == (200, "ok\n")

        async def standby() -> dict[str, str] | None:
            status, parts = await readyz(client)
            return parts if status == 503 and "lease" in parts else None

        parts = await eventually(standby, timeout=30, message="never reported the standby")
        assert parts["lease"].startswith("not held")
        assert parts["startup"] == "startup reconciliation not done yet"
        assert parts["streams"] == "market and user stream not connected"
        assert parts["ledger"] == "ok"

        await other.leases.release("other-engine", epoch)

        async def ready() -> bool:
            status, parts = await readyz(client)
            return status == 200 and set(parts.values()) == {"ok"}

        await eventually(ready, timeout=60, message="never became ready")
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/nothing-here")).status_code == 404


def samples(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


async def test_venue_metrics_follow_requests_streams_and_skipped_messages(
    engine_env: dict[str, str],
    servers: list[ops_http.OpsServer],
    sims: list[SimulatorHandle],
) -> None:
    mine = {"account": ACCOUNT, "venue": "simulator"}
    async with running_engine(servers) as (_, client):

        async def scrape() -> str:
            response = await client.get("/metrics")
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            return response.text

        async def trading() -> bool:
            text = await scrape()
            return (
                samples(text, "tradectl_venue_requests_total", **mine, outcome="ok") > 0
                and samples(
                    text, "tradectl_venue_requests_total", **mine, endpoint="POST /api/v3/order"
                )
                > 0
                and samples(text, "tradectl_stream_connected", **mine, stream="market") == 1
                and samples(text, "tradectl_stream_connected", **mine, stream="user") == 1
            )

        await eventually(trading, timeout=60, message="never sent orders with streams up")
        text = await scrape()
        headroom = samples(
            text, "tradectl_venue_rate_limit_headroom", **mine, limit="request_weight_1m"
        )
        assert 0 < headroom < 1
        assert 0 <= samples(text, "tradectl_marketdata_age_seconds", account=ACCOUNT) < 60
        assert (
            samples(text, "tradectl_venue_requests_total", **mine, endpoint=SUBSCRIBE, outcome="ok")
            >= 1
        )
        reconnects = {
            stream: samples(text, "tradectl_stream_reconnects_total", **mine, stream=stream)
            for stream in ("market", "user")
        }
        skipped = samples(text, "tradectl_malformed_messages_total", **mine, source="market_stream")

        # The simulator drops each stream once and garbles one market frame.
        [sim] = sims
        sim.state.set_faults(
            FaultPlan.from_mapping(
                [
                    {"kind": "ws_disconnect_market", "probability": 1.0, "max_count": 1},
                    {"kind": "ws_disconnect_user", "probability": 1.0, "max_count": 1},
                    {"kind": "malformed_market_data", "probability": 1.0, "max_count": 1},
                ]
            )
        )

        async def counted() -> bool:
            text = await scrape()
            return (
                all(
                    samples(text, "tradectl_stream_reconnects_total", **mine, stream=stream)
                    == reconnects[stream] + 1
                    and samples(text, "tradectl_stream_connected", **mine, stream=stream) == 1
                    for stream in ("market", "user")
                )
                and samples(
                    text, "tradectl_malformed_messages_total", **mine, source="market_stream"
                )
                == skipped + 1
            )

        await eventually(counted, timeout=60, message="reconnect or skipped frame not counted")
        counts = sim.state.fault_counts()
        assert counts["ws_disconnect_market"] == counts["ws_disconnect_user"] == 1


#: what a histogram's series are called beside its own name
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def exported(exposition: str) -> set[str]:
    """Every series name /metrics declares, whether or not a labelled series exists yet (a
    counter nothing has counted yet is still exported, with its HELP and TYPE)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names.update(name + suffix for suffix in HISTOGRAM_SERIES)
    return names


async def test_every_metric_the_dashboard_queries_is_exported_by_a_running_engine(
    engine_env: dict[str, str],
    servers: list[ops_http.OpsServer],
) -> None:
    wanted = {name for expr in dashboard_exprs() for name in re.findall(r"\btradectl_\w+", expr)}
    assert len(wanted) > 20
    async with running_engine(servers) as (_, client):

        async def started() -> bool:
            status, _ = await readyz(client)
            return status == 200

        await eventually(started, timeout=60, message="never became ready")
        names = exported((await client.get("/metrics")).text)
    assert sorted(wanted - names) == []


async def test_sigterm_stops_a_tradectl_run_gracefully_with_its_ops_server(
    database_url: URL,
) -> None:
    """uvicorn in the engine's loop must not take SIGTERM for itself: the engine stops
    gracefully (exit 0), and only then does the ops server go."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": "ops-process",
        "TRADECTL_VENUE": "simulator",
        "TRADECTL_STRATEGIES_FILE": str(ROOT / "strategies" / "example.toml"),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
        "TRADECTL_METRICS_PORT": "0",
        "TRADECTL_LOG_FORMAT": "json",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "run",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None
    assert stderr is not None
    serving: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    events: list[str] = []

    async def read_logs() -> None:
        # read to the end: a full pipe would block the engine's logging
        async for line in stderr:
            entry = json.loads(line)
            events.append(entry["event"])
            if entry["event"] == "ops_http.serving" and not serving.done():
                serving.set_result(entry["url"])
        if not serving.done():
            serving.set_exception(AssertionError("the engine exited before serving"))

    reader = asyncio.create_task(read_logs())
    try:
        url = await asyncio.wait_for(serving, timeout=60)
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready, timeout=60, message="the engine never became ready")
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                out = await stdout.read()
                await proc.wait()
        assert proc.returncode == 0
        # json mode: nothing on stdout, the stop is an event on stderr
        assert out == b""
        await reader
        assert "engine.stopped" in events
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reader
