"""The operations HTTP server: ``/metrics``, ``/healthz`` and ``/readyz``.

A small Starlette app served by uvicorn inside the engine's own event loop, started before the
database and the venue are opened (so a supervisor sees the process alive, and not ready, for
the whole of a long startup) and stopped after the engine has stopped.

- ``/metrics``: the Prometheus exposition of the default registry.
- ``/healthz``: the process is alive and its event loop answers: ``200 ok``.
- ``/readyz``: ``200`` only when every part :class:`engine.readiness.Readiness` checks is ready
  (lease held, startup reconciliation done, ledger reachable and reconciled, venue streams
  connected); otherwise ``503`` with a JSON body naming each part that is not, and why.

The listening socket is bound before anything else starts, so a port that cannot be bound is one
:class:`ConfigError` naming ``TRADECTL_METRICS_PORT``, not a traceback from inside the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import structlog
import uvicorn
from prometheus_client import REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from engine.exceptions import ConfigError
from engine.readiness import Readiness

log = structlog.get_logger("tradectl.ops_http")

#: how long a stop waits for the server to close its connections
STOP_TIMEOUT_S = 2
#: the classic text format, as prometheus_client's own server answers a scraper that asks for
#: nothing newer: every Prometheus (2.x and 3.x) reads it, and with our plain metric names it is
#: byte for byte what generate_latest writes (its CONTENT_TYPE_LATEST varies by version)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def ops_app(readiness: Readiness) -> Starlette:
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        report = readiness.report()
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or a one-line ConfigError naming the setting at fault."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"TRADECTL_METRICS_PORT: {port} is not a port (0-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(
            f"TRADECTL_METRICS_HOST: {host!r} is not an address to listen on: {exc.strerror}"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"TRADECTL_METRICS_PORT: cannot serve metrics on {host}:{port} "
            f"(TRADECTL_METRICS_HOST {host}): {exc.strerror}"
        ) from None
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """The engine owns SIGINT/SIGTERM (a graceful stop); uvicorn's own handlers would take them
    over and stop only this server. (``capture_signals`` since uvicorn 0.29, before it
    ``install_signal_handlers``.)"""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:
        pass


class OpsServer:
    """A running ops server; ``task`` is the engine task that serves it."""

    def __init__(self, sock: socket.socket, readiness: Readiness) -> None:
        self.readiness = readiness
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.host: str = host
        self.port: int = port
        self._server = _Server(
            uvicorn.Config(
                ops_app(readiness),
                lifespan="off",
                log_config=None,  # the engine's logging stays as configured
                log_level="warning",
                access_log=False,
                http="h11",
                timeout_graceful_shutdown=STOP_TIMEOUT_S,
            )
        )
        self.task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self.task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="ops-http")
        while not self._server.started:
            if self.task.done():
                self.task.result()
                raise RuntimeError("the ops HTTP server stopped during startup")
            await asyncio.sleep(0.01)
        log.info("ops_http.serving", url=self.url, paths="/metrics /healthz /readyz")

    def failure(self) -> str | None:
        """Why the server ended (or is ending) before it was stopped; ``None`` while it
        serves. Only :meth:`stop` may end it: uvicorn asked to exit by anything else (a signal
        it took for itself, say) is a failure too."""
        if self.task is None or self._stopping:
            return None
        if not self.task.done():
            return "the ops HTTP server is shutting down" if self._server.should_exit else None
        exc = None if self.task.cancelled() else self.task.exception()
        return f"the ops HTTP server ended: {exc!r}" if exc else "the ops HTTP server ended"

    async def stop(self) -> None:
        self._stopping = True
        self._server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_S * 2):
                    await asyncio.shield(self.task)
            if not self.task.done():
                self.task.cancel()
            elif not self.task.cancelled() and self.task.exception() is not None:
                log.error("ops_http.failed", error=repr(self.task.exception()))
        self._sock.close()


@contextlib.asynccontextmanager
async def serving(host: str, port: int, readiness: Readiness) -> AsyncIterator[OpsServer]:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (0: any free port)
    while the block runs."""
    server = OpsServer(bind(host, port), readiness)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
