"""Running the simulator: in-process for tests (``run_simulator``), or standalone
(``serve_forever``, behind ``tradectl simulator``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from engine.tasks import wait_event
from engine.venues.simulator.app import SimulatorApp
from engine.venues.simulator.config import SimulatorConfig
from engine.venues.simulator.state import Clock, SimulatorState


@dataclass(slots=True, kw_only=True)
class SimulatorHandle:
    """A running simulator. URLs are bases: ``rest_url`` + ``/api/v3/...``; ``stream_url`` +
    ``/ws/<stream>`` or ``/stream?streams=a/b``; ``ws_api_url`` is the full WebSocket API URL."""

    state: SimulatorState
    host: str
    port: int
    _server: Any
    _stopping: asyncio.Event
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _stopped: bool = False

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.port}/admin"

    @property
    def ws_api_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws-api/v3"

    @property
    def stream_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def step(self, steps: int = 1) -> None:
        """Move the market now (tests use this with ``market_interval=None``)."""
        for _ in range(steps):
            self.state.step()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._server.should_exit = True
        for task in self._tasks:
            if task.get_name() == "sim-ticker":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _ticker(state: SimulatorState, interval: float, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        await wait_event(stopping, interval)
        if not stopping.is_set():
            state.step()


@contextlib.asynccontextmanager
async def run_simulator(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    clock: Clock | None = None,
    restore_from: str | Path | None = None,
    state: SimulatorState | None = None,
) -> AsyncIterator[SimulatorHandle]:
    """Start the simulator on ``host:port`` (0 picks a free port) inside the running loop.

    ``state``: serve this (already restored) state instead of a new one built from ``config``.
    """
    if state is None:
        state = SimulatorState(config, clock=clock)
    if restore_from is not None:
        state.restore(restore_from)
    stopping = asyncio.Event()
    app = SimulatorApp(state, stopping=stopping)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
            ws="websockets-sansio",
            http="h11",
            timeout_graceful_shutdown=2,
        )
    )
    # uvicorn installs signal handlers only in ``run()``; ``serve`` inside our loop leaves
    # the host's handlers alone
    serve = asyncio.create_task(server.serve(), name="sim-uvicorn")
    while not server.started:
        if serve.done():
            serve.result()  # raises the startup error (e.g. port in use)
            raise RuntimeError("simulator server exited during startup")
        await asyncio.sleep(0.01)
    sock = server.servers[0].sockets[0]
    bound_port = int(sock.getsockname()[1])
    handle = SimulatorHandle(
        state=state, host=host, port=bound_port, _server=server, _stopping=stopping
    )
    handle._tasks.append(serve)
    if config.market_interval:
        handle._tasks.append(
            asyncio.create_task(_ticker(state, config.market_interval, stopping), name="sim-ticker")
        )
    try:
        yield handle
    finally:
        await handle.stop()


def serve_forever(
    config: SimulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    restore_from: str | Path | None = None,
) -> None:
    """Run a standalone simulator until SIGINT/SIGTERM.

    Prints one JSON line on stdout once listening (``{"rest_url": ..., "ws_api_url": ...,
    "stream_url": ..., "admin_url": ..., "port": ...}``) so a parent process can find it.
    """

    async def main() -> None:
        async with run_simulator(config, host, port, restore_from=restore_from) as sim:
            print(
                json.dumps(
                    {
                        "rest_url": sim.rest_url,
                        "ws_api_url": sim.ws_api_url,
                        "stream_url": sim.stream_url,
                        "admin_url": sim.admin_url,
                        "port": sim.port,
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
            await done.wait()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # pragma: no cover - the signal handler normally wins
        sys.exit(0)
