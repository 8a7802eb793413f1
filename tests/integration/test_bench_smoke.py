"""Each benchmark in bench/ runs end to end at a tiny size and reports work done.

Not a measurement (tests never assert times): a bench whose driver stopped seeing orders after
an engine change printed ``"orders": 0`` for every configuration, a figure that reads like a
result. These runs fail on a bench that errors, prints no JSON line, or measured nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from sqlalchemy.engine import URL

from tests.helpers import ROOT


def _bench(script: str, args: list[str], server: URL, timeout: float = 240) -> list[dict[str, Any]]:
    env = {**os.environ, "DATABASE_URL": server.render_as_string(hide_password=False)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"bench/{script} failed:\n{done.stderr[-3000:]}"
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"bench/{script} printed no JSON line:\n{done.stdout[-2000:]}"
    return lines


def test_the_scale_bench_counts_durable_orders_of_each_configuration(pg_server_url: URL) -> None:
    lines = _bench(
        "scale.py",
        ["--engines", "1,2", "--accounts", "2", "--seconds", "1", "--ceiling-connections", "1"],
        pg_server_url,
    )
    ceiling = [line for line in lines if line["kind"] == "commit_ceiling"]
    engines = [line for line in lines if line["kind"] == "engines"]
    assert [c["connections"] for c in ceiling] == [1]
    assert float(ceiling[0]["commits_per_s"]) > 0
    assert [(e["engines"], e["accounts"]) for e in engines] == [(1, 2), (2, 2)]
    for e in engines:
        assert int(e["orders"]) > 0, e
        assert e["failed_tasks"] == []
        assert float(e["commits_per_order"]) > 0


def test_the_execution_bench_acknowledges_every_order_and_replays_its_floor(
    pg_server_url: URL,
) -> None:
    (line,) = _bench("execution.py", ["--orders", "200", "--warmup", "50"], pg_server_url)
    assert line["orders"] == 200
    assert line["warmup"] == 50
    # only the timed orders' transactions are counted: well under one commit per order
    assert 0 < float(line["commits_per_order"]) < 1
    assert float(line["orders_per_s"]) > 0
    assert float(line["floor_orders_per_s"]) > 0
    assert line["floor_pending"] == 0


def test_the_latency_timeline_stamps_every_step_of_each_order(pg_server_url: URL) -> None:
    (line,) = _bench("latency_timeline.py", ["--orders", "30", "--warmup", "5"], pg_server_url)
    assert line["orders"] == 30
    # every interval was measured: a step whose hook no longer runs leaves its p50 at 0
    assert all(float(p50) > 0 for p50 in line["steps_p50_ms"].values()), line
    assert float(line["statement_first_step_cpu_p50_ms"]) > 0
    assert float(line["ack_statement_first_step_cpu_p50_ms"]) > 0


def test_the_recovery_bench_makes_unknown_and_open_orders_ready(pg_server_url: URL) -> None:
    (line,) = _bench("recovery.py", ["--orders", "200", "--latency-ms", "1"], pg_server_url)
    assert line["orders"] == 200
    for state in ("UNKNOWN", "OPEN"):
        run = line[state]
        assert isinstance(run, dict)
        assert run["ready_s"] > 0
        # every UNKNOWN order was resolved by the time the engine was ready
        assert run["unresolved_after"] == 0
