"""The backtest side of ``tradectl compare``: recorded market data replayed, event by event, through
the paper run's strategies, the live strategy host and the paper venue's matching core with the
same seeded fill model, on a clock that is the recording's receipt times.

What the paper run did, the replay does in the same order: each event goes to the matching core
and then to the conflator (quotes fill resting orders they cross, trades fill them by
participation, bars close on the first quote of the next interval or at the next event after their
end); each decision's orders reach the core after the fill model's next latency draw, at the
market as it is then, slipped as the paper venue slips them. The client order ids are the paper
run's (same prefix, same decision keys), so the trades pair one to one. Orders are not checked
against the paper run's risk limits: an order the paper engine denied shows as a backtest-only
trade.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from engine.compare.diff import Trade, aggregate
from engine.domain.ids import client_order_id
from engine.domain.intents import Buy, Cancel, Hold, Intent, Sell
from engine.domain.market import MarketEvent
from engine.domain.positions import Position, PositionFill, apply_fill
from engine.domain.stage import Staging
from engine.domain.types import (
    ClientOrderId,
    OrderState,
    OrderType,
    StrategyId,
    Symbol,
    VenueOrderStatus,
)
from engine.exceptions import Definitive, NotFound, TradectlError
from engine.marketdata.conflator import Conflator, Subscription
from engine.strategy_config import StrategySpec
from engine.strategy_host import HostedStrategy, StrategyHost
from engine.venues.base import OrderRequest
from engine.venues.paper.fill_model import FillModel
from engine.venues.paper.live import LivePaperVenue, live_paper_venue
from strategies.base import OpenOrder


class RecordedReplay:
    """One replay of ``events`` (in receipt order) through ``specs``; :meth:`run` once."""

    def __init__(
        self,
        events: Iterable[MarketEvent],
        specs: Sequence[StrategySpec],
        *,
        fill_model: FillModel,
        seed: int,
        prefix: str,
        staging: Staging | None = None,
    ) -> None:
        self._events = events
        self._prefix = prefix
        self._now = datetime.min.replace(tzinfo=UTC)
        symbols = tuple(sorted({s for spec in specs for s in spec.symbols}))
        self.venue: LivePaperVenue = live_paper_venue(
            symbols, fill_model=fill_model, seed=seed, clock=self._clock
        )
        self.fill_model = fill_model
        self.conflator = Conflator()
        self.host = StrategyHost(
            conflator=self.conflator,
            portfolio=self,
            sink=self._sink,
            on_strategy_failure=self._failed,
            is_paused=self._never,
            clock=self._clock,
        )
        self._subs: list[tuple[HostedStrategy, Subscription]] = []
        for spec in specs:
            hosted = spec.hosted(staging)
            self.host.add(hosted)
            if spec.bar_interval is not None:
                for symbol in spec.symbols:
                    self.conflator.build_bars(symbol, spec.bar_interval)
            sub = self.conflator.subscribe(
                f"strategy:{spec.strategy_id}", spec.symbols, bar_interval=hosted.bar_interval
            )
            self._subs.append((hosted, sub))
        self._owner: dict[ClientOrderId, StrategyId] = {}
        self._decided_at: dict[ClientOrderId, datetime] = {}
        self._pending: list[tuple[datetime, int, OrderRequest]] = []
        self._positions: dict[tuple[StrategyId, Symbol], Position] = {}
        self._folded = 0

    def _clock(self) -> datetime:
        return self._now

    # -- PortfolioProvider -----------------------------------------------------------------

    async def inventory(self, strategy_id: StrategyId) -> Mapping[Symbol, Decimal]:
        self._fold()
        return {
            symbol: p.quantity
            for (sid, symbol), p in self._positions.items()
            if sid == strategy_id and p.quantity != 0
        }

    async def open_orders(self, strategy_id: StrategyId) -> Sequence[OpenOrder]:
        out = [
            OpenOrder(
                client_order_id=r.client_order_id,
                symbol=r.symbol,
                side=r.side,
                quantity=r.quantity,
                filled_quantity=r.filled_quantity,
                limit_price=r.limit_price,
                state=OrderState.PARTIALLY_FILLED
                if r.status is VenueOrderStatus.PARTIALLY_FILLED
                else OrderState.OPEN,
            )
            for r in await self.venue.open_orders()
            if self._owner.get(r.client_order_id) == strategy_id
        ]
        # orders decided but not at the venue yet are the strategy's too (pending, as live)
        for _, _, request in self._pending:
            if self._owner.get(request.client_order_id) == strategy_id:
                out.append(
                    OpenOrder(
                        client_order_id=request.client_order_id,
                        symbol=request.symbol,
                        side=request.side,
                        quantity=request.quantity,
                        filled_quantity=Decimal(0),
                        limit_price=request.limit_price,
                        state=OrderState.PENDING_SUBMIT,
                    )
                )
        return out

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> list[Trade]:
        """Replay every event; the trades the replay made, one per order."""
        try:
            for event in self._events:
                await self._place_due(event.received_at)
                self._now = event.received_at
                self.venue.apply(event)
                self.conflator.publish(event)
                self.conflator.close_due_bars(self._now)
                await self._decide()
            await self._place_due(None)
            return self.trades()
        finally:
            await self.venue.close()

    def trades(self) -> list[Trade]:
        return aggregate(
            [
                (
                    f.client_order_id or ClientOrderId(""),
                    self._owner.get(f.client_order_id or ClientOrderId(""), StrategyId("?")),
                    f.symbol,
                    f.side,
                    f.quantity,
                    f.price,
                    f.venue_ts,
                )
                for f in self.venue.all_fills()
            ]
        )

    def decided_at(self, coid: ClientOrderId) -> datetime | None:
        return self._decided_at.get(coid)

    async def _decide(self) -> None:
        for hosted, sub in self._subs:
            if sub.pending:
                await self.host.handle(hosted, sub.take())

    async def _place_due(self, until: datetime | None) -> None:
        while self._pending and (until is None or self._pending[0][0] <= until):
            due, _, request = self._pending.pop(0)
            self._now = max(self._now, due)
            with contextlib.suppress(Definitive):  # refused at the venue: no trade, as live
                await self.venue.place_now(request)

    async def _sink(self, intent: Intent) -> None:
        if isinstance(intent, Hold):
            return
        if isinstance(intent, Cancel):
            with contextlib.suppress(NotFound):
                await self.venue.cancel(intent.symbol, intent.client_order_id)
            return
        coid = client_order_id(self._prefix, intent.key)
        if coid in self._owner:
            return  # the same decision key again: reserved once, as the ledger does
        self._owner[coid] = intent.strategy_id
        self._decided_at[coid] = self._now
        request = _request(self.venue, intent, coid)
        if request.quantity <= 0:
            return
        due = self._now + self.fill_model.next_latency()
        self._pending.append((due, len(self._owner), request))
        self._pending.sort(key=lambda p: (p[0], p[1]))

    def _fold(self) -> None:
        fills = self.venue.all_fills()
        for f in fills[self._folded :]:
            sid = self._owner.get(f.client_order_id or ClientOrderId(""))
            if sid is None:
                continue
            key = (sid, f.symbol)
            rules = self.venue.rules_of(f.symbol)
            position = self._positions.get(key) or Position(
                base_asset=rules.base_asset, quote_asset=rules.quote_asset, symbol=f.symbol
            )
            self._positions[key] = apply_fill(
                position,
                PositionFill(
                    side=f.side, qty=f.quantity, price=f.price, fee=f.fee, fee_asset=f.fee_asset
                ),
            )
        self._folded = len(fills)

    async def _failed(self, strategy_id: StrategyId, exc: BaseException) -> None:
        raise TradectlError(
            f"strategy {strategy_id} raised during the replay at {self._now.isoformat()}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc

    async def _never(self, strategy_id: StrategyId) -> bool:
        return False


def _request(venue: LivePaperVenue, intent: Buy | Sell, coid: ClientOrderId) -> OrderRequest:
    """The order as the engine's venue filters send it: quantity down to the step, price to
    the passive side of the tick."""
    rules = venue.rules_of(intent.symbol)
    price = (
        None if intent.limit_price is None else rules.round_price(intent.limit_price, intent.side)
    )
    return OrderRequest(
        client_order_id=coid,
        symbol=intent.symbol,
        side=intent.side,
        type=OrderType.MARKET if price is None else OrderType.LIMIT,
        quantity=rules.round_quantity(intent.quantity),
        limit_price=price,
        time_in_force=intent.time_in_force,
    )
