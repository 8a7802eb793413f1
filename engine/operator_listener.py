"""The owning engine's ear for operator requests: ``LISTEN`` on the account's channel (and the
global one) on a dedicated connection, and wake whoever waits for operator work.

The pool's connections cannot listen (a notification arrives on the connection that listened,
and pooled connections are lent out and recycled), so this holds one asyncpg connection of its
own. It reconnects when that connection drops (a failover, ``pg_terminate_backend``, a network
cut noticed by the ping), and wakes everyone after each reconnect: a notification sent while it
was not listening is lost, and the refresh it triggers reads the state anyway. The callers keep
polling as the fallback (``TRADECTL_OPERATOR_POLL_S``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import URL

from engine.ledger.db import asyncpg_connect_kwargs
from engine.ledger.operator_channel import GLOBAL_CHANNEL, operator_channel
from engine.metrics import operator_wakeup
from engine.outage import ThrottledLog
from engine.tasks import wait_event

log = structlog.get_logger("tradectl.operator")

#: how often the idle listening connection is pinged: a half-open connection (no FIN after a
#: network cut or a failover) is noticed within this, not at the next TCP keepalive
PING_S = 5.0
RETRY_MIN_S = 0.2
RETRY_MAX_S = 10.0
APPLICATION_NAME = "tradectl-listen"


class OperatorListener:
    def __init__(self, url: URL, account: str) -> None:
        self.url = url
        self.account = account
        self.channels = (operator_channel(account), GLOBAL_CHANNEL)
        self._waiters: list[asyncio.Event] = []
        #: listening now (tests and the log read it)
        self.listening = False
        self.connections = 0
        self._throttled = ThrottledLog(log)

    def subscribe(self) -> asyncio.Event:
        """An event set on every notification (and after each reconnect); the subscriber
        clears it when it has refreshed."""
        event = asyncio.Event()
        self._waiters.append(event)
        return event

    def _wake(self, via: str) -> None:
        operator_wakeup(self.account, via)
        for event in self._waiters:
            event.set()

    def _on_notify(self, _conn: Any, _pid: int, channel: str, payload: object) -> None:
        log.debug("operator.notified", channel=channel, payload=payload)
        self._wake("notify")

    async def run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            try:
                await self._listen()
                delay = RETRY_MIN_S
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self._throttled.warning(
                    "listen", "operator.listen_failed", error=f"{type(exc).__name__}: {exc}"
                )
            self.listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _listen(self) -> None:
        """One listening connection, until it drops."""
        kwargs = asyncpg_connect_kwargs(self.url)
        conn: asyncpg.Connection = await asyncpg.connect(  # type: ignore[call-overload]
            **kwargs, server_settings={"application_name": APPLICATION_NAME}
        )
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _c: closed.set())
        try:
            for channel in self.channels:
                await conn.add_listener(channel, self._on_notify)
            self.listening = True
            self.connections += 1
            log.info("operator.listening", channels=list(self.channels))
            # whatever was notified while nobody listened: refresh now
            self._wake("reconnect")
            while not closed.is_set():
                if await wait_event(closed, PING_S):
                    break
                async with asyncio.timeout(PING_S):
                    await conn.execute("SELECT 1")
            log.warning("operator.listen_connection_lost")
        finally:
            self.listening = False
            with contextlib.suppress(Exception):
                await conn.close(timeout=1)
