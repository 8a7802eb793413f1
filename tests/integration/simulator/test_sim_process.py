"""The standalone simulator: another process, found through the JSON line it prints."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import httpx

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "simulator"


async def test_standalone_simulator_serves_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.venues.simulator",
        "--seed",
        "4",
        "--faults",
        str(RESOURCES / "faults.toml"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        info = json.loads(line)
        assert info["seed"] == 4
        async with httpx.AsyncClient(base_url=info["rest_url"]) as http:
            assert (await http.get("/api/v3/ping")).status_code == 200
            assert (await http.get("/api/v3/time")).status_code == 503  # the planned fault
            state = (await http.get(f"{info['admin_url']}/state")).json()
            assert state["faults"]["counters"]["http_5xx"] == 1
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
