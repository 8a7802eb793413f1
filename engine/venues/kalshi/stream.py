"""The Kalshi WebSocket (``/trade-api/ws/v2``): one signed connection per stream, re-opened with
backoff when it drops. The user stream subscribes ``fill`` and ``user_orders`` (both carry the
client order id) and yields :class:`StreamReconnected` after every re-established connection;
the market stream subscribes ``orderbook_delta`` and ``trade`` for its markets (read by
:mod:`engine.venues.kalshi.marketdata`, which resubscribes the book through
:meth:`KalshiStream.send` after a sequence gap). A frame that cannot be read is logged, counted
and skipped: it never ends the stream. Duplicated or reordered messages pass through as
they come (the ledger deduplicates fills by trade id).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime

import msgspec
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException

from engine.domain.market import MarketEvent
from engine.domain.types import VenueName
from engine.exceptions import AuthFailed, ConfigError, MalformedMessage
from engine.venues.base import StreamReconnected, UserEvent
from engine.venues.binance.parsing import record_malformed, skip_reason
from engine.venues.binance.stream import StreamSettings, backoff
from engine.venues.kalshi import parsing, schemas
from engine.venues.kalshi.signing import WS_PATH, KalshiSigner
from engine.venues.metrics import MARKET_STREAM, USER_STREAM, VenueMetrics

log = structlog.get_logger(__name__)

_ENVELOPE = msgspec.json.Decoder(schemas.WsEnvelope)
_FILL = msgspec.json.Decoder(schemas.WsFill)
_USER_ORDER = msgspec.json.Decoder(schemas.WsUserOrder)
_TICKER = msgspec.json.Decoder(schemas.WsTicker)
_ERROR = msgspec.json.Decoder(schemas.WsError)
_ENCODER = msgspec.json.Encoder()
_CONNECTION_ERRORS = (OSError, TimeoutError, WebSocketException, asyncio.IncompleteReadError)


class KalshiStream:
    """One authenticated connection subscribed to ``channels``; ``decode`` turns data frames
    into events. ``announce_reconnects`` makes it yield :class:`StreamReconnected`."""

    def __init__(
        self,
        *,
        url: str,
        signer: KalshiSigner,
        channels: Sequence[str],
        market_tickers: Sequence[str] = (),
        params: Mapping[str, object] | None = None,
        venue: VenueName,
        metrics: VenueMetrics,
        stream: str,
        source: str,
        settings: StreamSettings,
        now: Callable[[], datetime],
        announce_reconnects: bool,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.url = url
        self._signer = signer
        self._channels = list(channels)
        self._tickers = list(market_tickers)
        #: further subscribe parameters (``use_yes_price`` for the order book)
        self._params = dict(params or {})
        #: the open connection, for commands sent while it runs (a resubscribe)
        self._ws: ClientConnection | None = None
        self._venue = venue
        self._metrics = metrics
        #: the ``stream`` label of its connected gauge (``market`` / ``user``)
        self._stream = stream
        #: the ``source`` label of what this connection skips (``market_stream`` / ``user_stream``)
        self._source = source
        self._settings = settings
        self._now = now
        self._announce = announce_reconnects
        self._rng = rng
        self._ids = itertools.count(1)

    def _subscribe_frame(self) -> str:
        return self._command("subscribe", self.subscribe_params(self._channels))

    def subscribe_params(self, channels: Sequence[str]) -> dict[str, object]:
        params: dict[str, object] = {"channels": list(channels)}
        if self._tickers:
            params["market_tickers"] = self._tickers
        return params | self._params

    def _command(self, cmd: str, params: Mapping[str, object]) -> str:
        command = {"id": next(self._ids), "cmd": cmd, "params": params}
        return _ENCODER.encode(command).decode()  # a text frame, as JSON commands are

    async def send(self, cmd: str, params: Mapping[str, object]) -> bool:
        """Send a command on the open connection; ``False`` when there is none (or it just
        broke): the next connection subscribes afresh anyway."""
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(self._command(cmd, params))
        except _CONNECTION_ERRORS:
            return False
        return True

    async def frames(self) -> AsyncIterator[schemas.WsEnvelope | StreamReconnected]:
        s = self._settings
        delays = backoff(initial=s.backoff_initial_s, max_delay=s.backoff_max_s, rng=self._rng)
        connected_before = False
        reason = ""
        while True:
            try:
                headers = self._signer.headers("GET", WS_PATH)
                async with (
                    connect(
                        self.url,
                        additional_headers=headers,
                        open_timeout=s.open_timeout_s,
                        ping_interval=s.ping_interval_s,
                        ping_timeout=s.ping_timeout_s,
                        max_size=2**22,
                    ) as ws,
                    self._metrics.connection(self._stream),
                ):
                    self._ws = ws
                    await ws.send(self._subscribe_frame())
                    self._metrics.stream_up(self._stream)
                    delays = backoff(
                        initial=s.backoff_initial_s, max_delay=s.backoff_max_s, rng=self._rng
                    )
                    if connected_before and self._announce:
                        yield StreamReconnected(
                            venue=self._venue, received_at=self._now(), reason=reason
                        )
                    connected_before = True
                    try:
                        async for raw in ws:
                            frame = self._frame(raw)
                            if frame is not None:
                                yield frame
                    finally:
                        self._ws = None
                reason = "the venue closed the connection"
                delay = next(delays)
            except InvalidURI as exc:
                raise ConfigError(f"kalshi ws_url is not a WebSocket URL: {exc}") from None
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    raise AuthFailed(
                        f"kalshi WebSocket refused our credentials (HTTP {status})",
                        http_status=status,
                    ) from None
                reason = f"handshake refused (HTTP {status})"
                delay = next(delays)
            except _CONNECTION_ERRORS as exc:
                reason = f"connection lost ({type(exc).__name__})"
                delay = next(delays)
            log.warning(
                "kalshi.stream_disconnected",
                venue=self._venue,
                channels=self._channels,
                reason=reason,
                retry_in_s=round(delay, 3),
            )
            await asyncio.sleep(delay)

    def _frame(self, raw: str | bytes) -> schemas.WsEnvelope | None:
        data = raw.encode() if isinstance(raw, str) else raw
        try:
            frame = _ENVELOPE.decode(data)
        except msgspec.DecodeError as exc:
            record_malformed(self._metrics, self._source, data, f"undecodable kalshi frame: {exc}")
            return None
        if frame.type == "error":
            try:
                detail = _ERROR.decode(frame.msg).msg if frame.msg else ""
            except msgspec.DecodeError:
                detail = bytes(frame.msg)[:200].decode("utf-8", "replace")
            log.warning("kalshi.stream_error", venue=self._venue, error=detail)
            return None
        return frame


def decode_user(
    frame: schemas.WsEnvelope, *, venue: VenueName, metrics: VenueMetrics, received_at: datetime
) -> UserEvent | None:
    """A ``fill`` or ``user_order`` frame as a report; ``None`` for anything else."""
    if not frame.msg or frame.type not in ("fill", "user_order"):
        return None
    try:
        if frame.type == "fill":
            return parsing.parse_ws_fill(
                _FILL.decode(frame.msg), venue=venue, received_at=received_at
            )
        return parsing.parse_user_order(
            _USER_ORDER.decode(frame.msg), venue=venue, received_at=received_at
        )
    except (msgspec.DecodeError, MalformedMessage) as exc:
        record_malformed(metrics, USER_STREAM, bytes(frame.msg), skip_reason(exc))
        return None


def decode_market(
    frame: schemas.WsEnvelope, *, metrics: VenueMetrics, received_at: datetime
) -> MarketEvent | None:
    if not frame.msg or frame.type != "ticker":
        return None
    try:
        return parsing.parse_ticker(_TICKER.decode(frame.msg), received_at=received_at)
    except (msgspec.DecodeError, MalformedMessage) as exc:
        record_malformed(metrics, MARKET_STREAM, bytes(frame.msg), skip_reason(exc))
        return None
