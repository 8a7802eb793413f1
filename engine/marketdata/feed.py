"""One feed task per venue connection: the venue's market stream into the conflator.

The adapter's ``market_stream`` reconnects and resubscribes by itself; the feed is the last line:
if the iterator raises (or ends), the feed logs it, backs off and asks the venue for a new one, for
as long as it runs. While the stream is down, or a symbol has gone quiet for ``stale_after``, an
optional REST poller (``async (symbol) -> Quote``) keeps the latest quote fresh.

A stream the venue refuses for our credentials (Kalshi signs its market stream) does not heal by
reconnecting: ``on_auth_failed`` halts the account (engine/venue_guard.py) and the feed tries again
only every ``auth_retry_s``, so a repaired key brings the data back without a restart.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timedelta

import structlog

from engine.domain.market import MarketEvent, Quote
from engine.domain.types import Symbol, utc_now
from engine.exceptions import AuthFailed
from engine.marketdata.conflator import Conflator
from engine.marketdata.recording import MarketRecorder
from engine.venues.base import Venue
from engine.venues.metrics import VenueMetrics

log = structlog.get_logger(__name__)

QuotePoller = Callable[[Symbol], Awaitable[Quote]]
#: how long the feed waits after the venue refused our credentials before it tries again
AUTH_RETRY_S = 30.0


def backoff(initial: float, maximum: float, factor: float = 2.0) -> Iterator[float]:
    """Exponential delays with jitter, so many feeds restarting at once do not move in step."""
    delay = initial
    while True:
        yield delay * random.uniform(0.5, 1.0)
        delay = min(delay * factor, maximum)


class MarketDataFeed:
    """Runs ``venue.market_stream(symbols)`` into a conflator, surviving the iterator raising."""

    def __init__(
        self,
        venue: Venue,
        symbols: Sequence[Symbol],
        conflator: Conflator,
        *,
        poller: QuotePoller | None = None,
        stale_after: timedelta = timedelta(seconds=5),
        poll_interval: float = 1.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        clock: Callable[[], datetime] = utc_now,
        metrics: VenueMetrics | None = None,
        recorder: MarketRecorder | None = None,
        on_auth_failed: Callable[[AuthFailed], Awaitable[None]] | None = None,
        auth_retry_s: float = AUTH_RETRY_S,
    ) -> None:
        if not symbols:
            raise ValueError("a market data feed needs at least one symbol")
        self.venue = venue
        self.symbols = tuple(dict.fromkeys(symbols))
        self.conflator = conflator
        self.poller = poller
        self.stale_after = stale_after
        self.poll_interval = poll_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._clock = clock
        #: where the age of each symbol's newest data is published (per account)
        self.metrics = metrics
        #: writes every event received to files (TRADECTL_RECORD_MARKET_DATA)
        self.recorder = recorder
        self.on_auth_failed = on_auth_failed
        self.auth_retry_s = auth_retry_s
        #: True from the first event of a stream until that stream fails
        self.connected = False
        self.events = 0
        self.restarts = 0
        self.polls = 0
        self.poll_failures = 0
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        return f"marketdata:{self.venue.name}"

    async def run(self) -> None:
        """Stream (and poll, and close due bars) until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._stream_forever(), name=f"{self.name}:stream")
                group.create_task(self._housekeeping(), name=f"{self.name}:poll")
        finally:
            if self.recorder is not None:
                self.recorder.close()

    async def _stream_forever(self) -> None:
        delays = backoff(self.backoff_initial, self.backoff_max)
        while True:
            stream: AsyncIterator[MarketEvent] | None = None
            refused: AuthFailed | None = None
            try:
                stream = self.venue.market_stream(self.symbols)
                async for event in stream:
                    if not self.connected:
                        self.connected = True
                        # A healthy stream earns a fast retry next time it breaks.
                        delays = backoff(self.backoff_initial, self.backoff_max)
                    self.events += 1
                    self.conflator.publish(event)
                    if self.recorder is not None:
                        self.recorder.write(event)
                reason = "market stream ended"
            except asyncio.CancelledError:
                raise
            except AuthFailed as exc:
                refused = exc
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self.connected = False
                await _close(stream)
            self.restarts += 1
            self.last_error = reason
            delay = next(delays)
            if refused is not None and self.on_auth_failed is not None:
                delay = max(delay, self.auth_retry_s)
                await self._auth_failed(refused)
            log.warning(
                "marketdata.stream_restart",
                venue=self.venue.name,
                reason=reason,
                restarts=self.restarts,
                retry_in_s=round(delay, 3),
            )
            # The new stream may number its messages afresh: a lower sequence is not "old".
            for symbol in self.symbols:
                self.conflator.reset_sequence(symbol)
            await asyncio.sleep(delay)

    async def _auth_failed(self, exc: AuthFailed) -> None:
        assert self.on_auth_failed is not None
        log.error("marketdata.auth_failed", venue=self.venue.name, error=str(exc))
        try:
            await self.on_auth_failed(exc)
        except asyncio.CancelledError:
            raise
        except Exception as halt_exc:
            # the ledger away, say: the next refusal (after auth_retry_s) halts again, and
            # market data must not stop for good because one halt could not be written
            log.error(
                "marketdata.auth_halt_failed",
                venue=self.venue.name,
                error=f"{type(halt_exc).__name__}: {halt_exc}",
            )

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            now = self._clock()
            if self.recorder is not None:
                self.recorder.flush()
            self.conflator.close_due_bars(now)
            self._publish_ages(now)
            if self.poller is None:
                continue
            for symbol in self.symbols:
                # The quote itself must be fresh: trades flowing do not make an old quote new.
                latest = self.conflator.quote(symbol)
                fresh = latest is not None and now - latest.received_at <= self.stale_after
                if self.connected and fresh:
                    continue
                await self._poll(symbol)

    def _publish_ages(self, now: datetime) -> None:
        if self.metrics is None:
            return
        for symbol in self.symbols:
            age = self.conflator.age(symbol, now)
            if age is not None:
                self.metrics.marketdata_age(symbol, age.total_seconds())

    async def _poll(self, symbol: Symbol) -> None:
        assert self.poller is not None
        try:
            quote = await self.poller(symbol)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.poll_failures += 1
            log.warning(
                "marketdata.poll_failed",
                venue=self.venue.name,
                symbol=symbol,
                error=f"{type(exc).__name__}: {exc}",
                failures=self.poll_failures,
            )
            return
        self.polls += 1
        self.conflator.publish(quote)
        if self.recorder is not None:
            self.recorder.write(quote)


async def _close(stream: AsyncIterator[MarketEvent] | None) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception as exc:  # a broken stream may fail to close too; the restart matters more
        log.debug("marketdata.stream_close_failed", error=f"{type(exc).__name__}: {exc}")
