"""``tradectl simulator --protocol kalshi``: another process, found through its JSON line, whose
test key (written to a private file, never printed) the Kalshi adapter signs with."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from pathlib import Path

from engine.domain.types import Symbol
from engine.venues.kalshi import KalshiConfig, KalshiVenue


async def test_the_kalshi_simulator_command_serves_a_signed_client_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        "simulator",
        "--protocol",
        "kalshi",
        "--seed",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        assert "PRIVATE KEY" not in json.dumps(info)
        key = Path(info["private_key_path"])
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        venue = KalshiVenue(
            KalshiConfig(
                key_id=info["key_id"],
                private_key_path=key,
                rest_url=info["rest_url"],
                ws_url=info["ws_url"],
            )
        )
        try:
            balances = {b.asset: b for b in await venue.balances()}
            rules = await venue.instrument_rules(Symbol("KXSIM-26DEC31-T50"))
        finally:
            await venue.close()
        assert balances["USD"].free > 0
        assert rules.tick_size > 0
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
