"""Run the Kalshi simulator on a real socket (uvicorn inside the running loop), with a fresh
RSA key pair whose private PEM the handle hands to clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from engine.venues.kalshi.signing import generate_key_pair
from engine.venues.kalshi_simulator.app import PREFIX, KalshiSimApp
from engine.venues.kalshi_simulator.config import KalshiSimConfig
from engine.venues.kalshi_simulator.state import KalshiSimState


@dataclass(slots=True, kw_only=True)
class KalshiSimHandle:
    state: KalshiSimState
    host: str
    port: int
    key_id: str
    #: the test key pair's private key (PEM): what a client signs with
    private_key_pem: str = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"{self.base_url}{PREFIX}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/trade-api/ws/v2"


@contextlib.asynccontextmanager
async def run_kalshi_simulator(
    config: KalshiSimConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[KalshiSimHandle]:
    config = config or KalshiSimConfig()
    state = KalshiSimState(config)
    key, pem = generate_key_pair()
    stopping = asyncio.Event()
    app = KalshiSimApp(state, key.public_key(), stopping=stopping)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            ws="websockets-sansio",
            http="h11",
            timeout_graceful_shutdown=2,
        )
    )
    serve = asyncio.create_task(server.serve(), name="kalshi-sim-uvicorn")
    while not server.started:
        if serve.done():
            serve.result()
            raise RuntimeError("kalshi simulator exited during startup")
        await asyncio.sleep(0.01)
    bound = int(server.servers[0].sockets[0].getsockname()[1])
    try:
        yield KalshiSimHandle(
            state=state, host=host, port=bound, key_id=config.key_id, private_key_pem=pem
        )
    finally:
        stopping.set()
        server.should_exit = True
        await asyncio.gather(serve, return_exceptions=True)


def write_key(pem: str) -> Path:
    """The test private key in a fresh 0600 file: clients read it from there (it never goes to
    stdout or a log, like any key)."""
    directory = Path(tempfile.mkdtemp(prefix="kalshi-sim-"))
    path = directory / "private_key.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(pem)
    return path


def serve_forever(config: KalshiSimConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
    """Run until SIGINT/SIGTERM; print one JSON line with the URLs, the key id and the path of
    the test private key generated at start."""

    async def main() -> None:
        async with run_kalshi_simulator(config, host, port) as sim:
            key_path = write_key(sim.private_key_pem)
            print(
                json.dumps(
                    {
                        "protocol": "kalshi",
                        "rest_url": sim.rest_url,
                        "ws_url": sim.ws_url,
                        "admin_url": f"{sim.base_url}/admin",
                        "port": sim.port,
                        "key_id": sim.key_id,
                        "private_key_path": str(key_path),
                        "seed": config.seed,
                    }
                ),
                flush=True,
            )
            done = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, done.set)
            try:
                await done.wait()
            finally:
                shutil.rmtree(key_path.parent, ignore_errors=True)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(0)
