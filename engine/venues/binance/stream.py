"""WebSocket streams: market data (combined streams) and the user data subscription.

Both are async generators that never end on their own: a dropped connection is re-opened with
exponential backoff and jitter (:func:`backoff`, a fresh generator after every successful
connect), a connection is rotated before the venue's 24-hour limit, and pings are answered by the
``websockets`` protocol itself. The user stream yields :class:`StreamReconnected` after every
re-established subscription, so the engine reconciles what it may have missed. A frame that
cannot be understood is logged and counted and skipped; it never ends the stream.

User data comes from the WebSocket API with ``userDataStream.subscribe.signature`` (listen keys
are retired). Duplicated or reordered ``executionReport`` events are passed through as they come:
deduplication by trade id is the ledger's job.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidURI, WebSocketException

from engine.domain.market import MarketEvent
from engine.domain.types import VenueName, utc_now
from engine.exceptions import AuthFailed, ConfigError, RateLimited, VenueError
from engine.venues.base import StreamReconnected, UserEvent
from engine.venues.binance import schemas
from engine.venues.binance.errors import INVALID_TIMESTAMP, Operation, classify
from engine.venues.binance.market_frames import decode_market_frame, stream_names
from engine.venues.binance.parsing import (
    StreamTerminated,
    decode_user_event,
    decode_ws_api_frame,
    record_malformed,
    skip_reason,
    ws_api_subscription_id,
)
from engine.venues.binance.signing import ServerClock, Signer, ws_signature_payload
from engine.venues.metrics import (
    MARKET,
    MARKET_STREAM,
    UNASSIGNED,
    USER,
    USER_STREAM,
    VenueMetrics,
)

log = structlog.get_logger(__name__)


def backoff(
    *,
    initial: float = 0.5,
    factor: float = 2.0,
    max_delay: float = 30.0,
    rng: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Reconnect delays: exponential, capped, each drawn in [d/2, d] ("equal jitter").

    Pure and endless; callers start a new one after every successful connection.
    """
    for attempt in itertools.count():
        delay = min(max_delay, initial * factor**attempt)
        yield delay / 2 + rng() * delay / 2


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSettings:
    #: rotate a connection this long after it opened (the venue drops it at 24 h)
    max_connection_age_s: float = 23 * 3600.0
    open_timeout_s: float = 10.0
    #: client keepalive pings; a missing pong within ``ping_timeout_s`` drops the connection
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    #: how long to wait for the subscription answer
    subscribe_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


_CONNECTION_ERRORS = (OSError, TimeoutError, WebSocketException, asyncio.IncompleteReadError)


class _Rotate(Exception):
    """The connection reached its maximum age."""


async def _recv_until(ws: ClientConnection, deadline: float) -> bytes:
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        raise _Rotate
    try:
        async with asyncio.timeout(remaining):
            message = await ws.recv()
    except TimeoutError:
        raise _Rotate from None
    return message.encode("utf-8") if isinstance(message, str) else message


class MarketStream:
    """Normalized market data for some symbols over one combined-stream connection."""

    def __init__(
        self,
        *,
        stream_url: str,
        symbols: Sequence[str],
        channels: Sequence[str],
        venue: VenueName,
        settings: StreamSettings | None = None,
        now: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        metrics: VenueMetrics | None = None,
    ) -> None:
        names = stream_names(symbols, channels)
        if not names:
            raise ValueError("market stream needs at least one symbol and one channel")
        self.url = f"{stream_url.rstrip('/')}/stream?streams={'/'.join(names)}"
        #: the venue names symbols in upper case in payloads, whatever case was asked for
        self._symbols = frozenset(s.upper() for s in symbols)
        self._venue = venue
        self._settings = settings or StreamSettings()
        self._now = now
        self._sleep = sleep
        self._rng = rng
        self._metrics = metrics or VenueMetrics(account=UNASSIGNED, venue=venue)

    async def events(self) -> AsyncIterator[MarketEvent]:
        s = self._settings
        delays = backoff(initial=s.backoff_initial_s, max_delay=s.backoff_max_s, rng=self._rng)
        while True:
            try:
                async with (
                    connect(
                        self.url,
                        open_timeout=s.open_timeout_s,
                        ping_interval=s.ping_interval_s,
                        ping_timeout=s.ping_timeout_s,
                        max_size=2**22,
                    ) as ws,
                    self._metrics.connection(MARKET),
                ):
                    delays = backoff(
                        initial=s.backoff_initial_s, max_delay=s.backoff_max_s, rng=self._rng
                    )
                    log.info("binance.market_stream_connected", venue=self._venue)
                    self._metrics.stream_up(MARKET)
                    deadline = asyncio.get_running_loop().time() + s.max_connection_age_s
                    symbols = self._symbols
                    while True:
                        raw = await _recv_until(ws, deadline)
                        try:
                            event = decode_market_frame(raw, received_at=self._now())
                        except Exception as exc:
                            # Malformed, or a decoder bug: either way only this frame is lost.
                            record_malformed(self._metrics, MARKET_STREAM, raw, skip_reason(exc))
                            continue
                        if event is None:
                            continue
                        if event.symbol not in symbols:
                            # Consumers key state by the symbols they subscribed to.
                            record_malformed(
                                self._metrics,
                                MARKET_STREAM,
                                raw,
                                f"symbol {event.symbol[:40]!r} not subscribed",
                            )
                            continue
                        yield event
            except _Rotate:
                log.info("binance.market_stream_rotated", venue=self._venue)
                continue
            except InvalidURI as exc:
                raise ConfigError(f"binance stream_url is not a WebSocket URL: {exc}") from None
            except _CONNECTION_ERRORS as exc:
                delay = next(delays)
                log.warning(
                    "binance.market_stream_disconnected",
                    venue=self._venue,
                    error=type(exc).__name__,
                    retry_in_s=round(delay, 3),
                )
                await self._sleep(delay)


#: the ``endpoint`` label of the user-data subscription request (WebSocket API)
SUBSCRIBE = "WS userDataStream.subscribe.signature"


class UserStream:
    """Order, fill and balance events for one account, via the WebSocket API."""

    def __init__(
        self,
        *,
        ws_api_url: str,
        api_key: str,
        signer: Signer,
        clock: ServerClock,
        recv_window_ms: int,
        venue: VenueName,
        resync_clock: Callable[[], Awaitable[object]] | None = None,
        settings: StreamSettings | None = None,
        now: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        metrics: VenueMetrics | None = None,
    ) -> None:
        self.url = ws_api_url
        self._api_key = api_key
        self._signer = signer
        self._clock = clock
        self._recv_window = str(recv_window_ms)
        self._venue = venue
        self._resync_clock = resync_clock
        self._settings = settings or StreamSettings()
        self._now = now
        self._sleep = sleep
        self._rng = rng
        self._metrics = metrics or VenueMetrics(account=UNASSIGNED, venue=venue)
        #: the id of the current subscription, for logs
        self.subscription_id: int | None = None
        #: since when no subscription is up (None while one is), and the last reason: the
        #: engine alerts on a connection lost for too long (engine/alert_watch.py)
        self.down_since: datetime | None = None
        self.down_reason = ""

    def __repr__(self) -> str:
        return f"UserStream(url={self.url!r})"

    def subscribe_request(self, request_id: str) -> bytes:
        """The signed ``userDataStream.subscribe.signature`` request."""
        params = {
            "apiKey": self._api_key,
            "recvWindow": self._recv_window,
            "timestamp": str(self._clock.now_ms()),
        }
        params["signature"] = self._signer.sign(ws_signature_payload(params))
        wire: dict[str, object] = {
            "apiKey": params["apiKey"],
            "recvWindow": int(params["recvWindow"]),
            "timestamp": int(params["timestamp"]),
            "signature": params["signature"],
        }
        return msgspec.json.encode(
            {"id": request_id, "method": "userDataStream.subscribe.signature", "params": wire}
        )

    async def _subscribe(self, ws: ClientConnection) -> list[UserEvent]:
        """Send the subscription and wait for its answer; events arriving first are kept."""
        request_id = uuid.uuid4().hex
        await ws.send(self.subscribe_request(request_id).decode("utf-8"))
        early: list[UserEvent] = []
        async with asyncio.timeout(self._settings.subscribe_timeout_s):
            while True:
                message = await ws.recv()
                raw = message.encode("utf-8") if isinstance(message, str) else message
                frame = self._frame(raw)
                if frame is None:
                    continue
                if frame.has_event:
                    early.extend(self._events(frame, raw))
                    continue
                if frame.id != request_id:
                    continue
                if frame.status == 200 and frame.error is None:
                    self._metrics.request(SUBSCRIBE)
                    self.subscription_id = ws_api_subscription_id(frame)
                    return early
                error = frame.error
                refused = classify(
                    operation=Operation.SUBSCRIBE,
                    http_status=frame.status,
                    code=error.code if error else None,
                    msg=error.msg if error else "",
                )
                self._metrics.request(SUBSCRIBE, refused)
                raise refused

    def _frame(self, raw: bytes) -> schemas.WsApiFrame | None:
        """The frame, or ``None`` (logged and counted) when it cannot be read."""
        try:
            return decode_ws_api_frame(raw)
        except Exception as exc:
            record_malformed(self._metrics, USER_STREAM, raw, skip_reason(exc))
            return None

    def _events(self, frame: schemas.WsApiFrame, raw: bytes) -> list[UserEvent]:
        """The reports in one event frame; none (logged and counted) when it is malformed or
        the decoder fails on it. Only :class:`StreamTerminated` leaves: it ends the
        subscription, not a message."""
        try:
            return list(
                decode_user_event(bytes(frame.event), venue=self._venue, received_at=self._now())
            )
        except StreamTerminated:
            raise
        except Exception as exc:
            # Malformed, or a decoder bug: either way only this message is lost, and the
            # reconciliation after the next reconnect or resolver pass repairs what it said.
            record_malformed(self._metrics, USER_STREAM, raw, skip_reason(exc))
            return []

    async def events(self) -> AsyncIterator[UserEvent]:
        s = self._settings
        delays = backoff(initial=s.backoff_initial_s, max_delay=s.backoff_max_s, rng=self._rng)
        connected_before = False
        reason = ""
        while True:
            try:
                async with (
                    connect(
                        self.url,
                        open_timeout=s.open_timeout_s,
                        ping_interval=s.ping_interval_s,
                        ping_timeout=s.ping_timeout_s,
                        max_size=2**22,
                    ) as ws,
                    self._metrics.connection(USER),
                ):
                    early = await self._subscribe(ws)
                    self.down_since = None
                    delays = backoff(
                        initial=s.backoff_initial_s, max_delay=s.backoff_max_s, rng=self._rng
                    )
                    log.info(
                        "binance.user_stream_subscribed",
                        venue=self._venue,
                        subscription_id=self.subscription_id,
                    )
                    self._metrics.stream_up(USER)
                    if connected_before:
                        yield StreamReconnected(
                            venue=self._venue, received_at=self._now(), reason=reason
                        )
                    connected_before = True
                    for event in early:
                        yield event
                    deadline = asyncio.get_running_loop().time() + s.max_connection_age_s
                    while True:
                        raw = await _recv_until(ws, deadline)
                        frame = self._frame(raw)
                        if frame is None or not frame.has_event:
                            continue  # an answer to nothing we are waiting for
                        for event in self._events(frame, raw):
                            yield event
            except _Rotate:
                reason = "rotated before the 24h connection limit"
                log.info("binance.user_stream_rotated", venue=self._venue)
                continue
            except StreamTerminated as exc:
                reason = f"venue ended the subscription ({exc})"
                delay = next(delays)
            except InvalidURI as exc:
                raise ConfigError(f"binance ws_api_url is not a WebSocket URL: {exc}") from None
            except AuthFailed:
                # Bad credentials do not heal by reconnecting: surface it and stop.
                raise
            except RateLimited as exc:
                reason = f"subscription rate limited: {exc}"
                delay = max(next(delays), exc.retry_after)
            except VenueError as exc:
                reason = f"subscription refused: {exc}"
                delay = next(delays)
                if exc.code == INVALID_TIMESTAMP and self._resync_clock is not None:
                    try:
                        await self._resync_clock()
                    except VenueError as sync_exc:
                        log.warning(
                            "binance.clock_resync_failed", venue=self._venue, error=str(sync_exc)
                        )
            except _CONNECTION_ERRORS as exc:
                reason = f"connection lost ({type(exc).__name__})"
                delay = next(delays)
            if self.down_since is None:
                self.down_since = self._now()
            self.down_reason = reason
            log.warning(
                "binance.user_stream_disconnected",
                venue=self._venue,
                reason=reason,
                retry_in_s=round(delay, 3),
            )
            await self._sleep(delay)


__all__ = [
    "MarketStream",
    "StreamSettings",
    "UserStream",
    "backoff",
]
